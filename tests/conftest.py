import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def load_benchmark_script(name: str):
    """A script of benchmarks/ or one of its folders (speed, quality, checks, gpu) as a module
    (they are scripts, not a package)."""
    benchmarks = REPO / "benchmarks"
    path = benchmarks / f"{name}.py"
    if not path.exists():
        (path,) = [p for p in benchmarks.glob(f"*/{name}.py") if p.parent.name != "results"]
    # They import `common` and their siblings, as when run as `python benchmarks/DIR/NAME.py`.
    for folder in (benchmarks, path.parent):
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# One place knows where the shared data folder is, for the benchmarks and the tests.
find_shared_data = load_benchmark_script("common").shared_data_dir


@pytest.fixture(scope="session")
def benchmark_script():
    return load_benchmark_script


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = find_shared_data()
    if path is None:
        pytest.skip(
            "shared data folder not found (set EXLM_DATA_DIR to the folder holding zinc/ and "
            "moleculenet/)"
        )
    return path


@pytest.fixture(scope="session")
def drug_smiles() -> list[str]:
    import csv

    with open(REPO / "data" / "drugs.csv") as handle:
        return [row["smiles"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, drug_smiles):
    """A tiny random model (64 numbers per molecule) whose vocabulary is that of data/drugs.csv."""
    import torch

    from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer
    from exlm_chem.model import save_model

    torch.manual_seed(0)
    extra = ["CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "OC(=O)c1ccccc1O", "C[Se]C"]
    tokenizer = SmilesTokenizer.from_corpus(drug_smiles + extra)
    model = ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size), tokenizer)
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(model, path)
    return path


@pytest.fixture(scope="session")
def model(model_dir):
    from exlm_chem import load_model

    return load_model(model_dir)


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run the exlm-chem command in-process; returns (exit status, stdout, stderr)."""
    from exlm_chem import cli

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["exlm-chem", *map(str, args)])
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def chains(lengths, end: str) -> list[str]:
    """Alkyl chains ending in one atom, in both directions: CCCO and OCCC."""
    return [s for k in lengths for s in ("C" * k + end, end + "C" * k)]


def amine_task(lengths):
    """Label 1 for an amine, 0 for an alcohol: learnable from one token."""
    smiles = chains(lengths, "N") + chains(lengths, "O")
    y = np.array([1.0] * (2 * len(lengths)) + [0.0] * (2 * len(lengths)))
    return smiles, y


@pytest.fixture
def amine_csv(tmp_path):
    """Amines (1) and alcohols (0) in a CSV: a task learnable from one token."""
    import pandas as pd

    smiles, y = amine_task(range(1, 40))
    path = tmp_path / "amines.csv"
    pd.DataFrame({"smiles": smiles, "is_amine": y.astype(int)}).to_csv(path, index=False)
    return path
