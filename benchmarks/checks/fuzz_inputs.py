"""Property-based fuzzing of what reads user files: the molecule readers, the tokenizer and the
embed path, on random bytes, SMILES-like text, truncated gzip and SDF fragments; and the
`predict`, `finetune` and `infill` commands on such files, labelled tables with odd labels and
templates with odd masks.

The property: every input is either read, or refused with one `InputError` (tokenize_smiles: a
ValueError) that names the file; never another exception, and `embed_file` never leaves a
partial output (the output folder holds the complete file or nothing). The commands exit with
0, or with 1 or 2 after one line starting with ``error:``, never a traceback, and leave no
partial file.

    python benchmarks/checks/fuzz_inputs.py --json --examples 2000
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exlm_chem import InputError, SmilesTokenizer, read_molecule_chunks, tokenize_smiles
from exlm_chem.cli import main as cli
from exlm_chem.embedding_files import embed_file

SMILES_ALPHABET = "CNOSPFIBrcnosp()[]=#+-@/\\%0123456789.*: \t\n,\"'H"
SUFFIXES = [".csv", ".tsv", ".smi", ".txt", ".sdf", ".csv.gz", ".smi.gz", ".sdf.gz", ""]
SDF_RECORD = """
     RDKit          2D

  3  2  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.2990    0.7500    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    2.5981   -0.0000    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  2  3  1  0
M  END
$$$$
"""

smiles_like = st.text(alphabet=SMILES_ALPHABET, max_size=60)
table_text = st.builds(
    lambda header, rows: header + "\n" + "\n".join(rows),
    st.sampled_from(["smiles", "SMILES,name", "name,smiles", "mol", "x,y", "smiles\tid", ""]),
    st.lists(smiles_like, max_size=8),
)
sdf_text = st.builds(
    lambda n, cut: (SDF_RECORD * n)[: cut if cut >= 0 else None],
    st.integers(0, 3),
    st.integers(-1, 400),
)
labels = st.one_of(
    st.sampled_from(["0", "1", "", "nan", "2", "-1", "0.5", "inf", "x", "1e400"]),
    st.text(max_size=5),
)
labelled_text = st.builds(
    lambda rows: "smiles,y\n" + "\n".join(f"{s!r},{y!r}".replace("'", "") for s, y in rows),
    st.lists(
        st.tuples(st.sampled_from(["CCO", "CCN", "c1ccccc1", "CCCC", "C1CC"]), labels),
        min_size=0,
        max_size=30,
    ),
)
templates = st.builds(
    lambda head, mask, tail: head + mask + tail,
    smiles_like,
    st.sampled_from(["<mask>", "<mask:2>", "<mask:0>", "<mask:-1>", "<mask:x>", "{}", "{3}", ""]),
    smiles_like,
)
contents = st.one_of(
    st.binary(max_size=300),
    smiles_like.map(str.encode),
    table_text.map(str.encode),
    sdf_text.map(str.encode),
)


def _write(folder: Path, suffix: str, data: bytes, truncate: int | None) -> Path:
    path = folder / f"input{suffix}"
    if suffix.endswith(".gz"):
        data = gzip.compress(data)
        if truncate is not None:
            data = data[: max(truncate, 0)]
    path.write_bytes(data)
    return path


def run_command(args: list[str]) -> tuple[int, str]:
    """An exlm-chem command in this process: its exit status and what it wrote on stderr."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli([str(a) for a in args])
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # what a user would see as a traceback
            print(traceback.format_exc(limit=3), file=sys.stderr)
            status = 1
    return status, err.getvalue()


def command_problem(name: str, status: int, err: str, folder: Path) -> str | None:
    """Why a command's outcome breaks the property, or None."""
    if "Traceback" in err:
        return f"{name}: a traceback: {err[-300:]}"
    if status not in (0, 1, 2):
        return f"{name}: exit status {status}"
    if status and not err.strip().splitlines()[-1].startswith("error: "):
        return f"{name}: exit {status} without a one-line error: {err[-200:]}"
    partial = [p.name for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    if partial:
        return f"{name}: left {partial}"
    return None


def fuzz(examples: int, seed: int = 0, embed_every: int = 10, commands_every: int = 25) -> dict:
    """Run the fuzz; counts of cases tried, refused cleanly, read, and the failures."""
    tokenizer = SmilesTokenizer(list("CNOScno()=#123456789"))
    import torch

    from exlm_chem import ExLMConfig, ExLMModel

    torch.manual_seed(seed)
    model = ExLMModel(
        ExLMConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size), tokenizer
    ).eval()
    from exlm_chem.finetuning.predictor import PropertyPredictor, save_predictor
    from exlm_chem.model import save_model

    models = Path(tempfile.mkdtemp(prefix="fuzz-models-"))
    save_model(model, models / "base", tokenizer)
    save_predictor(PropertyPredictor(model, "cls", ["y"], "classification", 0.0), models / "tuned")
    counts = {"cases": 0, "read": 0, "refused": 0, "embedded": 0, "smiles_checked": 0}
    counts.update(predict=0, finetune=0, infill=0)
    failures: list[str] = []

    @settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        suffix=st.sampled_from(SUFFIXES),
        data=contents,
        truncate=st.one_of(st.none(), st.integers(0, 200)),
        smiles=smiles_like,
        labelled=labelled_text,
        template=templates,
    )
    def case(suffix, data, truncate, smiles, labelled, template):
        counts["cases"] += 1
        case_number = counts["cases"]
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            path = _write(folder, suffix, data, truncate)
            try:
                for chunk in read_molecule_chunks(path, invalid="keep"):
                    for record in chunk:
                        if record.error is None:
                            try:
                                tokenizer.encode(record.smiles)
                            except ValueError:
                                pass  # the documented refusal of text the regex does not cover
                counts["read"] += 1
            except InputError as exc:
                if str(path) not in str(exc) or "\n" in str(exc).strip():
                    failures.append(
                        f"{suffix} {data[:60]!r}: an error that does not name the file on one "
                        f"line: {exc}"
                    )
                counts["refused"] += 1
            except Exception:
                failures.append(f"{suffix} {data[:60]!r}: {traceback.format_exc(limit=2)}")
            if case_number % embed_every == 0:
                out = folder / "out"
                out.mkdir()
                try:
                    embed_file(path, out / "e.parquet", model=model, progress=False)
                    counts["embedded"] += 1
                except InputError:
                    pass
                except Exception:
                    failures.append(
                        f"embed {suffix} {data[:60]!r}: {traceback.format_exc(limit=2)}"
                    )
                left = sorted(p.name for p in out.iterdir())
                if left not in ([], ["e.parquet"]):
                    failures.append(f"embed {suffix} {data[:60]!r}: left {left}")
            if case_number % commands_every == 0:
                out = folder / "commands"
                out.mkdir()
                table = folder / "labelled.csv"
                table.write_text(labelled)
                runs = {
                    "predict": ["predict", path, "--model", models / "tuned", "-o", out / "p.csv"],
                    "finetune": [
                        "finetune", table, "--target", "y", "--out", out / "m", "--model",
                        models / "base", "--epochs", "1", "--lr", "1e-3", "--split", "random",
                    ],
                    "infill": ["infill", template, "--model", models / "base", "-n", "2"],
                }  # fmt: skip
                for name, args in runs.items():
                    counts[name] += 1
                    status, err = run_command(args)
                    key = f"{name} exit {status}"
                    counts[key] = counts.get(key, 0) + 1
                    problem = command_problem(name, status, err, out)
                    if problem:
                        failures.append(f"{problem} (input {args[1]!r:.80})")
        counts["smiles_checked"] += 1
        try:
            tokens = tokenize_smiles(smiles)
            if "".join(tokens) != smiles:
                failures.append(f"tokenize_smiles({smiles!r}) does not join back")
        except ValueError:
            pass
        except Exception:
            failures.append(f"tokenize_smiles({smiles!r}): {traceback.format_exc(limit=2)}")

    case()
    return {**counts, "failures": len(failures), "failure_examples": failures[:10]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = fuzz(args.examples)
    print(json.dumps(result, indent=1) if args.json else result)
    sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
    main()
