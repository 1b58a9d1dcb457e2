import subprocess
import sys


def test_import_is_fast_and_quiet():
    code = (
        "import sys, exlm_chem; assert 'torch' not in sys.modules and 'deepchem' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_help_and_info(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0 and "tokenize" in out and "info" in out
    code, out, _ = run_cli("info")
    assert code == 0
    assert "torch:" in out and "rdkit:" in out and "deepchem:" in out and "default model:" in out
    assert "pretrain allocator:" in out


def test_tokenize_smiles_and_file(run_cli, tmp_path):
    code, out, _ = run_cli("tokenize", "--smiles", "C[C@@H](Br)c1ccccc1")
    assert code == 0 and out.split() == [
        "C",
        "[C@@H]",
        "(",
        "Br",
        ")",
        "c",
        "1",
        "c",
        "c",
        "c",
        "c",
        "c",
        "1",
    ]
    path = tmp_path / "m.csv"
    path.write_text("Smiles\nCCO\nCCN\n")
    code, out, _ = run_cli("tokenize", path)
    assert code == 0 and out.splitlines() == ["C C O", "C C N"]


def test_tokenize_shows_how_a_model_reads_atoms_outside_its_vocabulary(run_cli, tmp_path):
    from exlm_chem import SmilesTokenizer

    SmilesTokenizer(["C", "N", "[N+]", "(", ")", "O"]).save(tmp_path / "tokenizer.json")
    args = ["--smiles", "C[NH+](C)[O-]*", "--fallbacks", "--tokenizer", tmp_path / "tokenizer.json"]
    code, out, _ = run_cli("tokenize", *args)
    assert code == 0 and out.split() == ["C", "[NH+]->[N+]", "(", "C", ")", "[O-]->O", "*-><unk>"]
    code, _, err = run_cli("tokenize", *args, "--ids")
    assert code == 2 and "--ids and --fallbacks exclude each other" in err


def test_tokenize_ids_with_a_tokenizer_file(run_cli, tmp_path):
    from exlm_chem import SmilesTokenizer

    tok = SmilesTokenizer(["C", "O"])
    tok.save(tmp_path / "tokenizer.json")
    code, out, _ = run_cli(
        "tokenize", "--smiles", "CCO", "--ids", "--tokenizer", tmp_path / "tokenizer.json"
    )
    assert code == 0 and out.split() == ["1", "5", "5", "6", "2"]


def test_bad_input_gives_one_line_and_nonzero_exit(run_cli, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("smiles\nCCO\nCCXO\n")
    empty = tmp_path / "empty.smi"
    empty.write_text("")
    cases = [
        (("tokenize", tmp_path / "nope.csv"), "nope.csv: file not found"),
        (("tokenize", empty), "empty.smi: file is empty"),
        (("tokenize", bad), "bad.csv: row 3: cannot tokenize SMILES 'CCXO'"),
        (("tokenize", bad, "--smiles-column", "mol"), "the columns are: smiles"),
        (("tokenize", "--smiles", "C[C"), "--smiles: cannot tokenize"),
        (("tokenize",), "give either an INPUT file or --smiles"),
    ]
    for args, message in cases:
        code, out, err = run_cli(*args)
        assert code == 2, (args, err)
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
