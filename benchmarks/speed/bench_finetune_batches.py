"""Fine-tuning epochs on length-bucketed batches (what `finetune` does) against batches of
random rows, on the same molecules and model, interleaved so that machine noise hits both
alike: padded tokens computed and seconds per epoch (forward, backward and AdamW step of the
default model with the `cls` head, fused AdamW, batches of 32, bf16 where the CPU has native
bf16).

    python benchmarks/speed/bench_finetune_batches.py --json
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from rdkit import Chem, RDLogger

from exlm_chem.environment import resolve_precision
from exlm_chem.finetuning.data import EncodedMolecules, LabelledMolecules
from exlm_chem.finetuning.predictor import PropertyPredictor, autocast
from exlm_chem.finetuning.train import length_bucketed_batches
from exlm_chem.model.storage import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import REPO, print_result, shared_data_dir


def molecules(n: int) -> tuple[list[str], str]:
    """BBBP's readable SMILES when the shared data is there, else our drugs repeated."""
    data = shared_data_dir()
    if data is not None:
        smiles = pd.read_csv(data / "moleculenet" / "BBBP.csv")["smiles"]
        return [s for s in smiles if Chem.MolFromSmiles(s) is not None][:n], "BBBP"
    drugs = pd.read_csv(REPO / "data" / "drugs.csv")["smiles"].tolist()
    return [drugs[i % len(drugs)] for i in range(n)], "data/drugs.csv repeated"


def random_labels(model, n: int) -> tuple[LabelledMolecules, LabelledMolecules, str]:
    """``n`` training molecules of `molecules` and a quarter as many for validation, with
    seeded random 0/1 labels: a fine-tuning workload whose cost does not depend on a task."""
    smiles, source = molecules(n + n // 4)
    labels = torch.randint(0, 2, (len(smiles),), generator=torch.Generator().manual_seed(0))
    data = LabelledMolecules.from_smiles(smiles, labels.numpy(), model.tokenizer)
    rows = torch.arange(len(smiles))
    train = LabelledMolecules(data.molecules.subset(rows[:n]), data.y[:n])
    valid = LabelledMolecules(data.molecules.subset(rows[n:]), data.y[n:])
    return train, valid, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=960, help="molecules in the epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    RDLogger.DisableLog("rdApp.*")
    torch.manual_seed(0)

    model = load_model()
    smiles, source = molecules(args.n)
    encoded = EncodedMolecules.from_smiles(smiles, model.tokenizer)
    lengths = encoded.lengths.numpy()
    predictor = PropertyPredictor(model, "cls", ["target"], "classification").train()
    optimizer = torch.optim.AdamW(predictor.parameters(), lr=1e-4, fused=True)
    targets = torch.randint(0, 2, (len(encoded), 1)).float()
    precision = resolve_precision("auto", torch.device("cpu"))

    def random_batches(rng):
        order = rng.permutation(len(lengths))
        return [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]

    def bucketed_batches(rng):
        return length_bucketed_batches(lengths, args.batch_size, rng)

    def epoch(batches) -> float:
        start = time.perf_counter()
        for rows in batches:
            with autocast(torch.device("cpu"), precision):
                raw = predictor(encoded.batch(rows)).float()
            loss = F.binary_cross_entropy_with_logits(raw, targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    def padded_tokens(batches) -> int:
        return int(sum(len(rows) * lengths[rows].max() for rows in batches))

    times = {"random": [], "bucketed": []}
    tokens = {"random": [], "bucketed": []}
    for repeat in range(args.repeats):
        for name, make in (("random", random_batches), ("bucketed", bucketed_batches)):
            batches = make(np.random.default_rng(repeat))
            tokens[name].append(padded_tokens(batches))
            times[name].append(epoch(batches))
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "source": source,
        "molecules": len(encoded),
        "real_tokens": int(lengths.sum()),
        "precision": precision,
        "random_padded_tokens": int(statistics.mean(tokens["random"])),
        "bucketed_padded_tokens": int(statistics.mean(tokens["bucketed"])),
        "random_epoch_seconds": round(median["random"], 2),
        "bucketed_epoch_seconds": round(median["bucketed"], 2),
        "speedup_bucketed": round(median["random"] / median["bucketed"], 2),
    }
    print_result(result, args.json)


if __name__ == "__main__":
    main()
