"""Peak memory and speed of `exlm-chem pretrain` under ways of managing the C heap.

    python benchmarks/speed/bench_pretrain_memory.py --corpus DATA/pretrain/broad_corpus.tsv.gz \
        --corpus-cache runs/corpus-cache --steps 150 --json

Batches of ever-changing shapes fragment glibc's heap, so a pretraining process's resident
memory grows far beyond what one step needs. Each variant below runs the same pretraining
(the `small` ExLM preset, the same seed and batches, `--max-steps`) in a child process and
reads its peak resident memory (getrusage, logged with every metrics line) and its speed (the
median tokens/s of the logged windows after the first), printed side by side with the ratio of
each variant's speed to the first's:

- shipped: the library's settings: mimalloc in place of glibc's malloc where it is installed
  (`exlm-chem pretrain --allocator mimalloc`, the default on Linux), `--shape-bucket 8` (token
  and expanded lengths padded to multiples of 8 and batches sized by the padded length, so
  that few batch shapes occur) and oneDNN's kernel cache held to 64 entries
  (`limit_kernel_cache`: bf16 matrix products go through oneDNN, which builds and keeps a
  kernel for every new shape);
- mimalloc-purge-0: the same, mimalloc returning freed memory to the OS at once;
- glibc: glibc's malloc (`--allocator system`), freed memory kept for reuse between steps and
  handed back to the OS every `TRIM_EVERY` steps; every variant below is glibc too:
- every-shape: the settings before shape buckets (`--shape-bucket 1`, batches padded to their
  longest molecule only, and oneDNN's own cache of 1024 kernels);
- glibc-defaults: no keeping or trimming (glibc's own mmap threshold and trimming);
- trim-every-step: handed back after every step;
- one-arena: one malloc arena (the batch-preparing thread shares the training thread's heap
  instead of fragmenting a second one);
- half-batches: half the tokens per batch with two batches per optimizer step (the same
  tokens per step, half the activations);
- mmap-above-1mb: every block of 1 MB or more mapped on its own and unmapped when freed (no
  fragmentation of large blocks; each step faults its pages in afresh);
- mmap-above-1mb-huge-pages: the same with glibc's transparent huge pages for those mappings
  (GLIBC_TUNABLES=glibc.malloc.hugetlb=1; 2 MB pages, 512 times fewer page faults);
- fp32: no autocast (fp32 matrix products do not go through oneDNN's kernel cache).

Results in benchmarks/results/bench_pretrain_memory.txt name the variants as they were when
each was run: before the 300-step quiet run `shipped` had no shape buckets and oneDNN's
default cache; before mimalloc became the default, `shipped` was glibc's malloc (now `glibc`),
and `mimalloc` was glibc's settings with $MIMALLOC_LIB preloaded (now `shipped`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Every block of 1 MB or more in its own mapping, handed back to the OS when freed (a fixed
# threshold: glibc's own moves up to 32 MB), no trimming needed.
MMAP_ABOVE_1MB = (
    "from exlm_chem import environment\n"
    "loop.keep_freed_memory = lambda: environment._libc().mallopt(-3, 1 << 20)\n"
    "loop.TRIM_EVERY = 10**9\n"
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import print_result

GLIBC = ["--allocator", "system"]
# name: (Python run in the child before the command, extra arguments, environment variables)
VARIANTS = {
    "shipped": ("", [], {}),
    "mimalloc-purge-0": ("", [], {"MIMALLOC_PURGE_DELAY": "0"}),
    "glibc": ("", GLIBC, {}),
    "every-shape": (
        "",
        [*GLIBC, "--shape-bucket", "1"],
        {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024"},
    ),
    "glibc-defaults": (
        "loop.keep_freed_memory = lambda: None\nloop.TRIM_EVERY = 10**9\n",
        GLIBC,
        {},
    ),
    "trim-every-step": ("loop.TRIM_EVERY = 1\n", GLIBC, {}),
    "one-arena": ("", GLIBC, {"MALLOC_ARENA_MAX": "1"}),
    "half-batches": ("", [*GLIBC, "--batch-tokens", "3072", "--grad-accum", "2"], {}),
    "mmap-above-1mb": (MMAP_ABOVE_1MB, GLIBC, {}),
    "mmap-above-1mb-huge-pages": (
        MMAP_ABOVE_1MB,
        GLIBC,
        {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    ),
    "fp32": ("", [*GLIBC, "--precision", "fp32"], {}),
}

CHILD = """
import sys
from exlm_chem.training import loop
{setup}
from exlm_chem.cli import app
sys.argv = ["exlm-chem"] + sys.argv[1:]
app()
"""


def run_variant(name: str, args, out: Path) -> dict:
    setup, extra, environment = VARIANTS[name]
    command = [
        sys.executable, "-c", CHILD.format(setup=setup), "pretrain",
        "--corpus", str(args.corpus), "--corpus-cache", str(args.corpus_cache),
        "--out", str(out), "--objective", args.objective, "--preset", "small",
        "--mask-rate", str(args.mask_rate), "--seed", "0", "--max-steps", str(args.steps),
        "--log-every", "10", "--val-every", str(10 * args.steps), "--val-size", "256",
        "--checkpoint-every", str(10 * args.steps), *extra,
    ]  # fmt: skip
    if args.val_corpus:
        command += ["--val-corpus", str(args.val_corpus)]
    start = time.perf_counter()
    child = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **environment}
    )
    if child.returncode != 0:
        sys.exit(f"{name}: pretraining failed:\n{child.stderr[-3000:]}")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    windows = [m["tokens_per_second"] for m in lines if "tokens_per_second" in m][1:]
    return {
        "allocator": json.loads((out / "run.json").read_text())["allocator"],
        "peak_rss_mb": round(max(m["peak_rss_mb"] for m in lines), 1),
        "tokens_per_second": round(statistics.median(windows), 1),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("EXLM_DATA_DIR", "../shared/data"))
    parser.add_argument("--corpus", type=Path, default=data / "pretrain/broad_corpus.tsv.gz")
    parser.add_argument("--val-corpus", type=Path, default=data / "zinc/moses_test.csv.gz")
    parser.add_argument("--corpus-cache", type=Path, default=Path("runs/corpus-cache"))
    parser.add_argument("--objective", default="exlm")
    parser.add_argument("--mask-rate", type=float, default=0.15)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        sys.exit(f"--variants: unknown {unknown}; known: {sorted(VARIANTS)}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            results[name] = run_variant(name, args, Path(tmp) / name)
            if not args.json:
                print(name, results[name], flush=True)
    first = results[names[0]]["tokens_per_second"]
    for result in results.values():
        result["speed_vs_first"] = round(result["tokens_per_second"] / first, 3)
    print_result({"objective": args.objective, "steps": args.steps, "variants": results}, args.json)


if __name__ == "__main__":
    main()
