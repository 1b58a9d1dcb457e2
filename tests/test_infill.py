"""Infilling: templates, the DAG search against the model's own likelihood, the MLM baseline,
ranking, and the command."""

import math
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from exlm_chem import ExLMModel, InputError
from exlm_chem.infill import (
    Template,
    decode_dag,
    decode_mlm,
    infill,
    parse_template,
    rank_candidates,
)


def test_template_spellings():
    assert parse_template("c1ccc(<mask:3>)cc1").spans == (3,)
    template = parse_template("CC{2}C(=O)O{}")
    assert template.spans == (2, 4) and template.pieces == (
        ("C", "C"),
        ("C", "(", "=", "O", ")", "O"),
        (),
    )
    assert parse_template("<mask>CC").spans == (4,)
    assert template.assemble([("N",), ("C", "l")]) == "CCNC(=O)OCl"
    assert template.tokens((1, 2)) == [
        "C",
        "C",
        "<mask>",
        "C",
        "(",
        "=",
        "O",
        ")",
        "O",
        "<mask>",
        "<mask>",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("CCO", "no masked span"),
        ("", "empty template"),
        ("c1ccc(<mask:2>cc1", "unbalanced parentheses"),
        ("C)<mask>(C", "')' before its '('"),
        ("C1CC<mask>", "ring bond 1 opened but not closed"),
        ("CC<mask:200>", "the model reads at most 128"),
        ("CC<mask:0>", "at least 1 token"),
        ("CC<mask>C C", "unexpected character"),
    ],
)
def test_malformed_templates_are_refused(text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        parse_template(text, max_length=128)


def test_dag_search_sums_the_paths_as_the_pretraining_likelihood_does(model, monkeypatch):
    """With every token and a beam wide enough to keep every path, a filling's score is
    log P(Y) of the DAG, as the pretraining loss computes it."""
    import exlm_chem.infill as module

    monkeypatch.setattr(module, "TOKENS_PER_STATE", model.tokenizer.vocab_size)
    torch.manual_seed(0)
    template = Template("C<mask:1>O", (("C",), ("O",)), (1,))
    fillings = decode_dag(model, template, beam_size=100_000)
    ids = model.tokenizer.encode_tokens_with_report([["C", "N", "O"]])[0]
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[0, 2] = True
    with torch.inference_mode():
        loss = model(ids, masked).molecule_loss[0]
    assert fillings[(("N",),)] == pytest.approx(float(-loss * 3), abs=1e-4)
    # Probabilities of distinct fillings add up to at most 1.
    assert np.logaddexp.reduce(list(fillings.values())) <= 1e-6


def test_dag_fillings_respect_span_lengths(model):
    fillings = decode_dag(model, parse_template("c1ccc(<mask:3>)cc1<mask:2>"))
    assert fillings
    for filling, lp in fillings.items():
        assert len(filling) == 2 and 1 <= len(filling[0]) <= 3 and 1 <= len(filling[1]) <= 2
        assert lp <= 0
        assert not {"<s>", "</s>", "<mask>", "<pad>", "<unk>"} & {t for f in filling for t in f}


@pytest.fixture(scope="module")
def tiny_mlm(model):
    torch.manual_seed(1)
    return ExLMModel(replace(model.config, objective="mlm", k=1), model.tokenizer).eval()


def test_mlm_baseline_tries_every_length_and_scores_positions_independently(tiny_mlm, model):
    template = parse_template("CC<mask:2>O")
    fillings = decode_mlm(tiny_mlm, template)
    assert {len(f[0]) for f in fillings} == {1, 2}
    ids = tiny_mlm.tokenizer.encode_tokens_with_report([template.tokens((1,))])[0]
    from exlm_chem.model.expansion import expand_states

    with torch.inference_mode():
        batch_states = expand_states(ids, 1, tiny_mlm.expand_ids, 0)
        hidden = tiny_mlm.encoder(
            batch_states.ids, batch_states.p1, batch_states.p2, batch_states.valid
        )
        log_probs = torch.log_softmax(tiny_mlm.token_logits(hidden).float(), -1)[0, 3]
    one_token = {f[0][0]: lp for f, lp in fillings.items() if len(f[0]) == 1}
    token, lp = max(one_token.items(), key=lambda item: item[1])
    assert lp == pytest.approx(float(log_probs[tiny_mlm.tokenizer.token_to_id[token]]), abs=1e-5)
    with pytest.raises(InputError, match="plain MLM"):
        decode_mlm(model, template)


def test_candidates_are_deduplicated_by_molecule_valid_first():
    template = Template("<mask:3>", ((), ()), (3,))
    fillings = {(("C", "C", "O"),): -1.0, (("O", "C", "C"),): -2.0, (("C", "(", "C"),): -0.5}
    ranked = rank_candidates(template, fillings, n=10)
    assert [c.smiles for c in ranked] == ["CCO", "C(C"]
    assert ranked[0].valid and not ranked[1].valid and [c.rank for c in ranked] == [1, 2]
    assert ranked[0].log_probability == pytest.approx(math.log(math.exp(-1) + math.exp(-2)))
    assert ranked[0].fillings == ("CCO",)  # the more probable of its two fillings
    assert [c.smiles for c in rank_candidates(template, fillings, 10, valid_only=True)] == ["CCO"]
    assert len(rank_candidates(template, fillings, n=1)) == 1


def test_infill_through_the_api_for_both_kinds_of_model(model, tiny_mlm):
    for m in (model, tiny_mlm):
        candidates = infill("c1ccc(<mask:2>)cc1", m, n=5)
        assert 1 <= len(candidates) <= 5
        assert [c.rank for c in candidates] == list(range(1, len(candidates) + 1))
        valid = [c.valid for c in candidates]
        assert valid == sorted(valid, reverse=True)  # valid ones first
    with pytest.raises(InputError, match="n must be"):
        infill("CC<mask>", model, n=0)


def test_infill_command(run_cli, model_dir, tmp_path):
    import pandas as pd

    png, table = tmp_path / "grid.png", tmp_path / "out.csv"
    code, out, err = run_cli(
        "infill", "c1ccc(<mask:2>)cc1", "-n", "4", "--model", model_dir, "-o", table, "--png", png
    )
    assert code == 0, err
    assert "rank" in out.splitlines()[0] and "smiles" in out.splitlines()[0]
    frame = pd.read_csv(table)
    assert list(frame.columns) == [
        "template",
        "rank",
        "smiles",
        "filling",
        "log_probability",
        "valid",
    ]
    assert 1 <= len(frame) <= 4
    if frame["valid"].any():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    templates = tmp_path / "templates.txt"
    templates.write_text("# R-groups\nc1ccc(<mask:2>)cc1\nCC{2}O\n")
    code, out, err = run_cli("infill", "--file", templates, "-n", "3", "--model", model_dir)
    assert code == 0, err
    assert "CC{2}O" in out
    code, _, err = run_cli("infill", "C1CC<mask>", "--model", model_dir)
    assert code == 2 and "ring bond 1" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("infill", "CC<mask>", "-n", "0", "--model", model_dir)
    assert code == 2 and "n must be" in err
    code, _, err = run_cli("infill", "CC<mask>", "-o", table, "--model", model_dir)
    assert code == 2 and "already exists" in err
