"""Memory of `exlm-chem embed` against the size of its input: it must not grow with the file.

    python benchmarks/speed/bench_embed_memory.py --molecules 100000,1000000 --json

For each size, writes a `.smi` file of that many molecules (the ZINC corpus, cycled, when
present; randomized SMILES of data/drugs.csv otherwise), runs `exlm-chem embed` on it in a
child process and samples the resident memory of the child and its preparation workers
(`--workers`, summed: shared pages counted once per process, so an upper bound). Streaming
means the peak is the same for every size: the script prints each peak and, per output
format, the largest peak over the smallest (`rss_growth`, flat: close to 1).

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

from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer
from exlm_chem.model import save_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles, print_result


def resident_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the embed command's preparation workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return [pid]
    return [pid] + [p for child in children for p in process_tree(int(child))]


def peak_rss_mb(command: list[str], interval: float = 0.2) -> tuple[float, float]:
    """Run ``command``; the peak resident memory (MB, sampled) of it and its descendants
    together, and its wall time."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while child.poll() is None:
        peak = max(peak, sum(resident_mb(pid) or 0.0 for pid in process_tree(child.pid)))
        time.sleep(interval)
    if child.returncode != 0:
        sys.exit(f"embed failed: {child.stderr.read()}")
    return peak, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", default="100000,1000000", help="comma-separated input sizes")
    parser.add_argument("--model", help="model folder (default: a tiny random-weight model)")
    parser.add_argument("--formats", default="parquet,npy", help="output formats to measure")
    parser.add_argument(
        "--workers", type=int, help="embed's --workers (default: its own default for the machine)"
    )
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    args = parser.parse_args()
    sizes = [int(n) for n in args.molecules.split(",")]

    source, source_name = benchmark_smiles(200_000)
    result = {
        "source": f"{source_name}, cycled",
        "model": "tiny, random weights" if args.model is None else args.model,
        "workers": "embed's default" if args.workers is None else args.workers,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model
        if model_dir is None:
            tokenizer = SmilesTokenizer.from_corpus(source)
            model = ExLMModel(
                ExLMConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size), tokenizer
            )
            model_dir = save_model(model, tmp / "tiny-model")
        for fmt in args.formats.split(","):
            peaks = []
            for n in sizes:
                molecules = tmp / "molecules.smi"
                with open(molecules, "w") as handle:
                    for i, smiles in zip(range(n), itertools.cycle(source)):
                        handle.write(f"{smiles}\tmol{i}\n")
                output = tmp / f"out.{fmt}"
                command = [
                    sys.executable,
                    "-m",
                    "exlm_chem",
                    "embed",
                    str(molecules),
                    "-o",
                    str(output),
                    "--model",
                    str(model_dir),
                    "--overwrite",
                ]
                if args.workers is not None:
                    command += ["--workers", str(args.workers)]
                peak, seconds = peak_rss_mb(command)
                peaks.append(peak)
                result[f"{fmt}_{n}_peak_rss_mb"] = round(peak)
                result[f"{fmt}_{n}_seconds"] = round(seconds, 1)
                result[f"{fmt}_{n}_output_mb"] = round(output.stat().st_size / 2**20)
                output.unlink()
            result[f"{fmt}_rss_growth"] = round(max(peaks) / min(peaks), 3)
    print_result(result, args.json)


if __name__ == "__main__":
    main()
