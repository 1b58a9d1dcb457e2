"""The baselines a chemist would pick instead: Morgan counts, fingerprints joined with
descriptors, a 500-tree forest, chemprop trained from scratch; computed once and reused."""

import sys

import deepchem as dc
import numpy as np
import pytest

from exlm_chem.moleculenet import suite
from exlm_chem.moleculenet.datasets import load_features
from exlm_chem.moleculenet.features import make_featurizer, parse_features

SMILES = [
    "CCO", "CCN", "CCCO", "c1ccccc1", "CC(=O)O", "CCCCN", "OCCO", "CCOCC", "c1ccncc1",
    "CC(C)O", "NCCN", "CCCCCO", "c1ccccc1N", "OC(=O)CCN", "CN(C)C",
]  # fmt: skip


def part(rows, tasks=2):
    smiles = [SMILES[i % len(SMILES)] for i in rows]
    y = np.array([[float("N" in s), float("O" in s)][:tasks] for s in smiles])
    w = np.ones_like(y)
    w[0, -1] = 0  # a missing label
    return dc.data.NumpyDataset(np.zeros((len(rows), 1)), y, w, np.array(smiles))


def test_chemprop_trains_from_scratch_and_predicts_each_part_in_order():
    from exlm_chem.moleculenet.chemprop import chemprop_predictions

    train, valid, test = part(range(45)), part(range(45, 52)), part(range(52, 60))
    test.w[:, 1] = 0  # a task without any test label (one of ToxCast's, on a split) is fine
    valid_prediction, test_prediction = chemprop_predictions(
        "classification", train, valid, test, seed=0, options=("--epochs", "3")
    )
    assert valid_prediction.shape == (7, 2) and test_prediction.shape == (8, 2)
    assert ((test_prediction >= 0) & (test_prediction <= 1)).all()
    regression = chemprop_predictions(
        "regression", train, valid, test, seed=0, options=("--epochs", "3")
    )
    assert regression[1].shape == (8, 2) and np.isfinite(regression[1]).all()


def test_bad_feature_requests_stop_before_anything_is_written(run_cli, tmp_path, monkeypatch):
    out = tmp_path / "out"
    for features, message in [
        ("ecfp-counts", "unknown features 'ecfp-counts'"),
        ("ecfp&ecfp-count", "are the same environments twice"),
        ("rdkit2d&rdkit2d", "joined with itself"),
    ]:
        code, _, err = run_cli(
            "benchmark", "--datasets", "bbbp", "--features", features, "--out", out
        )
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.setitem(sys.modules, "chemprop", None)  # as if it were not installed
    code, _, err = run_cli(
        "benchmark", "--datasets", "bbbp", "--features", "chemprop", "--out", out
    )
    assert code == 2 and "pip install 'exlm-chem[bench]'" in err, err
    code, _, err = run_cli(
        "benchmark", "--datasets", "bbbp", "--features", "ecfp", "--out", out,
        "--baselines-from", tmp_path / "nowhere",
    )  # fmt: skip
    assert code == 2 and "--baselines-from" in err and "no results.json" in err, err
    assert not out.exists()


def test_joined_features_sit_side_by_side_on_the_molecules_all_parts_read(shared_data, tmp_path):
    data = shared_data / "moleculenet"
    joined = make_featurizer(parse_features("ecfp-count&rdkit2d")[0])
    tasks, dataset = load_features("freesolv", joined, data, tmp_path / "cache")
    _, counts = load_features("freesolv", joined.parts[0], data, tmp_path / "cache")
    _, descriptors = load_features("freesolv", joined.parts[1], data, tmp_path / "cache")
    assert joined.blocks == [2048, descriptors.X.shape[1]] and tasks == ["expt"]
    assert dataset.X.shape == (len(counts), 2048 + descriptors.X.shape[1])
    np.testing.assert_array_equal(dataset.X[:, :2048], counts.X)
    np.testing.assert_array_equal(dataset.X[:, 2048:], descriptors.X)
    assert list(dataset.ids) == list(counts.ids)


def test_baselines_are_computed_once_and_reused_by_later_runs(shared_data, tmp_path, monkeypatch):
    features = parse_features("ecfp-count,ecfp-count&rdkit2d")
    common = dict(
        data_dir=shared_data / "moleculenet", split="random_scaffold", seeds=[0],
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    first = suite.run_benchmark(["freesolv"], features, ["rf"], tmp_path / "a", **common)
    assert {r["features"] for r in first} == {"ecfp-count", "ecfp-count&rdkit2d"}
    assert all(r["probe_settings"] == {"trees": 500} for r in first)
    assert all(0 < r["value"] < 10 for r in first)

    def refit(*args, **kwargs):
        raise AssertionError("a baseline was fitted again")

    monkeypatch.setattr(suite, "probe_predictions", refit)
    again = suite.run_benchmark(["freesolv"], features, ["rf"], tmp_path / "b", **common)
    assert [(r["features"], r["value"]) for r in again] == [
        (r["features"], r["value"]) for r in first
    ]
    # On another machine, with an empty cache: the records of a committed folder are reused.
    common["cache_dir"] = tmp_path / "empty-cache"
    elsewhere = suite.run_benchmark(
        ["freesolv"], features, ["rf"], tmp_path / "c", baselines_from=[tmp_path / "a"], **common
    )
    assert elsewhere == first
    # ... without featurizing anything: only the results are in the new cache.
    assert [p.name for p in (tmp_path / "empty-cache").iterdir()] == ["baselines"]


def test_chemprop_runs_on_the_suites_splits_once(shared_data, tmp_path, monkeypatch):
    from exlm_chem.moleculenet import baselines
    from exlm_chem.moleculenet.chemprop import chemprop_predictions

    def few_epochs(*args, **kwargs):  # the real chemprop, for 3 epochs instead of 50
        return chemprop_predictions(*args, options=("--epochs", "3"), **kwargs)

    monkeypatch.setattr(baselines, "chemprop_predictions", few_epochs)
    common = dict(
        data_dir=shared_data / "moleculenet", split="random_scaffold", seeds=[0],
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    (record,) = suite.run_benchmark(
        ["freesolv"], parse_features("chemprop"), ["rf"], tmp_path / "a", **common
    )
    assert record["probe"] == "scratch" and record["featurizer"].startswith("chemprop-2.")
    assert 0 < record["value"] < 10 and 0 < record["valid_value"] < 10
    # Resumed in the same folder, or run for another model's report: not trained again.
    monkeypatch.setattr(baselines, "chemprop_predictions", None)
    for out in ("a", "b"):
        again = suite.run_benchmark(
            ["freesolv"], parse_features("chemprop"), ["rf"], tmp_path / out, resume=True,
            **common,
        )  # fmt: skip
        assert again == [record]
    report = (tmp_path / "b" / "results.md").read_text()
    assert "| freesolv | chemprop / scratch |" in report


def test_records_of_an_older_forest_are_redone_only_for_the_features_run(shared_data, tmp_path):
    import json

    common = dict(
        data_dir=shared_data / "moleculenet", split="random_scaffold", seeds=[0],
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    out = tmp_path / "out"
    first = suite.run_benchmark(["freesolv"], parse_features("ecfp,rdkit2d"), ["rf"], out, **common)
    # As if made by the 200-tree forest of before: no settings, another value.
    older = [dict(r, value=99.0) for r in first]
    for record in older:
        record.pop("probe_settings")
    (out / "results.json").write_text(json.dumps(older))
    again = suite.run_benchmark(
        ["freesolv"], parse_features("ecfp"), ["rf"], out, resume=True, **common
    )
    by_features = {r["features"]: r for r in again}
    assert len(again) == 2
    assert by_features["ecfp"]["value"] != 99.0 and by_features["ecfp"]["probe_settings"]
    assert by_features["rdkit2d"]["value"] == 99.0  # not run this time: kept as it was


def test_a_second_run_into_a_folder_being_written_is_refused(shared_data, tmp_path):
    from exlm_chem.errors import InputError

    common = dict(data_dir=shared_data / "moleculenet", split="random_scaffold", seeds=[0])
    out = tmp_path / "out"
    out.mkdir()
    with suite._only_writer(out):  # as if another run were writing there
        with pytest.raises(InputError, match="another exlm-chem benchmark is writing"):
            suite.run_benchmark(["freesolv"], parse_features("ecfp"), ["logreg"], out, **common)
    assert not (out / "results.json").exists()
    # That run ended: this one goes ahead.
    (record,) = suite.run_benchmark(["freesolv"], parse_features("ecfp"), ["logreg"], out, **common)
    assert record["features"] == "ecfp" and (out / "results.json").exists()
