"""Shared helpers for the benchmark scripts: where the data is, timing helpers, and swapping
one of the library's functions for another while a measurement runs."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """$EXLM_DATA_DIR, or shared/data beside the repository; None when absent."""
    candidates = [os.environ.get("EXLM_DATA_DIR")] + [
        str(p / "shared" / "data") for p in REPO.parents
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "zinc").is_dir():
            return Path(candidate)
    return None


def benchmark_smiles(n: int, split: str = "train") -> tuple[list[str], str]:
    """n drug-like SMILES: the ZINC corpus when present, else randomized SMILES of our drugs."""
    data = shared_data_dir()
    if data is not None:
        with gzip.open(data / "zinc" / f"moses_{split}.csv.gz", "rt") as handle:
            next(handle)
            smiles = [line.strip() for _, line in zip(range(n), handle)]
        return smiles, f"ZINC moses_{split} (first {len(smiles)})"
    import csv

    from exlm_chem.smiles import randomize_smiles

    with open(REPO / "data" / "drugs.csv") as handle:
        drugs = [row["smiles"] for row in csv.DictReader(handle)]
    smiles = [randomize_smiles(drugs[i % len(drugs)], seed=i) for i in range(n)]
    return smiles, f"{n} randomized SMILES of data/drugs.csv (shared data absent)"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def median_ratio(shipped, other, rounds: int) -> float:
    """Median over interleaved rounds of other / shipped, the order alternating."""
    ratios = []
    for i in range(rounds):
        if i % 2:
            b, a = seconds(other), seconds(shipped)
        else:
            a, b = seconds(shipped), seconds(other)
        ratios.append(b / a)
    return round(statistics.median(ratios), 3)


@contextlib.contextmanager
def replaced(module, **functions):
    """``module``'s attributes named by ``functions`` replaced by them inside the block, the
    originals put back after it."""
    originals = {name: getattr(module, name) for name in functions}
    for name, function in functions.items():
        setattr(module, name, function)
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(module, name, function)


def print_result(result: dict, as_json: bool) -> None:
    """Readable lines (unless ``as_json``), then the result as one JSON object on the last line."""
    if not as_json:
        for key, value in result.items():
            print(f"{key}: {value}")
    print(json.dumps(result))
