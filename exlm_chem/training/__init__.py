"""Pretraining, by concern: the run's settings (`config`), corpus preparation (`corpus`),
length-bucketed batches (`batches`), checkpoints, process groups (`distributed`), the run log
(`runlog`) and the loop that ties them together (`loop`).

    exlm-chem pretrain --corpus moses_train.csv.gz --out runs/small --max-time 2h
    torchrun --nproc_per_node 2 -m exlm_chem.training --corpus ... --out ...

The package imports nothing heavy itself: `exlm_chem.training.loop.pretrain` runs a run.
"""
