"""Fine-tuning runs at a time: a learning-rate grid fine-tuned one run after another on all
of this process's threads (``jobs=1``) against ``jobs`` runs at a time in worker processes,
each on its share of the threads (`exlm_chem.finetuning.finetune_each`), on the same runs,
in interleaved rounds (the default model, the `cls` head, BBBP molecules with random labels,
a fixed number of epochs so that early stopping cannot make the runs differ in length).

    python benchmarks/speed/bench_finetune_jobs.py --json
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch
from bench_finetune_batches import random_labels
from rdkit import RDLogger

from exlm_chem.environment import describe_hardware
from exlm_chem.finetuning import FinetuneSettings, finetune_each
from exlm_chem.model.storage import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import print_result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=640, help="training molecules")
    parser.add_argument("--rates", default="3e-5,1e-4,3e-4,1e-3")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    RDLogger.DisableLog("rdApp.*")

    model = load_model()
    train, valid, source = random_labels(model, args.n)
    settings = FinetuneSettings(epochs=args.epochs, patience=args.epochs)
    runs = [
        (model, train, valid, replace(settings, learning_rate=float(rate)))
        for rate in args.rates.split(",")
    ]

    def grid(jobs: int) -> None:
        list(finetune_each(runs, "classification", jobs=jobs))

    times = {1: [], args.jobs: []}
    for _ in range(args.rounds):
        for jobs in times:
            times[jobs].append(seconds(lambda j=jobs: grid(j)))
    one, many = (statistics.median(times[j]) for j in times)
    result = {
        "source": source,
        "device_name": describe_hardware(torch.device("cpu")),
        "training_molecules": len(train.molecules),
        "runs": len(runs),
        "epochs_per_run": args.epochs,
        "jobs": args.jobs,
        "seconds_one_at_a_time": round(one, 1),
        "seconds_jobs_at_a_time": round(many, 1),
        "seconds_each_round": {str(j): [round(t, 1) for t in ts] for j, ts in times.items()},
        "speedup": round(one / many, 3),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
