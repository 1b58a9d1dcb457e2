import gzip

import pytest

from exlm_chem import InputError, read_molecule_chunks, read_molecules, read_smiles
from exlm_chem.outputs import atomic_path


def write(path, text, compress=False):
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_csv_default_column_any_case(tmp_path, compress):
    path = write(
        tmp_path / ("a.csv.gz" if compress else "a.csv"),
        "name,SMILES\nethanol,CCO\nbenzene,c1ccccc1\n",
        compress,
    )
    records = list(read_molecules(path, id_column="name"))
    assert [(r.row, r.id, r.smiles) for r in records] == [
        (2, "ethanol", "CCO"),
        (3, "benzene", "c1ccccc1"),
    ]


def test_csv_named_columns_and_missing_column(tmp_path):
    path = write(tmp_path / "a.csv", "id,canonical_smiles,mol\n1,CCO,CCN\n")
    assert read_smiles(path) == ["CCN"]  # mol comes before canonical_smiles in the search order
    assert read_smiles(path, smiles_column="canonical_smiles") == ["CCO"]
    with pytest.raises(
        InputError,
        match=r"a.csv: no SMILES column 'structure'; the columns are: id, canonical_smiles, mol",
    ):
        read_smiles(path, smiles_column="structure")
    other = write(tmp_path / "b.csv", "x,y\n1,2\n")
    with pytest.raises(InputError, match="the columns are: x, y"):
        read_smiles(other)


def test_tsv(tmp_path):
    path = write(tmp_path / "a.tsv", "smiles\tname\nCCO\teth\n")
    assert [(r.id, r.smiles) for r in read_molecules(path, id_column="name")] == [("eth", "CCO")]


def test_smi_with_and_without_names(tmp_path):
    path = write(tmp_path / "a.smi", "CCO ethanol\n\nc1ccccc1\n")
    assert [(r.row, r.id, r.smiles) for r in read_molecules(path)] == [
        (1, "ethanol", "CCO"),
        (3, "3", "c1ccccc1"),
    ]


def test_zinc_tranche_and_pubchem_files(tmp_path):
    zinc = write(
        tmp_path / "AAAA.txt", "smiles zinc_id\nCCO ZINC000000000001\nCCN ZINC000000000002\n"
    )
    assert [(r.row, r.id, r.smiles) for r in read_molecules(zinc)] == [
        (2, "ZINC000000000001", "CCO"),
        (3, "ZINC000000000002", "CCN"),
    ]
    pubchem = write(
        tmp_path / "CID-SMILES.gz", "1\tCC(=O)OC(CC(=O)[O-])C[N+](C)(C)C\n2\tCCO\n", compress=True
    )
    assert [(r.id, r.smiles) for r in read_molecules(pubchem)] == [
        ("1", "CC(=O)OC(CC(=O)[O-])C[N+](C)(C)C"),
        ("2", "CCO"),
    ]


def test_sdf(tmp_path):
    from rdkit import Chem

    path = tmp_path / "a.sdf"
    writer = Chem.SDWriter(str(path))
    for name, smiles in [("eth", "OCC"), ("benz", "c1ccccc1")]:
        mol = Chem.MolFromSmiles(smiles)
        mol.SetProp("_Name", name)
        mol.SetProp("code", name.upper())
        writer.write(mol)
    writer.close()
    assert [(r.row, r.id, r.smiles) for r in read_molecules(path)] == [
        (1, "eth", "CCO"),
        (2, "benz", "c1ccccc1"),
    ]
    assert [r.id for r in read_molecules(path, id_column="code")] == ["ETH", "BENZ"]
    gz = tmp_path / "a.sdf.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_smiles(gz) == ["CCO", "c1ccccc1"]


def test_chunks_stream_with_row_numbers(tmp_path):
    path = write(tmp_path / "a.csv", "smiles\n" + "".join(f"{'C' * (i + 1)}\n" for i in range(7)))
    chunks = list(read_molecule_chunks(path, chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [r.row for c in chunks for r in c] == list(range(2, 9))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="nope.csv: file not found"):
        list(read_molecules(tmp_path / "nope.csv"))
    with pytest.raises(InputError, match="empty.csv: file is empty"):
        list(read_molecules(write(tmp_path / "empty.csv", "")))
    with pytest.raises(InputError, match="header.csv: no molecules found"):
        list(read_molecules(write(tmp_path / "header.csv", "smiles\n")))


@pytest.mark.parametrize("cell", ["", "nan", "NaN", "  "])
def test_empty_cells_name_the_row(tmp_path, cell):
    path = write(tmp_path / "a.csv", f"smiles,x\nCCO,1\n{cell},2\n")
    with pytest.raises(InputError, match=r"a.csv: row 3: empty SMILES"):
        list(read_molecules(path))
    kept = list(read_molecules(path, invalid="keep"))
    assert kept[1].smiles == "" and kept[1].error == "empty SMILES"


def test_non_utf8_bytes_name_the_row(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"smiles\nCCO\nC\xff\xfeC\n")
    with pytest.raises(InputError, match=r"a.csv: row 3: bytes that are not valid UTF-8"):
        list(read_molecules(path))
    smi = tmp_path / "a.smi"
    smi.write_bytes(b"CCO\nC\xffC\n")
    with pytest.raises(InputError, match=r"a.smi: row 2"):
        list(read_molecules(smi))


def test_very_long_smiles_names_the_row(tmp_path):
    path = write(tmp_path / "a.smi", "CCO\n" + "C" * 10_000 + "\n")
    with pytest.raises(
        InputError, match=r"a.smi: row 2: SMILES of 10000 characters is longer than the limit"
    ):
        list(read_molecules(path))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(InputError, match="does not exist"):
        with atomic_path(tmp_path / "missing" / "out.txt"):
            pass


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os

    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_binary_files_and_files_that_are_not_sd_files_are_named(tmp_path):
    garbage = bytes(range(256)) * 20
    for name in ("g.sdf", "g.csv", "g.smi", "g.csv.gz"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(garbage) if name.endswith(".gz") else garbage)
        with pytest.raises(InputError, match=f"{name}: not a text file"):
            list(read_molecules(path))
    text = tmp_path / "t.sdf"
    text.write_text("CCO\nc1ccccc1\n")
    with pytest.raises(InputError, match=r"t.sdf: not an SD file \(its first record has no"):
        list(read_molecules(text))
