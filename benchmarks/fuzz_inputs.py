"""Property-based fuzzing of what reads user files: the molecule readers, the tokenizer and the
embed path, on random bytes, SMILES-like text, truncated gzip and SDF fragments.

The property: every input is either read, or refused with one `InputError` (tokenize_smiles: a
ValueError) that names the file; never another exception, and `embed_file` never leaves a
partial output (the output folder holds the complete file or nothing).

    python benchmarks/fuzz_inputs.py --json --examples 2000
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


def fuzz(examples: int, seed: int = 0, embed_every: int = 10) -> dict:
    """Run the fuzz; counts of cases tried, refused cleanly, read, and the failures."""
    tokenizer = SmilesTokenizer(list("CNOScno()=#123456789"))
    import torch

    from exlm_chem import ExLMConfig, ExLMModel

    torch.manual_seed(seed)
    model = ExLMModel(
        ExLMConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size), tokenizer
    ).eval()
    counts = {"cases": 0, "read": 0, "refused": 0, "embedded": 0, "smiles_checked": 0}
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
    )
    def case(suffix, data, truncate, smiles):
        counts["cases"] += 1
        case_number = counts["cases"]
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            path = _write(folder, suffix, data, truncate)
            try:
                for chunk in read_molecule_chunks(path, errors="keep"):
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
