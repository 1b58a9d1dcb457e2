import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from exlm_chem import InputError
from exlm_chem.environment import allocator_in_use, mimalloc_library, restart_under_mimalloc
from exlm_chem.model import load_model_directory
from exlm_chem.model_card import export_model
from exlm_chem.training.batches import epoch_batches
from exlm_chem.training.config import PretrainConfig, learning_rate, parse_duration
from exlm_chem.training.corpus import corpus_fingerprint
from exlm_chem.training.loop import pretrain
from exlm_chem.training.runlog import read_metrics

REPO = Path(__file__).resolve().parents[1]
SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",
    "Cn1c(=O)c2c(ncn2C)n(C)c1=O",
    "CC(=O)Nc1ccc(O)cc1",
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "COc1ccc2cc(C(C)C(=O)O)ccc2c1",
    "CN(C)C(=N)NC(=N)N",
    "CN1CCCC1c1cccnc1",
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",
    "CNCCC(Oc1ccc(C(F)(F)F)cc1)c1ccccc1",
    "OCC1OC(O)C(O)C(O)C1O",
    "c1ccc2ccccc2c1",
    "CCN(CC)CC",
    "O=C(O)c1ccccc1O",
    "CC(C)NCC(O)COc1cccc2ccccc12",
    "Clc1ccc(Cl)cc1",
    "CCOC(=O)C1=C(C)NC(C)=C(C(=O)OC)C1c1cccc(Br)c1",
]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.smi"
    # 160 molecules plus two lines RDKit rejects.
    lines = [SMILES[i % len(SMILES)] for i in range(160)] + ["C1CC", "c1cccc1"]
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny(corpus, out, **overrides):
    values = dict(
        corpus=[corpus],
        out=out,
        preset="tiny",
        max_steps=12,
        batch_tokens=512,
        log_every=2,
        val_every=6,
        checkpoint_every=4,
        val_size=16,
        precision="fp32",
        seed=3,
    )
    values.update(overrides)
    return PretrainConfig(**values)


def test_epoch_batches_are_disjoint_across_ranks_and_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 60, size=5000).astype(np.int32)
    seen = []
    for rank in range(3):
        batches = epoch_batches(
            lengths, epoch=2, seed=7, rank=rank, world_size=3, batch_tokens=1024
        )
        assert all(len(b) * lengths[b].max() <= 1024 for b in batches)
        seen.append(np.concatenate(batches))
        again = epoch_batches(lengths, epoch=2, seed=7, rank=rank, world_size=3, batch_tokens=1024)
        assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    union = np.concatenate(seen)
    assert len(union) == len(lengths) and len(np.unique(union)) == len(lengths)
    other_epoch = np.concatenate(
        epoch_batches(lengths, epoch=3, seed=7, rank=0, world_size=3, batch_tokens=1024)
    )
    assert not np.array_equal(other_epoch[:100], seen[0][:100])


def test_the_mask_rate_reaches_the_model():
    config = PretrainConfig(corpus=["x"], out="y", max_steps=1, mask_rate=0.3, objective="mlm")
    assert config.model_config(vocab_size=40).mask_rate == 0.3
    assert PretrainConfig(corpus=["x"], out="y", max_steps=1).model_config(40).mask_rate == 0.15


def test_learning_rate_schedule():
    def rate(progress):
        return learning_rate(1e-3, 0.1, "linear", progress)

    assert rate(0.0) == 0.0
    assert rate(0.05) == pytest.approx(5e-4)
    assert rate(0.1) == pytest.approx(1e-3)
    assert rate(0.55) == pytest.approx(5e-4)
    assert rate(1.0) == 0.0
    assert learning_rate(1e-3, 0.1, "poly", 0.55) == pytest.approx(2.5e-4)
    # Fine-tuning's constant schedule warms up the same way, then holds the peak.
    assert learning_rate(1e-3, 0.1, "constant", 0.05) == pytest.approx(5e-4)
    assert learning_rate(1e-3, 0.1, "constant", 0.55) == 1e-3
    assert learning_rate(1e-3, 0.0, "constant", 1.0) == 1e-3


def test_corpus_fingerprint_follows_content_not_location(tmp_path):
    first = tmp_path / "a.smi"
    first.write_text("CCO\nc1ccccc1\n")
    copy = tmp_path / "sub" / "b.smi"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    os.utime(copy, (0, 0))
    assert corpus_fingerprint([first]) == corpus_fingerprint([copy])
    assert corpus_fingerprint([first], canonicalize=True) != corpus_fingerprint(
        [first], canonicalize=False
    )
    copy.write_text("CCO\nc1ccccc1\nCCN\n")
    assert corpus_fingerprint([first]) != corpus_fingerprint([copy])


def test_parse_duration():
    assert (
        parse_duration("90") == 90
        and parse_duration("20m") == 1200
        and parse_duration("1h30m") == 5400
    )
    with pytest.raises(InputError, match="cannot read duration"):
        parse_duration("2 hours")


@pytest.mark.parametrize("objective", ["exlm", "mlm"])
def test_tiny_run_logs_checkpoints_and_saves_a_model(corpus, tmp_path, objective):
    result = pretrain(tiny(corpus, tmp_path / "run", objective=objective))
    out = tmp_path / "run"
    assert result.step == 12
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    for key in ("tokens", "loss", "lr", "tokens_per_second", "peak_rss_mb"):
        assert key in rows[-1]
    assert 0.0 <= rows[-1]["val_accuracy"] <= 1.0 and "val_loss" in rows[2]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (out / "curves.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-000000004.pt",
        "step-000000008.pt",
        "step-000000012.pt",
    ]
    run = json.loads((out / "run.json").read_text())
    assert run["corpus"]["invalid_rdkit"] == 2
    model = load_model_directory(out / "model")
    assert model.config.objective == objective
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, result.model.state_dict()[name])


def run_in_subprocess(corpus, **flags):
    """The `python -m exlm_chem.training` command of a tiny run, and its environment (one
    thread)."""
    values = dict(
        corpus=corpus,
        preset="tiny",
        batch_tokens=512,
        val_size=16,
        precision="fp32",
        seed=3,
        **flags,
    )
    args = [
        item for key, value in values.items() for item in ("--" + key.replace("_", "-"), str(value))
    ]
    return [sys.executable, "-m", "exlm_chem.training", *args], dict(
        os.environ, OMP_NUM_THREADS="1"
    )


def assert_same_weights(first: Path, second: Path):
    a, b = load_model_directory(first).state_dict(), load_model_directory(second).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_killed_run_resumes_to_the_same_weights(corpus, tmp_path):
    command, env = run_in_subprocess(
        corpus, max_steps=40, log_every=5, val_every=20, checkpoint_every=5
    )
    whole = subprocess.run(
        command + ["--out", str(tmp_path / "whole")], capture_output=True, text=True, env=env
    )
    assert whole.returncode == 0, whole.stderr

    killed_out = tmp_path / "killed"
    process = subprocess.Popen(
        command + ["--out", str(killed_out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.time() + 120
    while (
        not (killed_out / "checkpoints" / "step-000000010.pt").exists()
        and time.time() < deadline
        and process.poll() is None
    ):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed_out / "model").exists(), "the run finished before it could be killed"

    resumed = subprocess.run(
        command + ["--out", str(killed_out), "--resume"], capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(tmp_path / "whole" / "model", killed_out / "model")
    steps = [
        json.loads(line)["step"] for line in (killed_out / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(set(steps)) and steps[-1] == 40


def test_sigterm_stops_with_a_checkpoint_and_resumes_exactly(corpus, tmp_path):
    command, env = run_in_subprocess(
        corpus, max_steps=30, log_every=1, val_every=100, checkpoint_every=100
    )
    whole = subprocess.run(
        command + ["--out", str(tmp_path / "whole")], capture_output=True, text=True, env=env
    )
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "stopped"
    process = subprocess.Popen(
        command + ["--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while not (
        (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 3
    ):
        assert time.time() < deadline and process.poll() is None, (
            "the run ended before it could be stopped"
        )
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "continue with --resume" in err
    assert not (out / "model").exists()
    (checkpoint,) = (out / "checkpoints").glob(
        "step-*.pt"
    )  # written at the step it stopped, not at step 100
    assert 3 <= int(checkpoint.stem.split("-")[1]) < 30

    resumed = subprocess.run(
        command + ["--out", str(out), "--resume"], capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(tmp_path / "whole" / "model", out / "model")


def test_bad_input_stops_before_training(corpus, tmp_path, run_cli):
    empty = tmp_path / "empty.smi"
    empty.write_text("")
    invalid = tmp_path / "invalid.smi"
    invalid.write_text("C1CC\nc1cccc1\n")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "corpus.smi").write_text("CCO\nCCN\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    base = ["pretrain", "--preset", "tiny", "--max-steps", "2", "--val-size", "4"]
    cases = [
        (
            ["--corpus", tmp_path / "missing.smi", "--out", tmp_path / "a"],
            "missing.smi: file not found",
        ),
        (["--corpus", empty, "--out", tmp_path / "b"], "empty.smi: file is empty"),
        (["--corpus", invalid, "--out", tmp_path / "c"], "no valid SMILES"),
        (["--corpus", corpus, "--out", tmp_path / "d", "--resume"], "no checkpoint"),
        (
            ["--corpus", corpus, "--out", tmp_path / "e", "--preset", "huge"],
            "--preset must be one of",
        ),
        (
            ["--corpus", corpus, "--out", tmp_path / "nowhere" / "deeper"],
            "cannot create the output folder",
        ),
        (
            ["--corpus", corpus, "--out", tmp_path / "f", "--objective", "mlm", "--k", "8"],
            "the plain-MLM objective is k = 1, not k = 8",
        ),
        (
            ["--corpus", tmp_path / "g" / "corpus.smi", "--out", tmp_path / "g"],
            "a corpus inside the run folder",
        ),
        (
            ["--corpus", corpus, "--out", tmp_path / "f", "--mask-rate", "1.5"],
            "mask_rate must be between 0 and 1, not 1.5",
        ),
        (
            ["--corpus", corpus, "--out", tmp_path / "f", "--min-token-count", "0"],
            "--min-token-count must be at least 1",
        ),
        (
            ["--corpus", corpus, "--out", tmp_path / "f", "--source-weights", "moses:2"],
            "--source-weights: 'moses:2' is not NAME=WEIGHT",
        ),
        (
            ["--corpus", corpus, "--out", tmp_path / "h", "--source-weights", "zinc=2"],
            "--source-weights names no source of the corpus: zinc; its sources are corpus",
        ),
    ]
    if os.geteuid() != 0:  # root may write anywhere
        cases.append(
            (["--corpus", corpus, "--out", locked / "run"], "cannot create the output folder")
        )
    for args, message in cases:
        code, _, err = run_cli(*base, *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "f").exists()  # refused before anything was written

    run = tmp_path / "run"
    pretrain(tiny(corpus, run, max_steps=4))
    code, _, err = run_cli(*base, "--corpus", corpus, "--out", run)
    assert code == 2 and "already holds a run" in err
    code, _, err = run_cli(*base, "--corpus", corpus, "--out", run, "--resume", "--preset", "small")
    assert code == 2 and "checkpoint is of another model" in err
    latest = sorted((run / "checkpoints").iterdir())[-1]
    latest.write_bytes(latest.read_bytes()[:1000])
    code, _, err = run_cli(*base, "--corpus", corpus, "--out", run, "--resume")
    assert (
        code == 2 and "corrupt or not an exlm-chem checkpoint" in err and "weights_only" not in err
    )


def _ddp_worker(rank, world_size, corpus, out, port, result_dir, overrides):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    result = pretrain(tiny(Path(corpus), Path(out), max_steps=6, checkpoint_every=3, **overrides))
    flat = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    torch.save(flat, Path(result_dir) / f"rank{rank}.pt")


@pytest.mark.parametrize(
    "overrides", [{}, {"objective": "descriptors"}], ids=["exlm", "descriptors-only"]
)
def test_two_process_ddp_on_cpu_keeps_ranks_identical(corpus, tmp_path, overrides):
    import socket

    import torch.multiprocessing as mp

    from exlm_chem.training.prepare import prepare_corpus

    if overrides:  # a corpus with descriptors; the token head is out of this loss
        prepare_corpus([corpus], tmp_path / "prepared", descriptors=True)
        corpus = tmp_path / "prepared"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(
        _ddp_worker,
        args=(2, str(corpus), str(tmp_path / "run"), port, str(tmp_path), overrides),
        nprocs=2,
        join=True,
    )
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(a, b)
    checkpoint = torch.load(
        sorted((tmp_path / "run" / "checkpoints").iterdir())[-1], weights_only=True
    )
    assert len(checkpoint["data_position"]) == 2
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_export_writes_a_model_folder_with_a_card(corpus, tmp_path, run_cli):
    run = tmp_path / "run"
    pretrain(tiny(corpus, run, max_steps=6))
    code, _, err = run_cli("export", run, "--to", tmp_path / "shipped")
    assert code == 0, err
    card = (tmp_path / "shipped" / "MODEL_CARD.md").read_text()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert f"| steps | {rows[-1]['step']:,} |" in card
    assert f"{rows[-1]['val_accuracy']:.4f}" in card
    model = load_model_directory(tmp_path / "shipped")
    assert model.config.preset == "tiny"
    assert not (tmp_path / "shipped" / "LICENSE").exists()  # no ChEMBL in this corpus
    code, _, err = run_cli("export", tmp_path / "none", "--to", tmp_path / "x")
    assert code == 2 and "not a run folder" in err


def test_export_puts_the_vocabulary_coverage_on_the_card(corpus, tmp_path, run_cli):
    run = tmp_path / "run"
    pretrain(tiny(corpus, run, max_steps=2))
    figures = {"molecules": 1513, "with_unknown": 0.0, "with_fallback": 0.0033}
    coverage = {
        "vocabulary_size": 228,
        "bace": {**figures, "written_with_stereo": 401, "stereo_read": 0.995},
        "esol": {**figures, "written_with_stereo": 0, "stereo_read": 0.0},
    }
    (tmp_path / "coverage.json").write_text(json.dumps(coverage))
    code, _, err = run_cli(
        "export", run, "--to", tmp_path / "shipped", "--coverage", tmp_path / "coverage.json"
    )
    assert code == 0, err
    card = (tmp_path / "shipped" / "MODEL_CARD.md").read_text()
    assert "| bace | 1,513 | 0.0% | 0.3% | 99.5% of 401 |" in card
    assert "| esol | 1,513 | 0.0% | 0.3% | - |" in card
    (tmp_path / "broken.json").write_text("{not json")
    code, _, err = run_cli(
        "export", run, "--to", tmp_path / "other", "--coverage", tmp_path / "broken.json"
    )
    assert code == 2 and "broken.json" in err and "--coverage" in err


def test_export_of_a_model_trained_on_chembl_molecules_ships_their_licence(tmp_path, run_cli):
    table = tmp_path / "corpus.tsv"
    rows = [f"{SMILES[i % len(SMILES)]}\t{('chemxlstm', 'moses')[i % 2]}" for i in range(80)]
    table.write_text("smiles\tsource\n" + "\n".join(rows) + "\n")
    run = tmp_path / "run"
    pretrain(tiny(table, run, max_steps=2))
    code, _, err = run_cli("export", run, "--to", tmp_path / "shipped")
    assert code == 0, err
    licence = (tmp_path / "shipped" / "LICENSE").read_text()
    assert "CC BY-SA 3.0" in licence and "(chemxlstm)" in licence and "ChEMBL" in licence
    card = (tmp_path / "shipped" / "MODEL_CARD.md").read_text()
    assert "## Licence" in card and "CC BY-SA 3.0" in card and "`LICENSE`" in card


def test_gradient_accumulation_and_token_budget(corpus, tmp_path):
    single = pretrain(tiny(corpus, tmp_path / "one", max_steps=4, log_every=4, val_every=4))
    double = pretrain(
        tiny(corpus, tmp_path / "two", max_steps=4, log_every=4, val_every=4, grad_accum=2)
    )
    assert double.tokens > 1.5 * single.tokens  # two batches per optimizer step
    by_tokens = pretrain(
        tiny(
            corpus,
            tmp_path / "budget",
            max_steps=None,
            max_tokens=single.tokens,
            log_every=4,
            val_every=4,
        )
    )
    assert by_tokens.tokens >= single.tokens and by_tokens.step <= single.step + 1


def test_prefetched_batches_are_those_the_step_would_make():
    from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer
    from exlm_chem.training.batches import BatchStream
    from exlm_chem.training.prefetch import BatchPrefetcher, mask_seed

    class Corpus:  # the part of PackedCorpus a stream reads
        lengths = np.array([len(s) // 2 + 2 for s in SMILES * 4], dtype=np.int32)

        def smiles(self, indices):
            return [(SMILES * 4)[i] for i in indices]

    tokenizer = SmilesTokenizer.from_corpus(SMILES)
    model = ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size), tokenizer)
    stream = lambda: BatchStream(Corpus(), 64, seed=5, rank=0, world_size=1, augment=False)  # noqa: E731
    prefetcher = BatchPrefetcher(stream(), tokenizer, model, 5, 7, 2, torch.device("cpu"))
    expected = stream()
    try:
        for step in range(7, 12):
            for micro in range(2):
                got = prefetcher.next_batch()
                ids = tokenizer.encode_batch(next(expected))
                masks = model.choose_masks(
                    ids, torch.Generator().manual_seed(mask_seed(5, step, micro))
                )
                assert torch.equal(got.ids, ids) and torch.equal(got.masks, masks)
                assert got.tokens == int((ids != 0).sum())
                assert got.position == expected.position()  # where a checkpoint resumes
    finally:
        prefetcher.close()


def test_warm_start_copies_weights_by_token_across_vocabularies_and_objectives(tmp_path):
    from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer
    from exlm_chem.training.warm_start import warm_start

    old_tokens = SmilesTokenizer.from_corpus(SMILES)
    broad = SMILES + ["C[N+](C)(C)C", "[O-]C(=O)C[C@H](N)C", "c1ccc2[nH]ccc2c1", "[Na+].[Cl-]"]
    new_tokens = SmilesTokenizer.from_corpus(broad)
    torch.manual_seed(0)
    source = ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=old_tokens.vocab_size), old_tokens)
    for objective in ("exlm", "mlm"):
        torch.manual_seed(1)
        config = ExLMConfig.from_preset(
            "tiny", vocab_size=new_tokens.vocab_size, objective=objective
        )
        model = ExLMModel(config, new_tokens)
        fresh = model.encoder.embed_tokens.weight.detach().clone()
        started = warm_start(model, source, "source")
        new_rows, old_rows = model.encoder.embed_tokens.weight, source.encoder.embed_tokens.weight
        for token in ("<s>", "<mask>", "C", "c1" if "c1" in new_tokens.token_to_id else "c"):
            i, j = new_tokens.token_to_id[token], old_tokens.token_to_id[token]
            torch.testing.assert_close(new_rows[i], old_rows[j])
            assert model.lm_head.bias[i] == source.lm_head.bias[j]
        # A charged nitrogen starts from the nitrogen the old model read it as; the dot of a
        # salt, read as <unk>, keeps its fresh row.
        charged = new_tokens.token_to_id["[N+]"]
        torch.testing.assert_close(
            new_rows[charged], old_rows[old_tokens.token_to_id[old_tokens.reading("[N+]")]]
        )
        dot = new_tokens.token_to_id["."]
        torch.testing.assert_close(new_rows[dot], fresh[dot])
        assert started.tokens_from_fallback >= 1 and started.tokens_fresh >= 1
        torch.testing.assert_close(
            model.encoder.blocks[0].ffn[0].weight, source.encoder.blocks[0].ffn[0].weight
        )
        assert (model.transition_head is None) == (objective == "mlm")
        if objective == "exlm":
            for a, b in zip(
                model.transition_head.parameters(), source.transition_head.parameters()
            ):
                torch.testing.assert_close(a, b)
    wider = ExLMModel(ExLMConfig.from_preset("small", vocab_size=new_tokens.vocab_size), new_tokens)
    with pytest.raises(InputError, match="--init-from source: its shape differs"):
        warm_start(wider, source, "source")


def test_pretrain_from_another_model_starts_where_it_stopped(corpus, tmp_path, capsys):
    first = pretrain(tiny(corpus, tmp_path / "first", max_steps=4))
    table = tmp_path / "broad.smi"
    table.write_text("\n".join(SMILES * 5 + ["C[N+](C)(C)C", "[O-]C(=O)CC"] * 12) + "\n")
    with pytest.raises(InputError, match="--init-from nowhere: not a model folder"):
        tiny(table, tmp_path / "x", init_from="nowhere")
    run = tmp_path / "second"
    second = pretrain(
        tiny(table, run, max_steps=1, objective="mlm", init_from=str(first.out / "model"))
    )
    err = capsys.readouterr().err
    assert f"started from {first.out / 'model'}: " in err
    assert "2 from the atom it read them as" in err  # [N+] and [O-], new to the first model
    assert "[N+]" in second.model.tokenizer.token_to_id
    assert json.loads((run / "run.json").read_text())["pretrain"]["init_from"] == str(
        first.out / "model"
    )
    export_model(run, tmp_path / "exported")
    card = (tmp_path / "exported" / "MODEL_CARD.md").read_text()
    # The card counts the tokens of the run it started from too.
    before = read_metrics(first.out / "metrics.jsonl")[-1]["tokens"]
    here = read_metrics(run / "metrics.jsonl")[-1]["tokens"]
    assert (
        f"| started from | the weights of {first.out / 'model'}, pretrained on {before:,} " in card
    )
    assert f"; {before + here:,} with the run it started from |" in card


def test_shape_buckets_give_few_batch_shapes_and_the_same_losses():
    from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer
    from exlm_chem.model.expansion import expand_states

    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 60, size=5000).astype(np.int32)
    plain = epoch_batches(lengths, 0, 7, 0, 1, 1024)
    bucketed = epoch_batches(lengths, 0, 7, 0, 1, 1024, shape_bucket=8)
    padded = lambda b: -(-lengths[b].max() // 8) * 8  # noqa: E731
    assert all(len(b) * padded(b) <= 1024 for b in bucketed)
    assert np.array_equal(np.sort(np.concatenate(bucketed)), np.arange(len(lengths)))
    shapes = lambda batches, pad: {(len(b), pad(b)) for b in batches}  # noqa: E731
    assert len(shapes(bucketed, padded)) < len(shapes(plain, lambda b: lengths[b].max())) / 3

    # Padding the tokens and the expanded states changes nothing but the shapes.
    tokenizer = SmilesTokenizer.from_corpus(SMILES)
    for objective in ("exlm", "mlm"):
        torch.manual_seed(0)
        config = ExLMConfig.from_preset(
            "tiny", vocab_size=tokenizer.vocab_size, objective=objective
        )
        model = ExLMModel(config, tokenizer).eval()
        ids = tokenizer.encode_batch(SMILES[:6])
        masks = model.choose_masks(ids, torch.Generator().manual_seed(0))
        wide = torch.nn.functional.pad(ids, (0, -ids.shape[1] % 8))
        wide_masks = torch.nn.functional.pad(masks, (0, -ids.shape[1] % 8))
        with torch.no_grad():
            loss = model(ids, masks).molecule_loss
            padded_loss = model(wide, wide_masks, state_multiple=8).molecule_loss
        torch.testing.assert_close(padded_loss, loss, atol=1e-5, rtol=1e-5)
        expanded = expand_states(wide, config.k, model.expand_ids, 0, multiple=8)
        assert expanded.ids.shape[1] % 8 == 0


def test_pretraining_with_shape_buckets(corpus, tmp_path):
    result = pretrain(tiny(corpus, tmp_path / "run", max_steps=3, shape_bucket=8))
    assert result.step == 3
    with pytest.raises(InputError, match="--shape-bucket must be at least 1"):
        tiny(corpus, tmp_path / "x", shape_bucket=0)
    # A resumed run must draw the batches it was drawing: other batch settings are refused.
    resumed = tiny(corpus, tmp_path / "run", max_steps=6, shape_bucket=1, resume=True)
    with pytest.raises(InputError, match=r"--shape-bucket 8 \(now 1\)"):
        pretrain(resumed)
    assert pretrain(replace(resumed, shape_bucket=8)).step == 6


def test_gpu_busy_time_counts_overlapping_kernels_once(benchmark_script):
    covered_length = benchmark_script("bench_train_step").covered_length
    # (0, 4) and (2, 6) overlap, (3, 5) lies inside them, (8, 9) and (9, 10) touch.
    assert covered_length([(3, 5), (0, 4), (9, 10), (2, 6), (8, 9)]) == 8
    assert covered_length([(5, 6), (0, 1)]) == 2
    assert covered_length([]) == 0


@pytest.mark.skipif(mimalloc_library() is None, reason="cmeel-mimalloc is not installed")
def test_the_pretrain_command_restarts_itself_under_mimalloc(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.smi"
    corpus.write_text("\n".join(["CCO", "CCN", "c1ccccc1O", "CC(=O)O", "CCCl"] * 4) + "\n")
    command = [sys.executable, "-m", "exlm_chem", "pretrain", "--corpus", str(corpus)]
    command += ["--preset", "tiny", "--max-steps", "2", "--val-size", "4"]
    for allocator, expected in (("mimalloc", "mimalloc"), ("system", "system malloc")):
        out = tmp_path / allocator
        run = [*command, "--out", str(out), "--allocator", allocator]
        subprocess.run(run, check=True, capture_output=True)
        assert json.loads((out / "run.json").read_text())["allocator"] == expected
    # A process not started for the command (here pytest) is never replaced: this returns.
    monkeypatch.setattr(sys, "argv", ["exlm-chem", "pretrain", "--corpus", str(corpus)])
    restart_under_mimalloc()
    assert allocator_in_use() == "system malloc"


def test_a_prepared_corpus_trains_as_its_files_do_without_rdkit(corpus, tmp_path, run_cli):
    code, _, err = run_cli("prepare-corpus", corpus, "--out", tmp_path / "prepared")
    assert code == 0 and "160 molecules kept of 162 read (2 rejected by RDKit" in err
    from_file = pretrain(tiny(corpus, tmp_path / "from-file", max_steps=6))
    # The training machine needs no RDKit: a process in which `import rdkit` fails.
    script = (
        "import sys; sys.modules['rdkit'] = None\n"
        "from pathlib import Path\n"
        "from exlm_chem.training.config import PretrainConfig\n"
        "from exlm_chem.training.loop import pretrain\n"
        f"pretrain(PretrainConfig(corpus=[Path({str(tmp_path / 'prepared')!r})], "
        f"out=Path({str(tmp_path / 'from-folder')!r}), preset='tiny', max_steps=6, "
        "batch_tokens=512, log_every=2, val_every=6, checkpoint_every=4, val_size=16, "
        "precision='fp32', seed=3))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_weights(tmp_path / "from-file" / "model", tmp_path / "from-folder" / "model")
    assert from_file.step == 6
    run = json.loads((tmp_path / "from-folder" / "run.json").read_text())
    assert run["corpus"]["invalid_rdkit"] == 2 and run["corpus"]["kept"] == 160 - 16
    export_model(tmp_path / "from-folder", tmp_path / "exported")
    card = (tmp_path / "exported" / "MODEL_CARD.md").read_text()
    assert "| corpus | prepared (prepared from corpus.smi): 144 molecules kept" in card
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [
        "data.npy",
        "lengths.npy",
        "offsets.npy",
        "sources.json",
        "sources.npy",
        "stats.json",
    ]  # used in place: the hold-out went to the run's own corpus folder


def test_a_prepared_validation_corpus_gives_its_first_molecules(corpus, tmp_path):
    from exlm_chem.training.corpus import PackedCorpus
    from exlm_chem.training.prepare import prepare_corpus

    prepare_corpus([corpus], tmp_path / "train")
    prepare_corpus([corpus], tmp_path / "val")
    pretrain(tiny(tmp_path / "train", tmp_path / "run", max_steps=2, val_corpus=tmp_path / "val"))
    (validation,) = (tmp_path / "run" / "corpus").glob("validation-*")
    part, whole = PackedCorpus.load(validation), PackedCorpus.load(tmp_path / "val")
    assert part.smiles(range(len(part))) == whole.smiles(range(16))


def test_validation_molecules_are_written_as_a_prepared_training_corpus_was(corpus, tmp_path):
    from exlm_chem.errors import InputError
    from exlm_chem.training.corpus import PackedCorpus
    from exlm_chem.training.prepare import prepare_corpus

    prepare_corpus([corpus], tmp_path / "train", canonicalize=True)
    val_file = tmp_path / "val.smi"
    val_file.write_text("OC(C)C\nc1cc(O)ccc1\nC(C)(C)N\n" * 6)
    pretrain(tiny(tmp_path / "train", tmp_path / "run", max_steps=2, val_corpus=val_file))
    (validation,) = (tmp_path / "run" / "corpus").glob("validation-*")
    part = PackedCorpus.load(validation)
    assert part.smiles(range(3)) == ["CC(C)O", "Oc1ccccc1", "CC(C)N"]
    prepare_corpus([val_file], tmp_path / "val-as-given")
    with pytest.raises(InputError, match="val-as-given: its SMILES were prepared as given"):
        config = tiny(tmp_path / "train", tmp_path / "run2", val_corpus=tmp_path / "val-as-given")
        pretrain(config)


def test_prepared_corpus_refusals(corpus, tmp_path, run_cli):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not a corpus")
    assert run_cli("prepare-corpus", corpus, "--out", tmp_path / "prepared")[0] == 0
    cases = [
        (["prepare-corpus", corpus, "--out", tmp_path / "prepared"], "pass --overwrite"),
        (["prepare-corpus", corpus, "--out", tmp_path / "plain"], "is not a prepared corpus"),
        (["prepare-corpus", tmp_path / "no.smi", "--out", tmp_path / "x"], "no.smi: file not"),
        (
            ["pretrain", "--corpus", tmp_path / "plain", "--out", tmp_path / "a"],
            "plain: a folder but not a prepared corpus",
        ),
        (
            [
                "pretrain",
                "--corpus",
                tmp_path / "prepared",
                "--corpus",
                corpus,
                "--out",
                tmp_path / "b",
            ],
            "a prepared corpus folder comes alone",
        ),
        (
            [
                "pretrain",
                "--corpus",
                tmp_path / "prepared",
                "--canonicalize",
                "--out",
                tmp_path / "c",
            ],
            "give --canonicalize and --smiles-column to exlm-chem prepare-corpus",
        ),
        (
            ["pretrain", "--corpus", tmp_path / "prepared", "--out", tmp_path / "prepared"],
            "inside the run folder",
        ),
    ]
    for args, message in cases:
        tiny_run = ["--preset", "tiny", "--max-steps", "1"] if args[0] == "pretrain" else []
        code, _, err = run_cli(*args, *tiny_run)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob("*.partial-*"))
    code, _, _ = run_cli("prepare-corpus", corpus, "--out", tmp_path / "prepared", "--overwrite")
    assert code == 0
