"""The shape of the code: no import cycles, modules readable in one sitting, and each molecule
read once on its way to a vector."""

import ast
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

PACKAGE = Path(__file__).resolve().parents[1] / "exlm_chem"
MAX_MODULE_LINES = 350  # "about 300", with the formatter's line breaks


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports when it is imported (not inside functions,
    not under ``if TYPE_CHECKING``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                as_file = PACKAGE.parent / Path(*submodule.split("."))
                is_module = (
                    as_file.with_suffix(".py").exists() or (as_file / "__init__.py").is_file()
                )
                found.add(submodule if is_module else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("exlm_chem")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("exlm_chem"):
            found.add(node.module)
    return found


def test_no_import_cycles():
    graph = {module_name(p): top_level_imports(p) for p in PACKAGE.rglob("*.py")}
    state: dict[str, str] = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for target in graph.get(node, ()):
            visit(target, trail + [node])
        state[node] = "done"

    for node in graph:
        visit(node, [])


def test_no_module_is_a_hall():
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_the_embed_path_parses_and_tokenizes_each_molecule_once(
    model, drug_smiles, tmp_path, monkeypatch
):
    from rdkit import Chem

    from exlm_chem import ExLMFeaturizer, embed, embed_file, smiles
    from exlm_chem.tokenizer import SmilesTokenizer

    # Molecules whose canonical SMILES tokenizes: for the others (RDKit writes dative bonds as
    # "->"), the SMILES as given is tokenized too, by design.
    readable = [s for s in drug_smiles if "->" not in Chem.MolToSmiles(Chem.MolFromSmiles(s))]
    assert len(readable) >= len(drug_smiles) - 2
    drug_smiles = readable
    counts = Counter()
    parse, regex_tokens = Chem.MolFromSmiles, smiles.regex_tokens
    flat_ids = SmilesTokenizer._flat_ids

    def counting(what, function):
        def wrapper(*args, **kwargs):
            counts[what] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(Chem, "MolFromSmiles", counting("parse", parse))
    monkeypatch.setattr(smiles, "regex_tokens", counting("tokenize", regex_tokens))
    monkeypatch.setattr(SmilesTokenizer, "_flat_ids", counting("tokenize batch", flat_ids))
    n = len(drug_smiles)

    embed(drug_smiles, model)
    assert counts == {"parse": n, "tokenize": n}

    counts.clear()
    path = tmp_path / "drugs.csv"
    pd.DataFrame({"smiles": drug_smiles}).to_csv(path, index=False)
    embed_file(path, tmp_path / "e.npy", model=model, progress=False)
    assert counts == {"parse": n, "tokenize": n}

    mols = [parse(s) for s in drug_smiles]
    counts.clear()
    features = ExLMFeaturizer(model=model).featurize(mols)
    assert counts == {"tokenize": n}  # RDKit molecules are read as they are
    np.testing.assert_allclose(features, embed(drug_smiles, model), atol=1e-5)
