"""RDKit descriptors: the benchmark's features, the corpus's targets and the pretraining head."""

import json

import numpy as np
import pytest
import torch
from test_pretrain import SMILES, tiny

from exlm_chem.descriptors import DescriptorScaling, compute_descriptors, descriptor_names
from exlm_chem.model import ExLMConfig, ExLMModel, load_model_directory
from exlm_chem.training.corpus import DESCRIPTORS, PackedCorpus, has_descriptors
from exlm_chem.training.loop import pretrain
from exlm_chem.training.prepare import add_descriptors, prepare_corpus
from exlm_chem.training.runlog import read_metrics

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.smi"
    path.write_text("\n".join(SMILES[i % len(SMILES)] for i in range(160)) + "\nC1CC\n")
    return path


def test_descriptors_are_deepchems_rdkit2d_features():
    import deepchem as dc

    ours = compute_descriptors(SMILES[:4] + ["not a smiles"])
    theirs = dc.feat.RDKitDescriptors().featurize(SMILES[:4])
    assert ours.shape == (5, len(descriptor_names())) and ours.shape[1] == theirs.shape[1]
    np.testing.assert_allclose(np.nan_to_num(ours[:4]), theirs, rtol=1e-5, atol=1e-5)
    assert np.isnan(ours[4]).all()  # RDKit cannot read it: unknown, not zero
    assert "MolLogP" in descriptor_names() and "Ipc" in descriptor_names()


def test_descriptor_transformer_drops_into_a_pipeline_and_names_bad_rows():
    import pandas as pd
    from sklearn.base import clone
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import make_pipeline

    from exlm_chem import DescriptorTransformer, InputError

    smiles = SMILES[:12]
    transformer = DescriptorTransformer().fit()
    X = transformer.transform(pd.DataFrame({"smiles": smiles}))
    np.testing.assert_array_equal(X, np.nan_to_num(compute_descriptors(smiles), nan=0.0))
    names = transformer.get_feature_names_out()
    assert list(names) == descriptor_names() and X.shape == (12, len(names))
    log_p = X[:, list(names).index("MolLogP")]
    forest = make_pipeline(clone(transformer), RandomForestRegressor(20, random_state=0))
    assert forest.fit(smiles, log_p).predict(smiles).shape == (12,)

    with pytest.raises(InputError, match=r"index 1 \(RDKit cannot parse it\): 'C1CC'"):
        transformer.transform(["CCO", "C1CC"])
    kept = DescriptorTransformer(invalid="keep").fit().transform(["CCO", "C1CC", 3.0])
    assert np.isfinite(kept[0]).all() and np.isnan(kept[1:]).all()
    with pytest.raises(InputError, match="invalid must be"):
        DescriptorTransformer(invalid="drop").fit()


def test_scaling_is_robust_keeps_unknown_values_and_clips():
    rng = np.random.default_rng(0)
    values = np.stack(
        [
            rng.normal(10, 2, 1000),  # spread: scaled by its interquartile range
            np.r_[np.zeros(990), np.ones(10)],  # quartiles coincide: scaled by its std
            np.full(1000, 3.0),  # constant: scale 1
        ],
        axis=1,
    )
    values[5, 0] = np.nan
    values[6, 0] = 1e6  # an outlier moves neither the median nor the quartiles
    scaling = DescriptorScaling.fit(values, ["a", "b", "c"])
    q1, q3 = np.nanpercentile(values[:, 0], [25, 75])
    assert scaling.scale[0] == pytest.approx(q3 - q1)
    assert scaling.scale[1] == pytest.approx(np.std(values[:, 1]))
    assert scaling.scale[2] == 1.0 and scaling.median[2] == 3.0
    scaled = scaling.transform(values)
    assert np.isnan(scaled[5, 0]) and scaled[6, 0] == scaling.clip
    assert abs(np.nanmedian(scaled[:, 0])) < 1e-6
    again = DescriptorScaling.from_json(scaling.to_json())
    np.testing.assert_array_equal(again.transform(values), scaled)


def test_prepared_sample_holds_the_descriptors_of_its_own_molecules(corpus, tmp_path):
    stats = prepare_corpus([corpus], tmp_path / "p", sample=50, seed=1, descriptors=True)
    packed = PackedCorpus.load(tmp_path / "p")
    assert stats.kept == len(packed) == 50 and sum(stats.sources.values()) == 50
    expected = compute_descriptors(packed.smiles(range(50)))
    np.testing.assert_array_equal(np.asarray(packed.descriptors), expected)
    targets = packed.descriptor_targets([3, 0])
    np.testing.assert_allclose(targets, packed.scaling.transform(expected[[3, 0]]))
    # Another seed draws other molecules.
    prepare_corpus([corpus], tmp_path / "q", sample=50, seed=2)
    other = PackedCorpus.load(tmp_path / "q")
    assert other.descriptors is None
    assert np.asarray(other.lengths).tolist() != np.asarray(packed.lengths).tolist()


def test_descriptors_resume_where_they_stopped(corpus, tmp_path):
    prepare_corpus([corpus], tmp_path / "whole", descriptors=True)
    reference = np.load(tmp_path / "whole" / DESCRIPTORS)
    prepare_corpus([corpus], tmp_path / "stopped")
    # A stop after 20 recorded rows: they stay (a sentinel shows they are not recomputed),
    # the rest are computed.
    part = np.lib.format.open_memmap(
        tmp_path / "stopped" / f"{DESCRIPTORS}.part", "w+", "<f4", reference.shape
    )
    part[:20] = -7.0
    part.flush()
    del part
    (tmp_path / "stopped" / "descriptors.progress.json").write_text(
        json.dumps({"rows": 20, "names": descriptor_names(), "shape": list(reference.shape)})
    )
    assert not has_descriptors(tmp_path / "stopped")
    prepare_corpus([corpus], tmp_path / "stopped", descriptors=True, workers=0)
    resumed = np.load(tmp_path / "stopped" / DESCRIPTORS)
    assert (resumed[:20] == -7.0).all()
    np.testing.assert_array_equal(resumed[20:], reference[20:])
    assert not (tmp_path / "stopped" / "descriptors.progress.json").exists()
    add_descriptors(tmp_path / "stopped")  # complete: nothing to do


def test_substructure_counts_are_the_morgan_environments_of_each_molecule():
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    from exlm_chem.fingerprints import substructure_counts, substructure_vocabulary

    molecules = SMILES[:6]
    vocabulary = substructure_vocabulary(molecules, 5, most=0.9)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2)
    found = [
        generator.GetSparseCountFingerprint(Chem.MolFromSmiles(s)).GetNonzeroElements()
        for s in molecules
    ]
    in_how_many = {i: sum(i in f for f in found) for f in found for i in f}
    # The most common environments, short of those in more than 90% of the molecules.
    assert len(vocabulary) == 5 and all(in_how_many[i] <= 0.9 * 6 for i in vocabulary)
    rest = [n for i, n in in_how_many.items() if i not in vocabulary and n <= 0.9 * 6]
    assert min(in_how_many[i] for i in vocabulary) >= max(rest)
    counts = substructure_counts(molecules + ["not a smiles"], vocabulary)
    expected = [[f.get(i, 0) for i in vocabulary] for f in found]
    np.testing.assert_array_equal(counts[:6], expected)
    assert np.isnan(counts[6]).all()


def test_substructures_are_added_to_a_corpus_with_descriptors(corpus, tmp_path):
    from exlm_chem.errors import InputError
    from exlm_chem.fingerprints import substructure_counts

    prepare_corpus([corpus], tmp_path / "p", descriptors=True)
    before = np.load(tmp_path / "p" / DESCRIPTORS)
    scaling_before = PackedCorpus.load(tmp_path / "p").scaling
    prepare_corpus([corpus], tmp_path / "p", descriptors=True, substructures=8, workers=0)
    packed = PackedCorpus.load(tmp_path / "p")
    width = len(descriptor_names())
    assert packed.descriptors.shape == (len(packed), width + 8)
    np.testing.assert_array_equal(np.asarray(packed.descriptors[:, :width]), before)
    names = packed.scaling.names[width:]
    assert all(name.startswith("morgan2:") for name in names)
    vocabulary = [int(name.split(":")[1]) for name in names]
    expected = substructure_counts(packed.smiles(range(len(packed))), vocabulary)
    np.testing.assert_array_equal(np.asarray(packed.descriptors[:, width:]), expected)
    # Their targets are scaled like the descriptors; the descriptors' scaling is unchanged.
    targets = packed.descriptor_targets(range(len(packed)))
    assert targets.shape[1] == width + 8 and np.nanmax(np.abs(targets)) <= packed.scaling.clip
    assert packed.scaling.median[:width] == scaling_before.median
    assert packed.scaling.scale[:width] == scaling_before.scale
    with pytest.raises(InputError, match="--substructures needs --descriptors"):
        prepare_corpus([corpus], tmp_path / "q", substructures=8)
    # The head regresses them beside the descriptors.
    pretrain(tiny(tmp_path / "p", tmp_path / "run", objective="mlm", descriptor_weight=1.0,
                  max_steps=2, val_every=2))  # fmt: skip
    assert load_model_directory(tmp_path / "run" / "model").config.descriptors == width + 8
    from exlm_chem.model_card import export_model

    export_model(tmp_path / "run", tmp_path / "exported")
    card = (tmp_path / "exported" / "MODEL_CARD.md").read_text()
    assert f"regression of {width} RDKit 2D descriptors and 8 substructure counts from" in card


def test_descriptor_loss_is_the_mean_squared_error_over_known_targets():
    torch.manual_seed(0)
    config = ExLMConfig.from_preset("tiny", vocab_size=40, descriptors=3, descriptor_weight=0.5)
    model = ExLMModel(config).eval()
    ids = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]])
    masks = torch.tensor([[0, 1, 0, 0, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    targets = torch.tensor([[0.5, float("nan"), -1.0], [2.0, 0.0, float("nan")]])
    captured = {}
    model.descriptor_head.register_forward_hook(
        lambda module, args, output: captured.setdefault("predicted", output)
    )
    out = model(ids, masks, descriptors=targets)
    predicted = captured["predicted"]
    known = ~torch.isnan(targets)
    expected = ((predicted - targets.nan_to_num()) ** 2)[known].mean()
    torch.testing.assert_close(out.descriptor_loss, expected)
    torch.testing.assert_close(out.loss, out.token_loss + 0.5 * expected)
    # The loss reaches the encoder; without targets the model is the plain ExLM.
    out.descriptor_loss.backward()
    assert model.encoder.embed_tokens.weight.grad.abs().sum() > 0
    assert model(ids, masks).descriptor_loss is None


@pytest.mark.parametrize("objective, weight", [("exlm", 1.0), ("mlm", 0.5), ("descriptors", 0.0)])
def test_pretraining_with_a_descriptor_head_logs_both_losses(corpus, tmp_path, objective, weight):
    prepare_corpus([corpus], tmp_path / "p", descriptors=True)
    config = tiny(
        tmp_path / "p", tmp_path / "run", objective=objective, descriptor_weight=weight,
        max_steps=6, val_every=3,
    )  # fmt: skip
    result = pretrain(config)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    validated = [r for r in rows if "val_descriptor_loss" in r]
    assert len(validated) == 2 and all(np.isfinite(r["val_descriptor_loss"]) for r in validated)
    assert all("descriptor_loss" in r for r in rows)
    if objective == "descriptors":
        assert "val_accuracy" not in rows[-1] and "token_loss" not in rows[-1]
        assert rows[-1]["loss"] == pytest.approx(rows[-1]["descriptor_loss"])
    else:
        last = rows[-1]
        assert last["loss"] == pytest.approx(
            last["token_loss"] + weight * last["descriptor_loss"], rel=1e-4
        )
    saved = load_model_directory(tmp_path / "run" / "model")
    assert saved.config.descriptors == len(descriptor_names())
    assert saved.config.objective == objective
    for name, tensor in result.model.descriptor_head.state_dict().items():
        torch.testing.assert_close(saved.descriptor_head.state_dict()[name], tensor)


def test_descriptor_pretraining_needs_a_corpus_with_descriptors(corpus, tmp_path, run_cli):
    prepare_corpus([corpus], tmp_path / "plain")
    common = ["--preset", "tiny", "--max-steps", "2", "--out"]
    code, _, err = run_cli(
        "pretrain", "--corpus", tmp_path / "plain", *common, tmp_path / "a",
        "--descriptor-weight", "1",
    )  # fmt: skip
    assert code == 2 and "plain: has no descriptors" in err and "--descriptors" in err
    code, _, err = run_cli(
        "pretrain", "--corpus", corpus, *common, tmp_path / "b", "--descriptor-weight", "-1"
    )
    assert code == 2 and "--descriptor-weight must be >= 0" in err
    code, _, err = run_cli(
        "pretrain", "--corpus", corpus, *common, tmp_path / "c", "--objective", "descriptors",
        "--descriptor-weight", "1",
    )  # fmt: skip
    assert code == 2 and "leave it out" in err
    code, _, err = run_cli("prepare-corpus", corpus, "--out", tmp_path / "d", "--sample", "0")
    assert code == 2 and "--sample must be at least 1" in err


def test_a_resumed_descriptor_run_ends_with_the_weights_of_an_uninterrupted_one(corpus, tmp_path):
    import shutil

    from test_pretrain import assert_same_weights

    prepare_corpus([corpus], tmp_path / "p", descriptors=True)
    settings = dict(objective="exlm", descriptor_weight=2.0, max_steps=8, checkpoint_every=4)
    pretrain(tiny(tmp_path / "p", tmp_path / "whole", **settings))
    pretrain(tiny(tmp_path / "p", tmp_path / "stopped", **settings))
    # As if stopped after step 4: its later checkpoint, model and log lines are gone.
    shutil.rmtree(tmp_path / "stopped" / "model")
    (tmp_path / "stopped" / "checkpoints" / "step-000000008.pt").unlink()
    pretrain(tiny(tmp_path / "p", tmp_path / "stopped", resume=True, **settings))
    assert_same_weights(tmp_path / "whole" / "model", tmp_path / "stopped" / "model")
    whole = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "stopped" / "metrics.jsonl")
    assert [r["descriptor_loss"] for r in resumed] == pytest.approx(
        [r["descriptor_loss"] for r in whole], rel=1e-5
    )


def test_the_model_card_says_what_the_model_was_trained_on(corpus, tmp_path):
    from exlm_chem.model_card import export_model

    prepare_corpus([corpus], tmp_path / "p", descriptors=True)
    for objective, weight, expected in [
        ("exlm", 2.0, f"exlm (k = 4 states per mask, `<s>` and `</s>`), plus regression of "
         f"{len(descriptor_names())} RDKit 2D descriptors from the molecule vector, weight 2"),
        ("descriptors", 0.0, "descriptors only (no masks)"),
    ]:  # fmt: skip
        run = tmp_path / objective
        pretrain(tiny(tmp_path / "p", run, objective=objective, descriptor_weight=weight,
                      max_steps=2))  # fmt: skip
        export_model(run, tmp_path / f"{objective}-exported")
        card = (tmp_path / f"{objective}-exported" / "MODEL_CARD.md").read_text()
        assert f"| objective | {expected}" in card, card[:800]
    assert "| masking | none |" in card
    from exlm_chem import InputError
    from exlm_chem.infill import infill

    with pytest.raises(InputError, match="trained on descriptors alone"):
        infill("CC<mask:2>", model=tmp_path / "descriptors-exported")
