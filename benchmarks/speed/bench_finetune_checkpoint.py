"""What checkpointing costs a fine-tuning run: the same run (the default model, the `cls`
head, BBBP molecules with random labels, a fixed number of epochs) without a checkpoint and
with one written after every epoch (``checkpoint_seconds=0``, the worst case; by default a
run writes at most once a minute), in interleaved rounds; the size of a checkpoint and the
time one write takes, against an epoch's.

    python benchmarks/speed/bench_finetune_checkpoint.py --json
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from bench_finetune_batches import random_labels
from rdkit import RDLogger

from exlm_chem.environment import describe_hardware
from exlm_chem.finetuning import FinetuneSettings, finetune
from exlm_chem.model.storage import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import print_result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=640, help="training molecules")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    RDLogger.DisableLog("rdApp.*")

    model = load_model()
    train, valid, source = random_labels(model, args.n)
    settings = FinetuneSettings(epochs=args.epochs, patience=args.epochs)

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "run.pt"

        def run(with_checkpoint: bool) -> None:
            checkpoint.unlink(missing_ok=True)  # a fresh run each time, not a finished one
            finetune(
                model,
                train,
                valid,
                "classification",
                settings,
                checkpoint=checkpoint if with_checkpoint else None,
                checkpoint_seconds=0,
            )

        times = {False: [], True: []}
        for _ in range(args.rounds):
            for with_checkpoint in times:
                times[with_checkpoint].append(seconds(lambda c=with_checkpoint: run(c)))
        size = checkpoint.stat().st_size
        # One write on its own (the run-level ratio is within this machine's noise).
        state = torch.load(checkpoint, weights_only=True)
        copy = Path(folder) / "copy.pt"
        writes = [seconds(lambda: torch.save(state, copy)) for _ in range(5)]
    without, every_epoch = (statistics.median(times[c]) for c in times)
    result = {
        "source": source,
        "device_name": describe_hardware(torch.device("cpu")),
        "training_molecules": len(train.molecules),
        "epochs": args.epochs,
        "checkpoint_megabytes": round(size / 1e6, 1),
        "seconds_without": round(without, 1),
        "seconds_checkpoint_every_epoch": round(every_epoch, 1),
        "seconds_each_round": {
            "without": [round(t, 1) for t in times[False]],
            "every_epoch": [round(t, 1) for t in times[True]],
        },
        "time_ratio_every_epoch_over_without": round(every_epoch / without, 3),
        "seconds_per_checkpoint_write": round(statistics.median(writes), 3),
        "write_over_epoch": round(statistics.median(writes) / (without / args.epochs), 4),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
