"""Memory of `exlm-chem embed` on a large file: it must stay flat whatever the file size.

    python benchmarks/bench_embed_memory.py --molecules 1000000 --json

Writes a `.smi` file of N molecules (the ZINC corpus, cycled, when present; randomized SMILES of
data/drugs.csv otherwise), runs `exlm-chem embed` on it in a child process and samples the
child's resident memory. Streaming means the peak over the whole run is close to the peak over
its first tenth: the script prints both and their ratio (`rss_growth`), for each output format.

The model is a `tiny` network with random weights unless `--model DIR` is given: memory
flatness is a property of the reading/writing loop, and the tiny network keeps a million
molecules to minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import benchmark_smiles, print_result

from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer
from exlm_chem.model import save_model


def resident_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def embed_and_sample(command: list[str], interval: float = 0.2) -> tuple[list[tuple[float, float]], float]:
    """Run ``command``; (seconds since start, RSS MB) samples and the wall time."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while child.poll() is None:
        rss = resident_mb(child.pid)
        if rss is not None:
            samples.append((time.perf_counter() - start, rss))
        time.sleep(interval)
    if child.returncode != 0:
        sys.exit(f"embed failed: {child.stderr.read()}")
    return samples, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", type=int, default=1_000_000)
    parser.add_argument("--model", help="model folder (default: a tiny random-weight model)")
    parser.add_argument("--formats", default="parquet,npy", help="output formats to measure")
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    args = parser.parse_args()

    source, source_name = benchmark_smiles(200_000)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        molecules = tmp / "molecules.smi"
        with open(molecules, "w") as handle:
            for i, smiles in zip(range(args.molecules), itertools.cycle(source)):
                handle.write(f"{smiles}\tmol{i}\n")
        model_dir = args.model
        if model_dir is None:
            tokenizer = SmilesTokenizer.from_corpus(source)
            model = ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size), tokenizer)
            model_dir = save_model(model, tmp / "tiny-model")
        result = {"n_molecules": args.molecules, "source": f"{source_name}, cycled", "model": "tiny, random weights" if args.model is None else args.model}
        for fmt in args.formats.split(","):
            output = tmp / f"out.{fmt}"
            command = [sys.executable, "-m", "exlm_chem.cli", "embed", str(molecules), "-o", str(output), "--model", str(model_dir)]
            samples, seconds = embed_and_sample(command)
            first_tenth = max(rss for t, rss in samples if t <= seconds / 10)
            peak = max(rss for _, rss in samples)
            result[f"{fmt}_seconds"] = round(seconds, 1)
            result[f"{fmt}_peak_rss_mb_first_tenth"] = round(first_tenth)
            result[f"{fmt}_peak_rss_mb"] = round(peak)
            result[f"{fmt}_rss_growth"] = round(peak / first_tenth, 3)
            result[f"{fmt}_output_mb"] = round(output.stat().st_size / 2**20)
            output.unlink()
    print_result(result, args.json)


if __name__ == "__main__":
    main()
