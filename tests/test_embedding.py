import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from rdkit import Chem

from exlm_chem import (
    ExLMConfig,
    ExLMModel,
    InputError,
    SmilesTokenizer,
    embed,
    embed_file,
    load_model,
)
from exlm_chem.model import model_fingerprint


def test_embed_shape_order_and_batch_independence(model, drug_smiles):
    vectors = embed(drug_smiles, model)
    assert vectors.shape == (len(drug_smiles), 64) and vectors.dtype == np.float32
    for i in (0, 5, len(drug_smiles) - 1):
        np.testing.assert_allclose(embed([drug_smiles[i]], model)[0], vectors[i], atol=1e-5)
    for batch_size in (1, 3, 7):
        np.testing.assert_allclose(
            embed(drug_smiles, model, batch_size=batch_size), vectors, atol=1e-5
        )
    np.testing.assert_array_equal(embed(drug_smiles, model), vectors)  # same run, same numbers
    cls = embed(drug_smiles, model, pooling="cls")
    assert not np.allclose(cls, vectors)


def test_invalid_smiles_give_nan_rows_and_a_warning(model):
    smiles = ["CCO", "C1CC", "", "c1ccccc1", "CCXO"]
    with pytest.warns(
        UserWarning, match=r"3 invalid SMILES got NaN embeddings \(indices 1, 2, 4\)"
    ):
        vectors = embed(smiles, model)
    assert np.isnan(vectors[[1, 2, 4]]).all() and not np.isnan(vectors[[0, 3]]).any()
    np.testing.assert_allclose(vectors[0], embed(["CCO"], model)[0], atol=1e-5)
    with pytest.raises(InputError, match="index 1"):
        embed(smiles, model, invalid="raise")


def test_every_smiles_of_a_molecule_gets_the_same_vector(model):
    aspirin = [
        "CC(=O)Oc1ccccc1C(=O)O",
        "OC(=O)c1ccccc1OC(C)=O",
        "c1cccc(OC(=O)C)c1C(O)=O",
        " CC(=O)Oc1ccccc1C(=O)O\n",
    ]
    vectors = embed(aspirin, model)
    np.testing.assert_allclose(vectors, np.repeat(vectors[:1], len(aspirin), axis=0), atol=1e-6)
    as_given = embed(aspirin, model, canonicalize=False)
    assert not np.allclose(as_given[0], as_given[1], atol=1e-3)
    np.testing.assert_allclose(
        as_given[3], as_given[0], atol=1e-6
    )  # surrounding whitespace is not SMILES


def test_stereochemistry_is_dropped_only_by_a_model_that_never_saw_it(model):
    isomers = ["C[C@@H](N)C(=O)O", "C[C@H](N)C(=O)O", "CC(N)C(=O)O"]
    assert "[C@@H]" in model.tokenizer.token_to_id
    with_stereo = embed(isomers, model)
    assert not np.allclose(with_stereo[0], with_stereo[1], atol=1e-3)
    tokenizer = SmilesTokenizer.from_corpus(["CC(N)C(=O)O", "c1ccccc1O"])
    torch.manual_seed(0)
    flat = ExLMModel(
        ExLMConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size), tokenizer
    ).eval()
    without_stereo = embed(isomers, flat)
    np.testing.assert_allclose(without_stereo, np.repeat(without_stereo[:1], 3, axis=0), atol=1e-6)
    assert tokenizer.unknown_count == 0


def test_bf16_stays_close_to_fp32(model, drug_smiles):
    fp32 = embed(drug_smiles, model)
    bf16 = embed(drug_smiles, model, precision="bf16")
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.99


def test_the_shipped_model_learned_chemistry(drug_smiles):
    from exlm_chem.preparation import prepare_smiles

    model = load_model()  # the default model inside the package
    smiles = [s for s in prepare_smiles(drug_smiles, model.tokenizer).smiles if s is not None]
    ids = model.tokenizer.encode_batch(smiles)
    masks = model.choose_masks(ids, torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = model(ids, masks, with_predictions=True)
    correct = (output.predictions == output.targets)[output.target_valid].float()
    assert len(correct) >= 30 and correct.mean() > 0.6  # an untrained network: about 1 in 29
    vectors = embed(drug_smiles)
    assert (
        vectors.shape == (len(drug_smiles), model.config.hidden_size) and np.isfinite(vectors).all()
    )


def test_changing_a_loaded_default_model_leaves_the_next_one_as_shipped(drug_smiles):
    before = embed(drug_smiles[:4])
    tuned = load_model()
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(1.0)  # what fine-tuning in place would do, only more
    assert np.allclose(embed(drug_smiles[:4]), before, atol=1e-6, equal_nan=True)


def test_shipped_models_are_selectable_by_name(run_cli, tmp_path):
    from exlm_chem.environment import DEFAULT_MODEL, packaged_models

    assert {DEFAULT_MODEL, "exlm-chem-v1", "exlm-chem-v2"} <= set(packaged_models())
    named = load_model(DEFAULT_MODEL)
    assert named.name == DEFAULT_MODEL and load_model().name == DEFAULT_MODEL
    np.testing.assert_array_equal(embed("CCO", named), embed("CCO"))
    previous = load_model("exlm-chem-v1")  # an earlier model stays selectable by name
    assert previous.name == "exlm-chem-v1"
    assert not np.allclose(embed("CCO", previous), embed("CCO"))
    with pytest.raises(InputError, match="nor a shipped model"):
        load_model("exlm-chem-v0")
    path = tmp_path / "m.smi"
    path.write_text("CCO\n")
    code, _, err = run_cli("embed", path, "--model", "exlm-chem-v1", "-o", tmp_path / "m.parquet")
    assert code == 0, err
    metadata = pq.read_schema(tmp_path / "m.parquet").metadata
    assert metadata[b"exlm_chem.model"] == b"exlm-chem-v1"


def test_a_missing_default_model_gets_a_clear_message(monkeypatch, tmp_path):
    from exlm_chem import environment
    from exlm_chem.model import storage

    monkeypatch.setattr(environment, "DEFAULT_MODEL_DIR", tmp_path)
    storage._load_default_model.cache_clear()
    with pytest.raises(InputError, match="default model is missing from this installation"):
        load_model()
    storage._load_default_model.cache_clear()


@pytest.fixture
def molecules_csv(tmp_path):
    path = tmp_path / "mols.csv"
    pd.DataFrame(
        {
            "name": ["eth", "bad", "benz", "empty", "acid"],
            "SMILES": ["CCO", "C1CC", "c1ccccc1", "", "CC(=O)O"],
        }
    ).to_csv(path, index=False)
    return path


def test_embed_file_to_parquet_keeps_invalid_rows(model, model_dir, molecules_csv):
    counts = embed_file(molecules_csv, model=model_dir, id_column="name")
    out = molecules_csv.with_name("mols.embeddings.parquet")
    assert counts == {
        "molecules": 5,
        "invalid": 2,
        "written": 5,
        "unknown_atoms": 0,
        "fallback_atoms": 0,
        "truncated": 0,
        "output": str(out),
    }
    table = pd.read_parquet(out)
    assert list(table.columns) == [
        "id",
        "smiles",
        "valid",
        "unknown_atoms",
        "fallback_atoms",
        "truncated",
        "embedding",
    ]
    assert table["id"].tolist() == ["eth", "bad", "benz", "empty", "acid"]
    assert table["valid"].tolist() == [True, False, True, False, True]
    vectors = np.stack(table["embedding"].to_numpy())
    np.testing.assert_allclose(
        vectors[[0, 2, 4]], embed(["CCO", "c1ccccc1", "CC(=O)O"], model), atol=1e-5
    )
    assert np.isnan(vectors[1]).all()


def test_embed_file_npy_csv_skip_and_shards(model, molecules_csv, tmp_path):
    embed_file(molecules_csv, tmp_path / "all.npy", model=model, invalid="skip")
    full = np.load(tmp_path / "all.npy")
    assert full.shape == (3, 64)
    embed_file(molecules_csv, tmp_path / "all.csv", model=model)
    frame = pd.read_csv(tmp_path / "all.csv")
    assert frame.shape == (5, 6 + 64) and frame["valid"].tolist() == [
        True,
        False,
        True,
        False,
        True,
    ]
    np.testing.assert_allclose(frame.iloc[[0, 2, 4], 6:].to_numpy(), full, atol=1e-5)
    parts = []
    for i in range(3):
        embed_file(
            molecules_csv, tmp_path / f"part{i}.npy", model=model, shard=(i, 3), invalid="keep"
        )
        parts.append(np.load(tmp_path / f"part{i}.npy"))
    assert [len(p) for p in parts] == [1, 2, 2]
    np.testing.assert_allclose(
        np.concatenate(parts), frame.iloc[:, 6:].to_numpy(dtype=np.float32), atol=1e-5
    )


def test_shards_cover_a_file_whose_line_count_is_off(model, tmp_path):
    # No final newline: the cheap count (lines) is one short; an SD file is counted by its
    # record ends. The shards must still cover every record once.
    smiles = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "C1CCCCC1", "CCCl", "OCCO"]
    table = tmp_path / "in.csv"
    table.write_text("smiles\n" + "\n".join(smiles))
    sdf = tmp_path / "in.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        for s in smiles:
            writer.write(Chem.MolFromSmiles(s))
    for path in (table, sdf):
        whole = np.load(
            embed_file(path, tmp_path / "whole.npy", model=model, overwrite=True)["output"]
        )
        parts = [
            np.load(
                embed_file(path, tmp_path / f"{path.suffix}{i}.npy", model=model, shard=(i, 3))[
                    "output"
                ]
            )
            for i in range(3)
        ]
        assert sum(len(part) for part in parts) == len(smiles)
        np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)


def test_embed_file_strict_stops_and_leaves_no_file(model, molecules_csv, tmp_path):
    out = tmp_path / "strict.parquet"
    with pytest.raises(InputError, match=r"mols.csv: row 3: RDKit cannot parse it: 'C1CC'"):
        embed_file(molecules_csv, out, model=model, invalid="raise")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mols.csv"]


def test_cli_embed(run_cli, model_dir, molecules_csv, tmp_path):
    code, _, err = run_cli(
        "embed", molecules_csv, "-o", tmp_path / "e.npy", "--model", model_dir, "--skip-invalid"
    )
    assert code == 0, err
    assert "3 molecules embedded" in err and "2 invalid SMILES skipped" in err
    assert np.load(tmp_path / "e.npy").shape == (3, 64)
    code, _, err = run_cli(
        "embed", molecules_csv, "-o", tmp_path / "s.npy", "--model", model_dir, "--strict"
    )
    assert code == 2 and "row 3" in err and not (tmp_path / "s.npy").exists()
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"smiles\nCCO\nC\xe9C\n")
    cases = [
        (("embed", tmp_path / "none.csv", "--model", model_dir), "none.csv: file not found"),
        (
            ("embed", molecules_csv, "--smiles-column", "smi", "--model", model_dir),
            "the columns are: name, SMILES",
        ),
        (
            ("embed", bad, "--model", model_dir, "-o", tmp_path / "x.npy"),
            "latin1.csv: row 3: bytes that are not valid UTF-8",
        ),
        (
            ("embed", molecules_csv, "--model", model_dir, "-o", tmp_path / "missing" / "x.npy"),
            "folder does not exist",
        ),
        (("embed", molecules_csv, "--model", tmp_path), "not a model directory"),
        (
            ("embed", molecules_csv, "--model", model_dir, "-o", tmp_path / "x.txt"),
            "output must end in",
        ),
        (("embed", molecules_csv, "--model", model_dir, "--shard", "3/3"), "need 0 <= I < N"),
    ]
    for args, message in cases:
        code, _, err = run_cli(*args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "x.npy").exists()


def test_sklearn_transformer(model_dir, drug_smiles):
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from exlm_chem import ExLMTransformer

    transformer = ExLMTransformer(model=model_dir)
    X = pd.Series(drug_smiles * 2)
    y = np.array([i % 2 for i in range(len(X))])
    vectors = transformer.fit_transform(X)
    assert vectors.shape == (len(X), 64)
    assert list(transformer.get_feature_names_out()[:2]) == ["exlm_layers_0", "exlm_layers_1"]
    cloned = clone(transformer)
    assert cloned.get_params()["model"] == model_dir and not hasattr(cloned, "model_")
    restored = pickle.loads(pickle.dumps(transformer))
    np.testing.assert_allclose(restored.transform(X), vectors, atol=1e-6)
    pipeline = Pipeline(
        [("exlm", ExLMTransformer(model=model_dir)), ("clf", LogisticRegression(max_iter=200))]
    )
    pipeline.fit(X.to_frame(), y)
    assert pipeline.predict(X.to_frame()).shape == (len(X),)
    search = GridSearchCV(pipeline, {"exlm__pooling": ["mean", "cls"]}, cv=2).fit(
        X.to_numpy()[:, None], y
    )
    assert search.best_params_["exlm__pooling"] in ("mean", "cls")


def test_deepchem_featurizer_with_csv_loader_and_classifier(model_dir, tmp_path):
    import deepchem as dc

    from exlm_chem import ExLMFeaturizer

    smiles = [
        "CCO",
        "c1ccccc1",
        "CC(=O)O",
        "CCN(CC)CC",
        "C1CC",
        "OC(=O)c1ccccc1O",
        "CC(=O)Oc1ccccc1C(=O)O",
        "CCCl",
    ]
    path = tmp_path / "data.csv"
    pd.DataFrame({"smiles": smiles, "label": [0, 1, 0, 1, 0, 1, 1, 0]}).to_csv(path, index=False)
    featurizer = ExLMFeaturizer(model=model_dir)
    features = featurizer.featurize(smiles)
    assert features.dtype == object and features[4].size == 0 and features[0].shape == (64,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = dc.data.CSVLoader(
            tasks=["label"], feature_field="smiles", featurizer=featurizer
        ).create_dataset(str(path))
    assert dataset.X.shape == (7, 64)  # the invalid SMILES was dropped
    classifier = dc.models.MultitaskClassifier(n_tasks=1, n_features=64, layer_sizes=[16])
    classifier.fit(dataset, nb_epoch=3)
    scores = classifier.evaluate(dataset, [dc.metrics.Metric(dc.metrics.roc_auc_score)])
    assert 0.0 <= scores["roc_auc_score"] <= 1.0
    assert "ExLMFeaturizer_" in str(featurizer) and len(str(featurizer)) < 64
    # The cache name says which model (the end of its folder's name) and which weights.
    assert Path(model_dir).name in str(featurizer)
    assert model_fingerprint(load_model(model_dir)) in str(featurizer)


def test_deepchem_molnet_loader(model_dir, shared_data, tmp_path):
    import deepchem as dc

    from exlm_chem import ExLMFeaturizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tasks, (train, valid, test), _ = dc.molnet.load_bbbp(
            featurizer=ExLMFeaturizer(model=model_dir),
            splitter="scaffold",
            data_dir=str(shared_data / "moleculenet"),
            save_dir=str(tmp_path),
        )
    assert tasks == ["p_np"]
    total = len(train) + len(valid) + len(test)
    assert 2030 <= total < 2050  # the rows RDKit rejects are dropped
    assert train.X.shape[1] == 64 and not np.isnan(train.X).any()


def test_read_outs_mean_cls_and_both_everywhere_a_vector_comes_out(
    model, model_dir, tmp_path, run_cli
):
    import pyarrow.parquet as pq

    from exlm_chem import ExLMTransformer
    from exlm_chem.moleculenet.features import parse_features

    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    mean, cls = embed(smiles, model, pooling="mean"), embed(smiles, model, pooling="cls")
    both = embed(smiles, model, pooling="mean+cls")
    assert both.shape == (3, 128) and not np.allclose(mean, cls)
    np.testing.assert_allclose(both, np.concatenate([mean, cls], axis=1), atol=1e-6)
    transformer = ExLMTransformer(model=model_dir, pooling="mean+cls").fit()
    names = transformer.get_feature_names_out()
    assert names[0] == "exlm_mean_0" and names[64] == "exlm_cls_0" and len(names) == 128
    path = tmp_path / "m.csv"
    pd.DataFrame({"smiles": smiles}).to_csv(path, index=False)
    code, _, err = run_cli(
        "embed", path, "-o", tmp_path / "e.parquet", "--model", model_dir, "--pooling", "cls"
    )
    assert code == 0, err
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.schema.metadata[b"exlm_chem.pooling"] == b"cls"
    # Which model made the file: its folder and the hash of its weights.
    assert table.schema.metadata[b"exlm_chem.model"] == str(model_dir).encode()
    assert (
        table.schema.metadata[b"exlm_chem.weights"]
        == model_fingerprint(load_model(model_dir)).encode()
    )
    assert transformer.model_name_ == str(model_dir)
    assert f"model {model_dir}, weights {transformer.weights_hash_}" in repr(transformer)
    np.testing.assert_allclose(np.stack(table.column("embedding").to_pylist()), cls, atol=1e-5)
    code, _, err = run_cli(
        "embed", path, "-o", tmp_path / "e.csv", "--model", model_dir, "--pooling", "mean+cls"
    )
    assert code == 0 and list(pd.read_csv(tmp_path / "e.csv").columns)[6:8] == [
        "exlm_mean_0",
        "exlm_mean_1",
    ]
    code, _, err = run_cli(
        "embed", path, "-o", tmp_path / "x.npy", "--model", model_dir, "--pooling", "max"
    )
    assert code == 2 and "pooling must be one of mean, cls, layers, mean+cls," in err
    specs = parse_features("exlm[cls],mlm:/m[mean+cls],random,ecfp")
    assert [(s.name, s.kind, s.model_dir, s.pooling) for s in specs] == [
        ("exlm[cls]", "exlm", None, "cls"),
        ("mlm[mean+cls]", "exlm", "/m", "mean+cls"),
        ("random", "random", None, "layers"),
        ("ecfp", "ecfp", None, "layers"),
    ]
    for bad, message in [("exlm[max]", "pooling must be one of"), ("ecfp[cls]", "ecfp takes no")]:
        with pytest.raises(InputError, match=re.escape(message)):
            parse_features(bad)


def test_hybrid_features_are_the_baselines_ecfp4_bits_beside_the_exlm_vector(
    model_dir, drug_smiles
):
    import deepchem as dc

    from exlm_chem import ExLMFeaturizer, ExLMTransformer, embed
    from exlm_chem.fingerprints import ECFP_BITS

    transformer = ExLMTransformer(model=model_dir, pooling="cls", fingerprint="ecfp4").fit()
    hybrid = transformer.transform(drug_smiles)
    width = hybrid.shape[1] - ECFP_BITS
    names = transformer.get_feature_names_out()
    assert names[0] == "exlm_cls_0" and names[width] == "ecfp4_0" and len(names) == hybrid.shape[1]
    # Each block has unit norm per molecule ...
    np.testing.assert_allclose(np.linalg.norm(hybrid[:, :width], axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(hybrid[:, width:], axis=1), 1, rtol=1e-5)
    # ... and holds the same information: the ExLM direction, and the baseline's very bits.
    vectors = embed(drug_smiles, model_dir, pooling="cls")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(hybrid[:, :width], unit, atol=1e-6)
    baseline = dc.feat.CircularFingerprint(radius=2, size=2048).featurize(drug_smiles)
    np.testing.assert_array_equal(hybrid[:, width:] > 0, baseline > 0)
    featurized = ExLMFeaturizer(model=model_dir, pooling="cls", fingerprint="ecfp4").featurize(
        drug_smiles
    )
    np.testing.assert_allclose(featurized, hybrid, atol=1e-6)
    with pytest.raises(InputError, match="fingerprint must be one of ecfp4"):
        ExLMTransformer(model=model_dir, fingerprint="maccs").fit()


def test_hybrid_feature_specs_have_one_spelling():
    from exlm_chem.moleculenet.features import parse_features

    spec = parse_features("exlm[cls]&ecfp")[0]
    assert (spec.name, spec.pooling, spec.fingerprint) == ("exlm[cls]&ecfp", "cls", "ecfp4")
    assert parse_features("mlm:/m[mean+cls]&ecfp")[0].name == "mlm[mean+cls]&ecfp"
    with pytest.raises(InputError, match="'maccs' cannot be joined; join ecfp, ecfp-count or"):
        parse_features("exlm&maccs")
    with pytest.raises(InputError, match="a feature set joined with itself"):
        parse_features("ecfp&ecfp")


def test_joins_of_fingerprints_descriptors_and_models():
    from exlm_chem.moleculenet.features import parse_features

    def described(text):
        spec = parse_features(text)[0]
        return spec.name, spec.kind, spec.fingerprint, spec.descriptors

    assert described("ecfp-count") == ("ecfp-count", "ecfp-count", None, False)
    assert described("rdkit2d&ecfp-count") == ("ecfp-count&rdkit2d", "ecfp-count", None, True)
    assert described("exlm&ecfp-count") == ("exlm&ecfp-count", "exlm", "ecfp4-count", False)
    assert described("exlm&rdkit2d") == ("exlm&rdkit2d", "exlm", None, True)
    assert described("exlm[cls]&rdkit2d&ecfp-count") == (
        "exlm[cls]&ecfp-count&rdkit2d", "exlm", "ecfp4-count", True,
    )  # fmt: skip
    assert described("chemprop") == ("chemprop", "chemprop", None, False)
    for bad, message in [
        ("ecfp&ecfp-count", "ecfp and ecfp-count are the same environments twice"),
        ("exlm&ecfp&ecfp-count", "are the same environments twice"),
        ("rdkit2d&rdkit2d", "joined with itself"),
        ("chemprop&rdkit2d", "chemprop is a model trained from scratch; it joins nothing"),
        ("exlm&chemprop", "'chemprop' cannot be joined"),
        ("ecfp&exlm", "'exlm' cannot be joined"),
        ("ecfp-counts", "unknown features 'ecfp-counts'"),
        ("chemprop[cls]", "chemprop takes no model directory"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            parse_features(bad)


def test_morgan_counts_count_what_the_bits_mark(drug_smiles):
    from exlm_chem.fingerprints import ecfp4_bits, ecfp4_counts, fingerprint_block
    from exlm_chem.moleculenet.features import MorganCounts

    bits, counts = ecfp4_bits(drug_smiles + ["C1CC"]), ecfp4_counts(drug_smiles + ["C1CC"])
    assert np.isnan(counts[-1]).all() and np.isnan(bits[-1]).all()
    np.testing.assert_array_equal(counts[:-1] > 0, bits[:-1] > 0)
    assert counts[:-1].max() > 1  # repeated environments are counted
    # Propane: each methyl's environments (radius 0 and 1) occur twice, the middle carbon's once.
    propane = ecfp4_counts(["CCC"])[0]
    assert sorted(propane[propane > 0].tolist()) == [1, 1, 2, 2]
    np.testing.assert_array_equal(MorganCounts().featurize(drug_smiles), counts[:-1])
    np.testing.assert_array_equal(fingerprint_block("ecfp4-count", drug_smiles), counts[:-1])
