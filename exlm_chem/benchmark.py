"""MoleculeNet benchmarks: frozen-feature probes and fine-tuning, side by side with baselines.

Features: ``exlm`` (the default model) or ``exlm:DIR``, ``ecfp`` (ECFP4, 2048 bits),
``random`` or ``random:DIR`` (the same architecture, freshly initialized with a fixed seed: the
control that shows what pretraining adds) and ``mlm:DIR`` (a plain-MLM model).

Data come through DeepChem's own ``dc.molnet.load_*`` loaders with ``data_dir`` (offline when the
files are there, DeepChem's download otherwise); featurized datasets are cached by DeepChem under
``cache_dir``, keyed by the featurizer's name, which for ExLM models holds the hash of the weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    loader: str
    task_type: str  # classification or regression
    file: str  # what DeepChem's loader looks for in data_dir (and downloads otherwise)
    smiles_column: str = "smiles"  # the column DeepChem's loader featurizes


DATASETS = {
    "bbbp": DatasetSpec("load_bbbp", "classification", "BBBP.csv"),
    "bace": DatasetSpec("load_bace_classification", "classification", "bace.csv", "mol"),
    "clintox": DatasetSpec("load_clintox", "classification", "clintox.csv.gz"),
    "tox21": DatasetSpec("load_tox21", "classification", "tox21.csv.gz"),
    "toxcast": DatasetSpec("load_toxcast", "classification", "toxcast_data.csv.gz"),
    "sider": DatasetSpec("load_sider", "classification", "sider.csv.gz"),
    "hiv": DatasetSpec("load_hiv", "classification", "HIV.csv"),
    "muv": DatasetSpec("load_muv", "classification", "muv.csv.gz"),
    "esol": DatasetSpec("load_delaney", "regression", "delaney-processed.csv"),
    "freesolv": DatasetSpec("load_sampl", "regression", "SAMPL.csv"),
    "lipo": DatasetSpec("load_lipo", "regression", "Lipophilicity.csv"),
}
PROBES = ("logreg", "rf", "mlp", "deepchem")
SPLITS = ("scaffold", "random_scaffold")
RANDOM_INIT_SEED = 0


def parse_list(text: str | None, allowed: tuple | dict, what: str) -> list[str]:
    items = [item.strip() for item in (text or "").split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise InputError(f"unknown {what}: {', '.join(unknown)}; choose from {', '.join(allowed)}")
    if not items:
        raise InputError(f"give at least one of the {what}")
    return items


# -- features ----------------------------------------------------------------------------------


@dataclass
class FeatureSpec:
    name: str  # as shown in tables
    kind: str  # exlm, ecfp, random
    model_dir: str | None = None


def parse_features(text: str) -> list[FeatureSpec]:
    specs = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        kind, _, path = item.partition(":")
        if kind not in ("exlm", "ecfp", "random", "mlm"):
            raise InputError(f"unknown features {item!r}: use exlm[:DIR], ecfp, random[:DIR] or mlm:DIR")
        if kind == "mlm" and not path:
            raise InputError("mlm features need a model directory: mlm:DIR")
        if kind == "ecfp" and path:
            raise InputError("ecfp takes no model directory")
        specs.append(FeatureSpec(item if kind != "mlm" else "mlm", "exlm" if kind == "mlm" else kind, path or None))
    if not specs:
        raise InputError("give at least one kind of features")
    return specs


def make_featurizer(spec: FeatureSpec):
    import deepchem as dc

    from .embedding import load_model
    from .featurizer import ExLMFeaturizer

    if spec.kind == "ecfp":
        return dc.feat.CircularFingerprint(radius=2, size=2048)
    model = load_model(spec.model_dir)
    if spec.kind == "random":
        import torch

        from .model import ExLMModel

        torch.manual_seed(RANDOM_INIT_SEED)
        model = ExLMModel(model.config, model.tokenizer).eval()
    return ExLMFeaturizer(model=model)


CACHE_FORMAT = "exlm-chem featurized dataset 1"


def load_dataset(name: str, featurizer, data_dir: Path | None, cache_dir: Path):
    """(tasks, whole dataset): featurized through DeepChem's own loader, untransformed.

    The result is cached in ``cache_dir/NAME/FEATURIZER/`` as plain ``.npy`` arrays (read
    with ``allow_pickle=False``: a planted file can fail to load, never run code) and a JSON
    manifest written last. DeepChem's own on-disk datasets, which hold pickles, live only in
    a private temporary folder of this call and are deleted; none is ever reloaded.
    """
    folder = cache_dir / name / str(featurizer)
    cached = _read_cached_dataset(folder)
    if cached is not None:
        return cached
    tasks, dataset = _featurize_with_deepchem(name, featurizer, data_dir)
    if not np.issubdtype(np.asarray(dataset.X).dtype, np.number):
        return tasks, dataset  # not features (DeepChem's DummyFeaturizer keeps the SMILES)
    _write_cached_dataset(folder, tasks, dataset, packed=_is_binary(featurizer))
    # Read back, so that a first run and a resumed one compute on the same (float32) arrays.
    return _read_cached_dataset(folder)


def _featurize_with_deepchem(name: str, featurizer, data_dir: Path | None):
    import shutil
    import tempfile

    import deepchem as dc
    from rdkit import rdBase

    from .featurizer import ExLMFeaturizer
    from .io import estimate_records
    from .progress import Progress

    loader = getattr(dc.molnet, DATASETS[name].loader)
    progress = None
    if isinstance(featurizer, ExLMFeaturizer):  # fingerprints take seconds; embeddings minutes
        source = Path(data_dir or "") / DATASETS[name].file
        featurizer.progress = progress = Progress(estimate_records(source) if source.is_file() else None, f"{name} molecules featurized")
    with tempfile.TemporaryDirectory(prefix="exlm-chem-molnet-") as private:
        options = dict(featurizer=featurizer, splitter=None, transformers=[], save_dir=private, reload=False)
        if data_dir is not None:
            options["data_dir"] = str(data_dir)
        try:
            # RDKit would print a line per odd molecule and the featurizer one per shard of
            # 8,192 (numbered within the shard): the suite reports the dropped rows instead.
            with warnings.catch_warnings(), rdBase.BlockLogs(), _quiet("exlm_chem.featurizer"):
                warnings.simplefilter("ignore")
                tasks, (disk,), _ = loader(**options)
        except OSError as exc:  # urllib's errors included: the file was missing and the download failed
            where = data_dir if data_dir is not None else "DeepChem's data folder"
            raise InputError(f"{name}: {DATASETS[name].file} is not in {where} and downloading it failed ({exc})") from None
        finally:
            if progress is not None:
                progress.close()
                featurizer.progress = None
        dataset = dc.data.NumpyDataset(disk.X, disk.y, disk.w, disk.ids)
        # DeepChem wrote its shards to a fresh temporary folder of its own: remove it too.
        shutil.rmtree(disk.data_dir, ignore_errors=True)
    return list(tasks), dataset


@contextlib.contextmanager
def _quiet(logger_name: str):
    """Only errors from one logger for a while; its level is restored afterwards."""
    quieted = logging.getLogger(logger_name)
    level = quieted.level
    quieted.setLevel(logging.ERROR)
    try:
        yield
    finally:
        quieted.setLevel(level)


def dropped_rows(name: str, data_dir: Path | None, ids) -> list[int]:
    """Line numbers (the header is line 1) of the rows of a dataset's file that are not among
    ``ids``, the molecules a featurizer kept; empty when the file is not at hand."""
    import pandas as pd

    path = Path(data_dir or "") / DATASETS[name].file
    if not path.is_file():
        return []
    column = pd.read_csv(path, usecols=[DATASETS[name].smiles_column], dtype=str, keep_default_na=False)
    kept = Counter(str(i) for i in ids)
    rows = []
    for line, smiles in enumerate(column.iloc[:, 0], start=2):
        if kept[smiles] > 0:
            kept[smiles] -= 1
        else:
            rows.append(line)
    return rows


def _is_binary(featurizer) -> bool:
    import deepchem as dc

    return isinstance(featurizer, dc.feat.CircularFingerprint)


def _write_cached_dataset(folder: Path, tasks: list[str], dataset, packed: bool) -> None:
    from .io import atomic_path, atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    X = np.asarray(dataset.X)
    arrays = {
        # Fingerprint bits take 1/32 of the space packed as bits than as float32.
        "X": np.packbits(X.astype(bool), axis=1) if packed else X.astype(np.float32),
        "y": np.asarray(dataset.y, dtype=np.float64),
        "w": np.asarray(dataset.w, dtype=np.float64),
        "ids": np.asarray([str(i) for i in dataset.ids], dtype=str),
    }
    for key, array in arrays.items():
        with atomic_path(folder / f"{key}.npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
    manifest = dict(format=CACHE_FORMAT, tasks=list(tasks), rows=len(X), features=int(X.shape[1]), packed_bits=packed)
    atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1))


def _read_cached_dataset(folder: Path):
    """(tasks, NumpyDataset) from a cache folder, or None when there is no complete cache."""
    import deepchem as dc

    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != CACHE_FORMAT:
            return None
        arrays = {key: np.load(folder / f"{key}.npy", allow_pickle=False) for key in ("X", "y", "w", "ids")}
    except (OSError, ValueError) as exc:  # ValueError: a pickled object array, or a damaged file
        logger.warning("%s: ignoring an unreadable cache (%s); featurizing again", folder, exc)
        return None
    X = arrays["X"]
    if manifest["packed_bits"]:
        X = np.unpackbits(X, axis=1, count=manifest["features"]).astype(np.float32)
    if len(X) != manifest["rows"] or not all(len(arrays[k]) == len(X) for k in ("y", "w", "ids")):
        logger.warning("%s: ignoring a cache whose arrays disagree with its manifest; featurizing again", folder)
        return None
    return list(manifest["tasks"]), dc.data.NumpyDataset(X, arrays["y"], arrays["w"], arrays["ids"])


# -- splits ------------------------------------------------------------------------------------


def split_dataset(dataset, split: str, seed: int):
    """Train/valid/test 80/10/10: DeepChem's deterministic scaffold split, or a seeded
    random-scaffold split (scaffold groups shuffled, then filled in order)."""
    import deepchem as dc
    from rdkit import rdBase

    with rdBase.BlockLogs():
        if split == "scaffold":
            return dc.splits.ScaffoldSplitter().train_valid_test_split(dataset, frac_train=0.8, frac_valid=0.1, frac_test=0.1)
        groups = dc.splits.ScaffoldSplitter().generate_scaffolds(dataset)
    order = np.random.default_rng(seed).permutation(len(groups))
    n = len(dataset)
    parts: list[list[int]] = [[], [], []]
    limits = (0.8 * n, 0.9 * n)
    for g in order:
        filled = len(parts[0]) + len(parts[1])
        target = 0 if len(parts[0]) + len(groups[g]) <= limits[0] else 1 if filled + len(groups[g]) <= limits[1] else 2
        parts[target].extend(groups[g])
    return tuple(dataset.select(sorted(p)) for p in parts)


# -- metrics and probes ------------------------------------------------------------------------


def score(task_type: str, y, w, prediction) -> float:
    """Mean ROC-AUC over tasks with both classes among the labelled test rows, or RMSE."""
    from sklearn.metrics import roc_auc_score

    y, w, prediction = (np.asarray(a).reshape(len(y), -1) for a in (y, w, prediction))
    if task_type == "regression":
        mask = w > 0
        return float(np.sqrt(np.mean((prediction[mask] - y[mask]) ** 2)))
    aucs = []
    for t in range(y.shape[1]):
        mask = w[:, t] > 0
        if len(np.unique(y[mask, t])) == 2:
            aucs.append(roc_auc_score(y[mask, t], prediction[mask, t]))
    return float(np.mean(aucs)) if aucs else float("nan")


def _task_rows(dataset, t):
    mask = dataset.w[:, t] > 0
    return dataset.X[mask], dataset.y[mask, t]


def _constant_prediction(task_type, y_train, n):
    return np.full(n, y_train.mean() if len(y_train) else 0.0)


def probe_predictions(probe: str, task_type: str, train, valid, test, seed: int) -> np.ndarray:
    """Fit one probe per task on the labelled training rows; predictions (n_test, n_tasks)."""
    if probe == "deepchem":
        return _deepchem_predictions(task_type, train, valid, test, seed)
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train.X)
    n_tasks = train.y.shape[1]
    out = np.zeros((len(test), n_tasks))
    X_test = scaler.transform(test.X)
    for t in range(n_tasks):
        X_train, y_train = _task_rows(train, t)
        X_valid, y_valid = _task_rows(valid, t)
        X_train, X_valid = scaler.transform(X_train), scaler.transform(X_valid)
        if task_type == "classification" and len(np.unique(y_train)) < 2:
            out[:, t] = _constant_prediction(task_type, y_train, len(test))
            continue
        model = _fit_probe(probe, task_type, X_train, y_train, X_valid, y_valid, seed)
        out[:, t] = model.predict_proba(X_test)[:, 1] if task_type == "classification" else model.predict(X_test)
    return out


REGULARIZATION = (1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0)  # logistic regression's C; ridge's alpha is 1 / C
REGULARIZATION_LIMITS = (1e-7, 1e5)  # how far the grid is extended while the best C sits on its edge


def _fit_linear_probe(classification, X_train, y_train, X_valid, y_valid):
    """Logistic regression or ridge with the regularization that scores best on validation.

    The grid is extended by factors of 10 past whichever end holds the best value, so that
    the choice never rests on the grid's edge (a strong baseline is not understated)."""
    import copy

    from sklearn.linear_model import LogisticRegression, Ridge

    # Weakest C first, each fit starting from the previous solution: the path costs little
    # more than one fit.
    model = LogisticRegression(max_iter=2000, warm_start=True) if classification else Ridge()
    tried: dict[float, tuple[float, object]] = {}

    def fit(c: float) -> None:
        model.set_params(**({"C": c} if classification else {"alpha": 1 / c}))
        model.fit(X_train, y_train)
        if not classification:
            value = -score("regression", y_valid, np.ones_like(y_valid), model.predict(X_valid))
        elif len(np.unique(y_valid)) == 2:
            value = score("classification", y_valid, np.ones_like(y_valid), model.predict_proba(X_valid)[:, 1])
        else:
            value = -abs(np.log10(c) + 1)  # no validation signal: prefer C = 0.1
        tried[c] = (value, copy.deepcopy(model))

    for c in REGULARIZATION:
        fit(c)
    while True:
        best = max(tried, key=lambda c: tried[c][0])
        if best == min(tried) and best / 10 >= REGULARIZATION_LIMITS[0]:
            fit(best / 10)
        elif best == max(tried) and best * 10 <= REGULARIZATION_LIMITS[1]:
            fit(best * 10)
        else:
            return tried[best][1]


def _fit_probe(probe, task_type, X_train, y_train, X_valid, y_valid, seed):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    classification = task_type == "classification"
    if probe == "logreg":
        return _fit_linear_probe(classification, X_train, y_train, X_valid, y_valid)
    if probe == "rf":
        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(n_estimators=200, n_jobs=-1, random_state=seed).fit(X_train, y_train)
    cls = MLPClassifier if classification else MLPRegressor
    return cls(hidden_layer_sizes=(256,), early_stopping=True, max_iter=300, random_state=seed).fit(X_train, y_train)


def _deepchem_predictions(task_type, train, valid, test, seed):
    import deepchem as dc
    import torch
    from sklearn.preprocessing import StandardScaler

    torch.manual_seed(seed)
    n_tasks, n_features = train.y.shape[1], train.X.shape[1]
    # As for the other probes. A fingerprint bit that is constant in the training set keeps
    # its scale (dividing by a tiny standard deviation would blow it up wherever it is set).
    scaler = StandardScaler().fit(train.X)
    scale = lambda d: dc.data.NumpyDataset(scaler.transform(d.X), d.y, d.w, d.ids)  # noqa: E731
    train, valid, test = scale(train), scale(valid), scale(test)
    if task_type == "classification":
        model = dc.models.MultitaskClassifier(n_tasks, n_features, layer_sizes=[512], dropouts=0.2, learning_rate=1e-3, batch_size=64)
    else:
        model = dc.models.MultitaskRegressor(n_tasks, n_features, layer_sizes=[512], dropouts=0.2, learning_rate=1e-3, batch_size=64)
    best, best_value = None, None
    for _ in range(30):  # epochs, keeping the best on validation
        model.fit(train, nb_epoch=1)
        prediction = _deepchem_output(model, valid, task_type)
        value = score(task_type, valid.y, valid.w, prediction)
        value = value if task_type == "classification" else -value
        if best_value is None or (not math.isnan(value) and value > best_value):
            best_value, best = value, _deepchem_output(model, test, task_type)
    return best


def _deepchem_output(model, dataset, task_type):
    output = model.predict(dataset)
    if task_type == "classification":
        return output[..., 1]  # (n, tasks, classes)
    return output.reshape(len(dataset), -1)


# -- fine-tuning -------------------------------------------------------------------------------


def finetune_predictions(model_dir, task_type, train, valid, test, seed, random_init=False, max_epochs=20, patience=3, lr=1e-4, batch_size=32):
    """Train the encoder end to end with a linear head on the mean-pooled states; early stopping
    on the validation metric. Returns test predictions of the best epoch."""
    import torch
    import torch.nn.functional as F

    from .embedding import load_model, prepare_smiles
    from .environment import cpu_has_native_bf16
    from .model import ExLMModel

    torch.manual_seed(seed)
    base = load_model(model_dir)
    if random_init:
        torch.manual_seed(RANDOM_INIT_SEED)
        base = ExLMModel(base.config, base.tokenizer)
        torch.manual_seed(seed)
    base.train()
    tokenizer = base.tokenizer
    n_tasks = train.y.shape[1]
    head = torch.nn.Linear(base.config.hidden_size, n_tasks)
    parameters = list(base.encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    y_mean, y_std = (train.y.mean(0), train.y.std(0) + 1e-6) if task_type == "regression" else (0.0, 1.0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cpu_has_native_bf16() else torch.autocast("cpu", enabled=False)

    # The SMILES as embedding reads them (the featurizer already dropped those it cannot read).
    def model_smiles(dataset) -> list[str]:
        return [p or s for p, s in zip(prepare_smiles(list(dataset.ids), tokenizer).smiles, dataset.ids)]

    train_smiles, valid_smiles, test_smiles = (model_smiles(d) for d in (train, valid, test))

    def predict(smiles):
        base.eval()
        outputs = []
        with torch.inference_mode(), autocast:
            for i in range(0, len(smiles), 128):
                ids = tokenizer.encode_batch(smiles[i : i + 128])
                outputs.append(head(base.embed_states(ids).pooled).float())
        base.train()
        out = torch.cat(outputs).numpy()
        return 1 / (1 + np.exp(-out)) if task_type == "classification" else out * y_std + y_mean

    rng = np.random.default_rng(seed)
    best_value, best_prediction, waited = None, None, 0
    for _ in range(max_epochs):
        order = rng.permutation(len(train))
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            ids = tokenizer.encode_batch([train_smiles[r] for r in rows])
            y = torch.tensor((train.y[rows] - y_mean) / y_std, dtype=torch.float32)
            w = torch.tensor(train.w[rows], dtype=torch.float32)
            with autocast:
                logits = head(base.embed_states(ids).pooled).float()
            if task_type == "classification":
                loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * (w > 0)).sum() / (w > 0).sum().clamp(min=1)
            else:
                loss = (((logits - y) ** 2) * (w > 0)).sum() / (w > 0).sum().clamp(min=1)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
        value = score(task_type, valid.y, valid.w, predict(valid_smiles))
        value = value if task_type == "classification" else -value
        if best_value is None or value > best_value:
            best_value, best_prediction, waited = value, predict(test_smiles), 0
        else:
            waited += 1
            if waited >= patience:
                break
    return best_prediction


# -- the suite ---------------------------------------------------------------------------------


def run_benchmark(
    datasets: list[str],
    features: list[FeatureSpec],
    probes: list[str],
    out: Path,
    data_dir: Path | None = None,
    split: str = "scaffold",
    seeds: list[int] = (0,),
    finetune: bool = False,
    cache_dir: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> list[dict]:
    """Run every (dataset, features, probe, seed) and write results.json/.csv/.md and plots to ``out``.

    results.json is rewritten after every result. With ``resume``, results already in it for
    the same dataset, features (same weights), probe, seed and split are kept, not recomputed;
    an ``out`` that holds results is otherwise refused unless ``overwrite``. Every argument is
    checked before ``out`` is created.
    """
    from .io import atomic_write_text

    if split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise InputError(f"{data_dir}: data folder does not exist")
    if (out / "results.json").exists() and not (resume or overwrite):
        raise InputError(f"{out}: already holds results; pass --resume to add to them or --overwrite to start again")
    records = _previous_results(out / "results.json") if resume else []
    featurizers = {spec.name: make_featurizer(spec) for spec in features}  # a bad model folder fails here
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir else out / "cache"
    done = {_result_key(r) for r in records}
    reported: set = set()
    for name in datasets:
        task_type = DATASETS[name].task_type
        metric = "roc_auc" if task_type == "classification" else "rmse"
        for spec in features:
            featurizer = featurizers[spec.name]
            # Results under the same features name from other weights (a replaced default
            # model, say) would be averaged with the new ones: drop them.
            current = [r for r in records if not (r["dataset"] == name and r["features"] == spec.name and r.get("featurizer") != str(featurizer))]
            if len(current) < len(records):
                logger.info("%s / %s: dropping %d results of other weights", name, spec.name, len(records) - len(current))
                records = current
            todo = [
                (seed, probe)
                for seed in seeds
                for probe in [*probes, *(["finetune"] if finetune and spec.kind != "ecfp" else [])]
                if _result_key(dict(dataset=name, features=spec.name, featurizer=str(featurizer), probe=probe, seed=seed, split=split)) not in done
            ]
            if not todo:
                continue
            start = time.perf_counter()
            _, dataset = load_dataset(name, featurizer, data_dir, cache_dir)
            featurize_seconds = round(time.perf_counter() - start, 1)
            logger.info("%s / %s: %d molecules featurized (or read from the cache) in %.0f s", name, spec.name, len(dataset), featurize_seconds)
            _report_reading(name, spec.name, dropped_rows(name, data_dir, dataset.ids), getattr(featurizer, "counts", None), reported)
            splits, seed_free = {}, {}
            for seed, probe in todo:
                # DeepChem's scaffold split is deterministic, and so is the linear probe on it.
                deterministic = split == "scaffold" and probe == "logreg"
                split_key = seed if split == "random_scaffold" else None
                if split_key not in splits:
                    splits[split_key] = split_dataset(dataset, split, seed)
                train, valid, test = splits[split_key]
                start = time.perf_counter()
                if deterministic and probe in seed_free:
                    prediction = seed_free[probe]
                elif probe == "finetune":
                    prediction = finetune_predictions(spec.model_dir, task_type, train, valid, test, seed, random_init=spec.kind == "random")
                else:
                    prediction = probe_predictions(probe, task_type, train, valid, test, seed)
                if deterministic:
                    seed_free[probe] = prediction
                value = score(task_type, test.y, test.w, prediction)
                record = dict(
                    dataset=name, features=spec.name, probe=probe, seed=seed, split=split, metric=metric, value=value,
                    fit_seconds=round(time.perf_counter() - start, 1), featurize_seconds=featurize_seconds, featurizer=str(featurizer),
                )
                logger.info("%s  %s  %s  seed %d: %s %.4f (fit %.0f s)", name, spec.name, probe, seed, metric, value, record["fit_seconds"])
                records.append(record)
                atomic_write_text(out / "results.json", json.dumps(records, indent=1))
    write_reports(records, out)
    return records


def _report_reading(name: str, features: str, dropped: list[int], counts, reported: set) -> None:
    """One line for the rows a featurizer dropped (once per dataset and set of rows), one for
    the molecules an ExLM model could not read in full."""
    if dropped and (name, tuple(dropped)) not in reported:
        reported.add((name, tuple(dropped)))
        shown = ", ".join(map(str, dropped[:15])) + (" ..." if len(dropped) > 15 else "")
        logger.warning("%s / %s: %d rows of %s cannot be featurized and are left out (lines %s)", name, features, len(dropped), DATASETS[name].file, shown)
    if counts and (counts["unknown_atoms"] or counts["truncated"]):
        logger.warning(
            "%s / %s: of %d molecules, %d have atoms outside the model's vocabulary and %d were truncated",
            name, features, counts["molecules"] - counts["invalid"], counts["unknown_atoms"], counts["truncated"],
        )
        counts.clear()


def _result_key(record: dict) -> tuple:
    return tuple(record.get(field) for field in ("dataset", "features", "featurizer", "probe", "seed", "split"))


def _previous_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot resume from it, not a results file ({exc})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"{path}: cannot resume from it, not a list of results")
    return records


def write_reports(records: list[dict], out: Path) -> None:
    """results.csv, results.md (mean +- std over seeds) and a bar chart per metric."""
    import pandas as pd

    from .io import atomic_write_text

    frame = pd.DataFrame(records)
    atomic_write_text(out / "results.csv", frame.to_csv(index=False))
    atomic_write_text(out / "results.md", markdown_table(frame))
    for metric, group in frame.groupby("metric"):
        plot_bars(group, out / f"results_{metric}.png", metric)


def markdown_table(frame) -> str:
    """One row per dataset and probe, one column per feature kind: mean +- std over seeds."""
    summary = frame.groupby(["dataset", "metric", "probe", "features"])["value"].agg(["mean", "std", "count"]).reset_index()
    feature_order = list(dict.fromkeys(frame["features"]))
    lines = []
    for metric, group in summary.groupby("metric", sort=False):
        better = "higher" if metric == "roc_auc" else "lower"
        lines += [f"### {metric} ({better} is better)", "", "| dataset | probe | " + " | ".join(feature_order) + " |", "|---|---|" + "---|" * len(feature_order)]
        for (dataset, probe), rows in group.groupby(["dataset", "probe"], sort=False):
            cells = []
            for feature in feature_order:
                row = rows[rows["features"] == feature]
                if row.empty:
                    cells.append("")
                else:
                    mean, std, count = row.iloc[0]["mean"], row.iloc[0]["std"], row.iloc[0]["count"]
                    cells.append(f"{mean:.3f} ± {std:.3f}" if count > 1 else f"{mean:.3f}")
            lines.append(f"| {dataset} | {probe} | " + " | ".join(cells) + " |")
        if metric == "roc_auc":
            means = group.groupby(["probe", "features"])["mean"].mean()
            for probe in dict.fromkeys(group["probe"]):
                cells = [f"{means[(probe, f)]:.3f}" if (probe, f) in means else "" for f in feature_order]
                lines.append(f"| **mean** | {probe} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_bars(frame, path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    summary = frame.groupby(["dataset", "features", "probe"])["value"].mean().reset_index()
    summary["label"] = summary["features"] + " / " + summary["probe"]
    datasets = list(dict.fromkeys(summary["dataset"]))
    labels = list(dict.fromkeys(summary["label"]))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(datasets)), 4))
    for i, label in enumerate(labels):
        rows = summary[summary["label"] == label].set_index("dataset")
        ax.bar([d + i * width for d in range(len(datasets))], [rows["value"].get(name, np.nan) for name in datasets], width, label=label)
    ax.set_xticks([d + width * (len(labels) - 1) / 2 for d in range(len(datasets))], datasets)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
