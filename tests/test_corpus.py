"""Pretraining corpora: streamed preparation in worker processes, sources and their sampling
weights, and a vocabulary that reads charges, stereo and every element."""

import gzip
import json
from collections import Counter

import numpy as np
import pytest

from exlm_chem import InputError, embed, load_model
from exlm_chem.training.batches import epoch_batches
from exlm_chem.training.config import parse_source_weights
from exlm_chem.training.corpus import PackedCorpus, pack_corpus
from exlm_chem.training.data import molecule_weights

TABLE = "smiles\tsource\nCCO\tzinc\nC[NH3+]\tchembl\nC[C@H](N)O\tchembl\nC1CC\tchembl\nCCN\tzinc\n"


def test_a_corpus_table_keeps_each_molecules_source(tmp_path):
    (tmp_path / "a.tsv").write_text(TABLE)
    (tmp_path / "extra.smi").write_text("CCCl\nc1ccccc1\n")
    stats = pack_corpus([tmp_path / "a.tsv", tmp_path / "extra.smi"], None, True, tmp_path / "p")
    corpus = PackedCorpus.load(tmp_path / "p")
    assert corpus.smiles(range(len(corpus))) == [
        "CCO",
        "C[NH3+]",
        "C[C@H](N)O",
        "CCN",
        "CCCl",
        "c1ccccc1",
    ]
    assert [corpus.source_names[s] for s in corpus.sources] == [
        "zinc",
        "chembl",
        "chembl",
        "zinc",
        "extra",
        "extra",
    ]
    assert stats.sources == {"zinc": 2, "chembl": 2, "extra": 2} and stats.invalid_rdkit == 1
    assert stats.token_counts["[NH3+]"] == 1 and stats.token_counts["[C@H]"] == 1


def test_preparation_in_worker_processes_equals_preparation_here(tmp_path):
    lines = [f"{'C' * (1 + i % 30)}O\t{'ab'[i % 2]}" for i in range(25_000)]
    path = tmp_path / "big.tsv.gz"
    path.write_bytes(gzip.compress(("smiles\tsource\n" + "\n".join(lines) + "\n").encode()))
    here = pack_corpus([path], None, True, tmp_path / "here", workers=0)
    spread = pack_corpus([path], None, True, tmp_path / "spread", workers=2)
    assert here == spread
    for name in ("data", "offsets", "lengths", "sources"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "here" / f"{name}.npy"), np.load(tmp_path / "spread" / f"{name}.npy")
        )
    corpus = PackedCorpus.load(tmp_path / "spread")
    assert corpus.smiles([0, 24_999]) == ["CO", "C" * 10 + "O"]
    subset = np.array([3, 5, 24_998])
    corpus.write_subset(subset, tmp_path / "subset")
    part = PackedCorpus.load(tmp_path / "subset")
    assert part.smiles(range(3)) == corpus.smiles(subset)
    np.testing.assert_array_equal(part.lengths, corpus.lengths[subset])
    assert not list((tmp_path / "spread").glob("*.part"))


def test_source_weights_set_how_often_each_source_is_drawn(tmp_path):
    assert parse_source_weights("moses=0.5, chembl=2") == {"moses": 0.5, "chembl": 2.0}
    for bad in ("moses", "moses=-1", "=2", "moses=lots"):
        with pytest.raises(InputError, match="--source-weights"):
            parse_source_weights(bad)
    sources = np.array([0] * 1000 + [1] * 1000, dtype=np.int16)
    corpus = PackedCorpus(
        None, None, np.full(2000, 10, dtype=np.int32), sources, ["moses", "chembl"]
    )
    weights = molecule_weights(corpus, {"moses": 0.5, "chembl": 2})
    drawn = Counter()
    for epoch in range(4):
        for batch in epoch_batches(corpus.lengths, epoch, 0, 0, 1, 640, weights):
            drawn.update(sources[batch].tolist())
    assert drawn[1] == 4 * 2000  # two draws each, every epoch
    assert abs(drawn[0] - 4 * 500) < 150  # half of them, by a seeded coin
    with pytest.raises(InputError, match="names no source of the corpus: zinc"):
        molecule_weights(corpus, {"zinc": 2})
    # Without weights the epoch is the same permutation as always (exact resumes stay exact).
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            epoch_batches(corpus.lengths, 0, 0, 0, 1, 640),
            epoch_batches(corpus.lengths, 0, 0, 0, 1, 640, None),
        )
    )


def test_a_tiny_run_on_the_broad_corpus_reads_charges_stereo_and_heteroatoms(
    shared_data, tmp_path, run_cli
):
    with gzip.open(shared_data / "pretrain" / "broad_corpus.tsv.gz", "rt") as handle:
        header = next(handle)
        picked = [row for i, row in enumerate(handle) if i % 500 == 0]  # every source
    path = tmp_path / "broad.tsv.gz"
    path.write_bytes(gzip.compress((header + "".join(picked)).encode()))
    out = tmp_path / "run"
    args = ["pretrain", "--corpus", path, "--out", out, "--preset", "tiny", "--max-steps", "3"]
    args += [
        "--val-size",
        "100",
        "--min-token-count",
        "2",
        "--source-weights",
        "moses=0.5",
        "--workers",
        "2",
    ]
    code, _, err = run_cli(*args)
    assert code == 0, err
    run = json.loads((out / "run.json").read_text())
    everything = {
        "moses",
        "datagrok500k",
        "bp_ChEMBL",
        "chemxlstm",
        "gmattedi",
        "bp_DUD",
        "molscore",
    }
    assert set(run["corpus"]["sources"]) == everything
    assert run["pretrain"]["source_weights"] == "moses=0.5"
    model = load_model(out / "model")
    tokens = set(model.tokenizer.id_to_token)
    assert {
        "[C@H]",
        "[C@@H]",
        "[O-]",
        "[NH+]",
        "[N+]",
    } <= tokens and "[Hg]" in tokens  # elements too
    policy = json.loads((out / "model" / "config.json").read_text())["input"]
    assert policy["stereochemistry"] == "kept" and policy["charges"] == "kept as written"
    stereo = embed(["C[C@H](N)C(=O)O", "C[C@@H](N)C(=O)O"], model)
    assert not np.allclose(stereo[0], stereo[1], atol=1e-6)  # stereoisomers differ
    from exlm_chem.embedding import embed_molecules

    code, _, err = run_cli("export", out, "--to", tmp_path / "exported")
    assert code == 0, err
    card = (tmp_path / "exported" / "MODEL_CARD.md").read_text()
    assert "by source: " in card and "draws per epoch: moses=0.5" in card
    assert "derived from ChEMBL" in card and "CC BY-SA 3.0" in card
    read = embed_molecules(
        ["C[NH+](C)C", "[O-][N+](=O)c1ccccc1", "CP(=O)(O)O", "CI"], model, "mean", 8, "fp32", True
    )
    assert read.unknown_atoms.tolist() == [0, 0, 0, 0]
