"""Corpus preparation speed and memory: the broad pretraining corpus (2.39M molecules) read,
parsed by RDKit, canonicalized and tokenized into the memory-mapped format by worker processes.

    python benchmarks/speed/bench_corpus.py --json                       # the broad corpus
    python benchmarks/speed/bench_corpus.py --json --repeat 2 --randomize  # 4.8M rows, flat memory?

Peak memory is reported for this process (reading, writing) and for the largest worker.
Goals: at most 1 GB, and the broad corpus prepared in at most 6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

from exlm_chem.parallel import default_workers
from exlm_chem.training.corpus import pack_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import shared_data_dir


def synthetic_corpus(source: Path, target: Path, repeat: int, randomize: bool) -> int:
    """The corpus ``repeat`` times over (the copies as random SMILES of the same molecules)."""
    from exlm_chem.smiles import randomize_smiles

    rows = 0
    with gzip.open(source, "rt") as handle, gzip.open(target, "wt", compresslevel=1) as out:
        header = next(handle)
        out.write(header)
        for line in handle:
            smiles, _, rest = line.partition("\t")
            for copy in range(repeat):
                written = randomize_smiles(smiles, seed=rows) if randomize and copy else smiles
                out.write(f"{written}\t{rest}")
                rows += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--repeat", type=int, default=1, help="Copies of the corpus (synthetic)")
    parser.add_argument("--randomize", action="store_true", help="Copies as random SMILES")
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None or not (data / "pretrain" / "broad_corpus.tsv.gz").exists():
        sys.exit("the shared data folder with pretrain/broad_corpus.tsv.gz is needed")
    corpus = data / "pretrain" / "broad_corpus.tsv.gz"
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if args.repeat > 1:
            # Written by another process, so that the peak memory measured here is the
            # preparation's alone.
            job = (corpus, folder / "synthetic.tsv.gz", args.repeat, args.randomize)
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                pool.apply(synthetic_corpus, job)
            corpus = folder / "synthetic.tsv.gz"
        start = time.perf_counter()
        stats = pack_corpus([corpus], None, True, folder / "packed", workers=args.workers)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (folder / "packed").iterdir())
    result = {
        "corpus": "broad_corpus.tsv.gz" + (f" x{args.repeat}" if args.repeat > 1 else ""),
        "randomized_copies": args.randomize,
        "rows": stats.read,
        "molecules_kept": stats.kept,
        "workers": args.workers,
        "seconds": round(seconds, 1),
        "molecules_per_second": round(stats.read / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        # The largest child: a preparation worker (or, with --repeat, the synthetic file's writer).
        "peak_worker_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "prepared_mb": round(size / 1e6, 1),
        "vocabulary_tokens": len(stats.token_counts),
        "tokens_seen_10_times": sum(c >= 10 for c in stats.token_counts.values()),
    }
    print(json.dumps(result) if args.json else result)


if __name__ == "__main__":
    main()
