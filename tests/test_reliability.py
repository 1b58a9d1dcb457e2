"""What must never happen to a user: a destroyed input, code run from a cache, a molecule read
wrongly but called valid, a half-written file, a traceback for bad input."""

import errno
import gzip
import json
import os
import pickle
import signal
import warnings

import numpy as np
import pandas as pd
import pytest

from exlm_chem import ExLMTransformer, InputError, embed, embed_file, read_molecules

LONG_ALKANE = "C" * 200  # longer than the model's 128 tokens


class PlantedPickle:
    """Unpickling it creates a file: proof that a loaded pickle ran code."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


@pytest.fixture
def drugs(tmp_path):
    path = tmp_path / "same" / "drugs.csv"
    path.parent.mkdir()
    path.write_text("smiles\nCCO\nc1ccccc1O\n")
    return path


# -- 1. outputs never destroy inputs ----------------------------------------------------------


def test_embed_refuses_to_write_over_its_input_or_an_existing_file(
    run_cli, model_dir, drugs, tmp_path
):
    original = drugs.read_bytes()
    link = tmp_path / "link.csv"
    link.symlink_to(drugs)
    for output in (drugs, link, tmp_path / "same" / ".." / "same" / "drugs.csv"):
        code, _, err = run_cli("embed", drugs, "-o", output, "--model", model_dir, "--overwrite")
        assert code == 2 and "is the input file" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli("embed", link, "-o", drugs, "--model", model_dir)
    assert code == 2 and "is the input file" in err
    assert drugs.read_bytes() == original

    out = tmp_path / "e.parquet"
    assert run_cli("embed", drugs, "-o", out, "--model", model_dir)[0] == 0
    first = out.read_bytes()
    code, _, err = run_cli("embed", drugs, "-o", out, "--model", model_dir, "--pooling", "cls")
    assert code == 2 and "already exists; pass --overwrite" in err and out.read_bytes() == first
    assert (
        run_cli("embed", drugs, "-o", out, "--model", model_dir, "--pooling", "cls", "--overwrite")[
            0
        ]
        == 0
    )
    assert out.read_bytes() != first


def test_default_output_names_keep_the_whole_stem(run_cli, model_dir, tmp_path):
    for plate in ("screen.plate1.csv", "screen.plate2.csv.gz"):
        data = b"smiles\nCCO\n" if plate.endswith(".csv") else gzip.compress(b"smiles\nCCN\n")
        (tmp_path / plate).write_bytes(data)
        assert run_cli("embed", tmp_path / plate, "--model", model_dir)[0] == 0
    names = sorted(p.name for p in tmp_path.glob("*.embeddings.parquet"))
    assert names == ["screen.plate1.embeddings.parquet", "screen.plate2.embeddings.parquet"]


def test_an_output_that_cannot_be_written_fails_before_any_embedding(
    run_cli, model_dir, drugs, tmp_path, monkeypatch
):
    from exlm_chem import embedding

    def never(*args, **kwargs):
        raise AssertionError("embedding started")

    monkeypatch.setattr(embedding, "embed_prepared", never)
    folder = tmp_path / "a_folder.parquet"
    folder.mkdir()
    cases = [(folder, "is a folder"), ("/proc/x.parquet", "/proc/x.parquet")]
    for output, message in cases:
        code, _, err = run_cli("embed", drugs, "-o", output, "--model", model_dir, "--overwrite")
        assert code == 2 and message in err and "Traceback" not in err, err


# -- 2. caches never run code ----------------------------------------------------------------


def test_a_pickle_planted_in_the_benchmark_cache_is_never_run(tmp_path):
    from exlm_chem.moleculenet.datasets import CACHE_FORMAT, _read_cached_dataset

    folder = tmp_path / "cache" / "bbbp" / "CircularFingerprint"
    folder.mkdir(parents=True)
    sentinel = tmp_path / "pwned"
    manifest = dict(format=CACHE_FORMAT, tasks=["p_np"], rows=1, features=1, packed_bits=False)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    np.save(folder / "X.npy", np.array([PlantedPickle(sentinel)], dtype=object), allow_pickle=True)
    for key in ("y", "w", "ids"):
        with open(folder / f"{key}.npy", "wb") as handle:
            pickle.dump(PlantedPickle(sentinel), handle)  # not even a .npy file
    assert _read_cached_dataset(folder) is None  # ignored, so featurized again
    assert not sentinel.exists()


def test_a_checkpoint_holding_a_planted_pickle_is_refused_without_running_it(tmp_path):
    from exlm_chem.training.checkpoints import load_checkpoint

    sentinel = tmp_path / "pwned"
    path = tmp_path / "step-000000001.pt"
    with open(path, "wb") as handle:
        pickle.dump({"model": PlantedPickle(sentinel)}, handle)
    with pytest.raises(InputError, match="corrupt or not an exlm-chem checkpoint") as caught:
        load_checkpoint(path)
    assert "weights_only=False" not in str(caught.value) and not sentinel.exists()


# -- 3. to 5. no silent misreads ---------------------------------------------------------------


def test_whitespace_inside_a_smiles_makes_it_invalid_everywhere(
    run_cli, model, model_dir, tmp_path
):
    smiles = ["C C", "CC\nO", "c1ccccc1 O", "\tCCO "]
    with pytest.warns(
        UserWarning, match=r"3 invalid SMILES got NaN embeddings \(indices 0, 1, 2\)"
    ):
        vectors = embed(smiles, model)
    assert np.isnan(vectors[:3]).all() and not np.isnan(vectors[3]).any()
    with pytest.raises(InputError, match=r"index 0 \(whitespace inside the SMILES\)"):
        embed(smiles, model, invalid="raise")
    path = tmp_path / "spaces.csv"
    pd.DataFrame({"smiles": smiles}).to_csv(path, index=False)
    code, _, err = run_cli("embed", path, "-o", tmp_path / "e.parquet", "--model", model_dir)
    assert code == 0, err
    assert pd.read_parquet(tmp_path / "e.parquet")["valid"].tolist() == [False, False, False, True]
    code, _, err = run_cli(
        "embed", path, "-o", tmp_path / "s.parquet", "--model", model_dir, "--strict"
    )
    assert code == 2 and "row 2: whitespace inside the SMILES" in err
    code, _, err = run_cli("tokenize", path)
    assert code == 2 and "row 2" in err
    # Pretraining corpora too: canonicalizing must not turn "C C" into methane.
    from exlm_chem.smiles import canonicalize_smiles
    from exlm_chem.training.corpus import PackedCorpus, pack_corpus

    with pytest.raises(ValueError):
        canonicalize_smiles("c1ccccc1 O")
    stats = pack_corpus([path], None, canonicalize=True, directory=tmp_path / "packed")
    corpus = PackedCorpus.load(tmp_path / "packed")
    assert corpus.smiles(range(len(corpus))) == ["CCO"] and stats.invalid_rdkit == 3


def test_unknown_atoms_and_truncation_are_counted_marked_and_refused_on_request(
    run_cli, model, model_dir, tmp_path
):
    # The tiny model's vocabulary has no "*" (no fallback: <unk>) and no Br (read as [Br]).
    smiles = ["CCO", "C*", "*CC*", LONG_ALKANE, "CBr"]
    with pytest.warns(
        UserWarning,
        match=r"of 5 valid molecules, 2 with atoms outside .*; 1 with atoms read as a nearby "
        r"known token; 1 truncated to 128 tokens",
    ):
        embed(smiles, model)
    with pytest.raises(InputError, match=r"index 1 is not read in full \(1 tokens outside"):
        embed(smiles, model, strict_atoms=True)
    path = tmp_path / "m.csv"
    pd.DataFrame({"smiles": smiles}).to_csv(path, index=False)
    code, _, err = run_cli("embed", path, "-o", tmp_path / "e.parquet", "--model", model_dir)
    assert code == 0, err
    assert "2 with atoms outside the model's vocabulary" in err and "1 truncated" in err, err
    assert "1 with atoms read as a nearby known token" in err, err
    table = pd.read_parquet(tmp_path / "e.parquet")
    assert table["unknown_atoms"].tolist() == [0, 1, 2, 0, 0]
    assert table["truncated"].tolist() == [False, False, False, True, False]
    assert table["fallback_atoms"].tolist() == [0, 0, 0, 0, 1] and table["valid"].all()
    code, _, err = run_cli(
        "embed", path, "-o", tmp_path / "s.parquet", "--model", model_dir, "--strict-atoms"
    )
    assert code == 2 and "row 3: not read in full" in err and not (tmp_path / "s.parquet").exists()


def test_salts_that_shared_an_unknown_token_are_told_apart_by_their_elements(model):
    from exlm_chem.embedding import embed_molecules

    # Before element tokens and fallbacks, [Br-], [I-] and [Na+] were all <unk> to this model.
    result = embed_molecules(["[Br-].[Na+]", "[I-].[Na+]"], model, "mean", 8, "fp32", True)
    assert not np.allclose(result.vectors[0], result.vectors[1], atol=1e-4)
    assert result.fallback_atoms.tolist() == [2, 2]
    assert result.unknown_atoms.tolist() == [1, 1]  # the "." of a salt: not in these drugs


def test_a_bare_string_is_one_molecule(model, model_dir):
    assert embed("CCO", model).shape == (1, 64)
    np.testing.assert_allclose(embed("CCO", model)[0], embed(["CCO"], model)[0])
    transformer = ExLMTransformer(model=model_dir).fit()
    assert transformer.transform("CCO").shape == (1, 64)


def test_the_sklearn_transformer_names_the_molecule_it_cannot_read(model_dir):
    transformer = ExLMTransformer(model=model_dir).fit()
    with pytest.raises(InputError, match=r"index 1 \(RDKit cannot parse it\): 'C1CC'"):
        transformer.transform(pd.Series(["CCO", "C1CC"]))
    assert np.isnan(
        ExLMTransformer(model=model_dir, invalid="keep").fit().transform(["CCO", "C1CC"])[1]
    ).all()


# -- 6. every write is complete or absent --------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
@pytest.mark.parametrize("when", ["write", "close"])
def test_a_full_disk_leaves_no_file_and_one_line(
    run_cli, model_dir, drugs, tmp_path, monkeypatch, suffix, when
):
    from exlm_chem import embedding_files

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(embedding_files._EmbeddingWriter, when, disk_full)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run_cli("embed", drugs, "-o", out_dir / f"e{suffix}", "--model", model_dir)
    assert code == 2 and "No space left on device" in err and len(err.strip().splitlines()) == 1, (
        err
    )
    assert list(out_dir.iterdir()) == []


def test_npy_output_is_a_valid_array_for_any_row_count(model, drugs, tmp_path):
    for n in (1, 3, 1234):
        path = tmp_path / f"m{n}.smi"
        path.write_text("".join(f"{'C' * (1 + i % 20)}\n" for i in range(n)))
        embed_file(path, tmp_path / f"m{n}.npy", model=model, progress=False)
        array = np.load(tmp_path / f"m{n}.npy", allow_pickle=False)
        assert array.shape == (n, 64) and array.dtype == np.float32
        np.testing.assert_allclose(
            array[:2], embed([("C" * (1 + i % 20)) for i in range(min(n, 2))], model), atol=1e-5
        )


# -- 7. one line, not a traceback ---------------------------------------------------------------


def test_bad_files_devices_and_model_folders_get_one_line(run_cli, model_dir, drugs, tmp_path):
    import shutil

    from rdkit import Chem

    sdf = tmp_path / "mols.sdf"
    writer = Chem.SDWriter(str(sdf))
    for smiles in ["CCO", "c1ccccc1", "CC(=O)O"] * 20:
        writer.write(Chem.MolFromSmiles(smiles))
    writer.close()
    cut = tmp_path / "cut.sdf.gz"
    cut.write_bytes(gzip.compress(sdf.read_bytes())[:-200])

    def model_with(config_change=None, vocab=None):
        folder = tmp_path / f"model{len(list(tmp_path.glob('model*')))}"
        shutil.copytree(model_dir, folder)
        if config_change:
            meta = json.loads((folder / "config.json").read_text())
            meta["config"].update(config_change)
            (folder / "config.json").write_text(json.dumps(meta))
        if vocab is not None:
            data = json.loads((folder / "tokenizer.json").read_text())
            data["model"]["vocab"] = vocab
            (folder / "tokenizer.json").write_text(json.dumps(data))
        return folder

    cases = [
        (
            ("embed", cut, "--model", model_dir, "-o", tmp_path / "a.npy"),
            "cut.sdf.gz: cannot read after record",
        ),
        (
            ("embed", drugs, "--model", model_dir, "--device", "bogus"),
            "--device must be cpu, cuda, cuda:N or auto",
        ),
        (
            (
                "embed",
                drugs,
                "--model",
                model_with(vocab=["<pad>", "<s>"]),
                "-o",
                tmp_path / "b.npy",
            ),
            "model.vocab must map each token",
        ),
        (
            ("embed", drugs, "--model", model_with({"num_heads": 0}), "-o", tmp_path / "c.npy"),
            "num_heads must be a positive integer",
        ),
        (
            (
                "embed",
                drugs,
                "--model",
                model_with({"hidden_size": 65536, "num_heads": 4, "transition_heads": 4}),
                "-o",
                tmp_path / "d.npy",
            ),
            "the weights do not match the config",
        ),
        (("embed", drugs, "--model", model_dir, "--bogus"), "No such option: --bogus"),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append(
            (
                ("embed", drugs, "--model", model_dir, "--device", "cuda"),
                "CUDA is not available here",
            )
        )
    for args, message in cases:
        code, _, err = run_cli(*args)
        assert (
            code == 2
            and message in err
            and err.startswith("error: ")
            and len(err.strip().splitlines()) == 1
        ), (args, err)
    assert not list(tmp_path.glob("*.npy"))


# -- 8. small things ------------------------------------------------------------------------------


def test_a_byte_order_mark_is_not_part_of_the_first_molecule(tmp_path):
    path = tmp_path / "zinc.smi"
    path.write_bytes("\ufeffsmiles zinc_id\nCCO ZINC1\n".encode("utf-8"))
    assert [(r.row, r.id, r.smiles) for r in read_molecules(path)] == [(2, "ZINC1", "CCO")]
    table = tmp_path / "t.csv"
    table.write_bytes("\ufeffsmiles\nCCO\n".encode("utf-8"))
    assert [r.smiles for r in read_molecules(table)] == ["CCO"]


def test_ctrl_c_says_interrupted(run_cli, drugs, monkeypatch):
    from exlm_chem import embedding_files

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(embedding_files, "embed_file", interrupted)
    code, _, err = run_cli("embed", drugs)
    assert code == 130 and err.strip() == "interrupted"


def test_progress_prints_plain_lines_when_stderr_is_not_a_terminal(capsys):
    from exlm_chem.progress import Progress

    with Progress(100, "molecules", every=0.0) as progress:
        progress.update(40)
        progress.update(60)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("40 molecules of 100 (40%)") and "eta" in lines[0]
    assert lines[-1].startswith("100 molecules of 100 (100%)")
    with Progress(100, enabled=False, every=0.0) as quiet:
        quiet.update(100)
    assert capsys.readouterr().err == ""


def test_an_empty_validation_set_logs_null_not_nan():
    import torch

    from exlm_chem import ExLMConfig, ExLMModel, SmilesTokenizer
    from exlm_chem.training.corpus import PackedCorpus
    from exlm_chem.training.validation import validate

    tokenizer = SmilesTokenizer(["C", "O"])
    model = ExLMModel(ExLMConfig.from_preset("tiny", vocab_size=tokenizer.vocab_size), tokenizer)
    empty = PackedCorpus(
        np.zeros(0, dtype=np.uint8),
        np.zeros(1, dtype=np.int64),
        np.zeros(0, dtype=np.int32),
        np.zeros(0, dtype=np.int16),
        [],
    )
    metrics = validate(model, tokenizer, empty, 1024, "cpu", torch.autocast("cpu", enabled=False))
    json.loads(json.dumps(metrics, allow_nan=False))  # strict JSON
    assert metrics["val_loss"] is None


def test_benchmark_checks_its_arguments_before_creating_anything(run_cli, tmp_path):
    out = tmp_path / "out"
    cases = [
        (("--data-dir", tmp_path / "missing"), "data folder does not exist"),
        (("--features", "exlm:" + str(tmp_path / "no_model")), "not a model directory"),
        (("--split", "sideways"), "--split must be one of"),
    ]
    for extra, message in cases:
        code, _, err = run_cli("benchmark", "--datasets", "bbbp", "--out", out, *extra)
        assert code == 2 and message in err, err
        assert not out.exists()
    out.mkdir()
    (out / "results.json").write_text("[]")
    code, _, err = run_cli("benchmark", "--datasets", "bbbp", "--features", "ecfp", "--out", out)
    assert code == 2 and "already holds results; pass --resume" in err


def test_a_bounded_fuzz_of_the_readers_finds_no_traceback_and_no_partial_file(benchmark_script):
    result = benchmark_script("fuzz_inputs").fuzz(examples=200, embed_every=5)
    assert result["cases"] == 200 and result["refused"] > 0
    assert result["read"] > 0 and result["embedded"] > 0
    assert result["failures"] == 0, result["failure_examples"]


def test_preparation_in_worker_processes_writes_the_same_file(model, drug_smiles, tmp_path):
    import multiprocessing

    path = tmp_path / "drugs.smi"
    path.write_text("\n".join(drug_smiles * 40 + ["C1CC", "CCX"]) + "\n")
    embed_file(
        path, tmp_path / "here.parquet", model=model, workers=0, chunk_size=100, progress=False
    )
    embed_file(
        path, tmp_path / "spread.parquet", model=model, workers=2, chunk_size=100, progress=False
    )
    here, spread = (
        pd.read_parquet(tmp_path / "here.parquet"),
        pd.read_parquet(tmp_path / "spread.parquet"),
    )
    pd.testing.assert_frame_equal(here.drop(columns="embedding"), spread.drop(columns="embedding"))
    np.testing.assert_array_equal(np.stack(here["embedding"]), np.stack(spread["embedding"]))
    assert here["valid"].sum() == len(drug_smiles) * 40
    assert not multiprocessing.active_children()


def test_ctrl_c_while_workers_prepare_leaves_no_file_and_no_worker(
    model, drug_smiles, tmp_path, monkeypatch
):
    import multiprocessing

    from exlm_chem import embedding_files

    path = tmp_path / "drugs.smi"
    path.write_text("\n".join(drug_smiles * 40) + "\n")
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(embedding_files._EmbeddingWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embed_file(
            path, tmp_path / "out.parquet", model=model, workers=2, chunk_size=50, progress=False
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drugs.smi"]
    assert not multiprocessing.active_children()


def test_embed_with_worker_processes_gives_the_same_vectors(model, drug_smiles, monkeypatch):
    import multiprocessing

    from exlm_chem import embedding

    monkeypatch.setattr(embedding, "MIN_WORKER_CHUNK", 50)
    smiles = drug_smiles * 30 + ["C1CC", "C C"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        here = embed(smiles, model, workers=0)
        spread = embed(smiles, model, workers=2)
    np.testing.assert_allclose(spread, here, atol=1e-5, equal_nan=True)
    assert np.isnan(spread[-2:]).all() and not np.isnan(spread[:-2]).any()
    assert not multiprocessing.active_children()


def test_featurizer_keeps_its_workers_between_calls_and_gives_the_same_vectors(
    model_dir, drug_smiles, monkeypatch
):
    import multiprocessing

    from exlm_chem import ExLMFeaturizer, embedding

    monkeypatch.setattr(embedding, "MIN_WORKER_CHUNK", 50)
    shards = [drug_smiles * 10 + ["C1CC"], drug_smiles[::-1] * 10]  # as a loader's shards
    here = ExLMFeaturizer(model=model_dir, workers=0)
    spread = ExLMFeaturizer(model=model_dir, workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = spread.featurize(shards[0])
        started = {p.pid for p in multiprocessing.active_children()}
        assert len(started) == 2
        second = spread.featurize(shards[1])
        assert {p.pid for p in multiprocessing.active_children()} == started  # the same workers
        for shard, features in zip(shards, (first, second)):
            expected = here.featurize(shard)
            assert [f.size for f in features] == [f.size for f in expected]
            for a, b in zip(features, expected):
                np.testing.assert_allclose(a, b, atol=1e-5)
    spread.close()
    assert not multiprocessing.active_children()
    assert pickle.loads(pickle.dumps(spread)).workers == 2

    transformer = ExLMTransformer(model=model_dir, workers=2).fit()
    np.testing.assert_allclose(transformer.transform(shards[1]), np.stack(expected), atol=1e-5)
    assert not multiprocessing.active_children()


def test_a_smiles_over_the_character_limit_is_invalid_in_every_format(run_cli, model_dir, tmp_path):
    # Longer than the reader's 4,096-character limit: flagged by the reader, never embedded.
    path = tmp_path / "long.csv"
    pd.DataFrame({"smiles": ["CCO", "C" * 5000, "c1ccccc1"]}).to_csv(path, index=False)
    for suffix in ("parquet", "csv", "npy"):
        out = tmp_path / f"e.{suffix}"
        code, _, err = run_cli("embed", path, "-o", out, "--model", model_dir)
        assert code == 0, err
        assert "1 invalid SMILES written as NaN rows" in err and "0 truncated" in err, err
        if suffix == "npy":
            vectors = np.load(out)
        else:
            table = pd.read_parquet(out) if suffix == "parquet" else pd.read_csv(out)
            assert table["valid"].tolist() == [True, False, True]
            assert table["truncated"].tolist() == [False, False, False]
            vectors = table.filter(like="exlm_").to_numpy()
        assert np.isnan(vectors[1]).all() and np.isfinite(vectors[[0, 2]]).all()
    code, _, err = run_cli(
        "embed", path, "-o", tmp_path / "s.npy", "--model", model_dir, "--strict"
    )
    assert code == 2 and "row 3: SMILES of 5000 characters is longer than the limit" in err, err


def test_negative_workers_and_span_sizes_are_refused(run_cli, model_dir, drugs, tmp_path):
    code, _, err = run_cli(
        "embed", drugs, "-o", tmp_path / "e.npy", "--model", model_dir, "--workers", "-1"
    )
    assert code == 2 and "--workers must be 0 (none) or more, not -1" in err
    assert not (tmp_path / "e.npy").exists()
    code, _, err = run_cli("infill", "CC<mask:-1>", "--model", model_dir)
    assert code == 2 and "a span needs room for at least 1 token" in err, err
    code, _, err = run_cli("infill", "CC<mask:two>", "--model", model_dir)
    assert code == 2 and "<mask:two> is not <mask:N> with N a whole number" in err, err


def test_sigterm_during_embed_cleans_up_like_ctrl_c(model_dir, drug_smiles, tmp_path):
    import subprocess
    import sys
    import time

    path = tmp_path / "many.smi"
    path.write_text("\n".join(drug_smiles * 3000) + "\n")
    out = tmp_path / "out.parquet"
    command = [
        sys.executable, "-c", "from exlm_chem.cli import main; main()", "embed", str(path),
        "-o", str(out), "--model", str(model_dir),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    deadline = time.time() + 120
    while not list(tmp_path.glob(".out.parquet*")) and time.time() < deadline:
        time.sleep(0.05)  # until the output is being written
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.smi"]


def test_tokenize_reads_a_models_vocabulary(run_cli, model_dir):
    from exlm_chem.tokenizer import SmilesTokenizer

    code, out, err = run_cli("tokenize", "--smiles", "CC[Br]", "--ids", "--model", model_dir)
    assert code == 0, err
    expected = SmilesTokenizer.load(model_dir / "tokenizer.json").encode("CC[Br]")
    assert out.split() == [str(int(i)) for i in expected]
    code, out, _ = run_cli(
        "tokenize", "--smiles", "CC[NH+]", "--fallbacks", "--model", "exlm-chem-v2"
    )
    assert code == 0 and out.strip() == "C C [NH+]" or "->" in out
    for args, message in [
        (["--model", "no-such-model"], "--model no-such-model: not a model folder"),
        (["--model", model_dir, "--tokenizer", model_dir / "tokenizer.json"], "exclude each other"),
    ]:
        code, _, err = run_cli("tokenize", "--smiles", "CCO", "--ids", *args)
        assert code == 2 and message in err, err


def test_importing_deepchem_through_us_prints_none_of_its_noise():
    import subprocess
    import sys

    script = (
        "import logging, warnings\n"
        "from exlm_chem import ExLMFeaturizer\n"
        "ExLMFeaturizer\n"
        "import exlm_chem.moleculenet.suite\n"
        "logging.getLogger('deepchem').warning('a real warning of DeepChem')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # DeepChem's import-time lines are gone; what it says afterwards still reaches the user.
    assert done.stderr.strip() == "a real warning of DeepChem", done.stderr


def test_progress_counts_batches_and_prints_each_count_once(model, drug_smiles, capsys):
    from exlm_chem.embedding import embed_prepared
    from exlm_chem.preparation import prepare_smiles
    from exlm_chem.progress import Progress

    prepared = prepare_smiles(drug_smiles + ["C1CC"], model.tokenizer)
    seen = []
    embed_prepared(prepared, model, "mean", 4, "fp32", on_batch=seen.append)
    assert seen and max(seen) <= 4 and sum(seen) == len(drug_smiles)  # per batch, not per file
    with Progress(10, "molecules", every=0) as bar:  # a log: a line per update here
        bar.update(10)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("10 molecules of 10 (100%)")
