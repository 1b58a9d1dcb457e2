"""How fast is the applicability domain of `predict`, for a large file against a fine-tuning
training set? Queries (ZINC molecules, or randomized drug SMILES without the shared data)
against a 4,000-molecule training set: ECFP4 fingerprints of the queries, the cosine search on
256-number vectors and the Tanimoto search on 2,048 bits (both chunked matrix products, the
way `DomainReference.similarities` runs them), in molecules per second, beside RDKit's
BulkTanimotoSimilarity on the same fingerprints for a slice of the queries (the ratio is
measured side by side in this run, and the two must agree).

    python benchmarks/speed/bench_domain.py --queries 100000 --train 4000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--train", type=int, default=4_000)
    parser.add_argument("--rdkit-slice", type=int, default=2_000)
    args = parser.parse_args()

    import torch
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    from exlm_chem.finetuning.domain import (
        _chunked_max,
        _cosine_block,
        _tanimoto_block,
        fit_domain,
    )
    from exlm_chem.fingerprints import ecfp4_bits

    smiles, source = benchmark_smiles(args.queries + args.train + 500)
    train, valid = smiles[: args.train], smiles[args.train : args.train + 500]
    queries = smiles[args.train + 500 :]
    rng = np.random.default_rng(0)
    reference = fit_domain(
        rng.normal(size=(len(train), 256)), train, list(range(len(train))),
        rng.normal(size=(len(valid), 256)), valid, 0.1,
    )  # fmt: skip
    print(f"{len(queries):,} queries against {len(train):,} training molecules ({source})")
    print(f"torch threads: {torch.get_num_threads()}")

    start = time.perf_counter()
    bits = ecfp4_bits(queries)
    fingerprint_s = time.perf_counter() - start
    bits[np.isnan(bits[:, 0])] = 0
    vectors = rng.normal(size=(len(queries), 256)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    start = time.perf_counter()
    _chunked_max(vectors, reference.vectors.astype(np.float32), _cosine_block)
    cosine_s = time.perf_counter() - start
    train_bits = np.unpackbits(reference.fingerprints, axis=1).astype(np.float32)
    start = time.perf_counter()
    best, _ = _chunked_max(bits, train_bits, _tanimoto_block)
    tanimoto_s = time.perf_counter() - start

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    train_fps = [generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in train]
    query_fps = [
        generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in queries[: args.rdkit_slice]
    ]
    start = time.perf_counter()
    rdkit_best = [max(DataStructs.BulkTanimotoSimilarity(fp, train_fps)) for fp in query_fps]
    rdkit_s = time.perf_counter() - start
    agree = np.allclose(rdkit_best, best[: len(query_fps)], atol=1e-6)

    total = fingerprint_s + cosine_s + tanimoto_s
    rate = lambda n, s: f"{n / s:,.0f} molecules/s"  # noqa: E731
    print(
        f"ECFP4 of the queries:        {fingerprint_s:7.1f} s  {rate(len(queries), fingerprint_s)}"
    )
    print(f"cosine search (256 numbers): {cosine_s:7.1f} s  {rate(len(queries), cosine_s)}")
    print(f"Tanimoto search (2,048 bits): {tanimoto_s:6.1f} s  {rate(len(queries), tanimoto_s)}")
    print(f"domain in all:               {total:7.1f} s  {rate(len(queries), total)}")
    per_query_ours = tanimoto_s / len(queries)
    per_query_rdkit = rdkit_s / len(query_fps)
    print(
        f"Tanimoto search per query: RDKit BulkTanimotoSimilarity / chunked matrix product = "
        f"{per_query_rdkit / per_query_ours:.1f}x (on {len(query_fps):,} queries); "
        f"same maxima: {agree}"
    )


if __name__ == "__main__":
    main()
