"""The MoleculeNet sets: read through DeepChem's own loaders, featurized, cached without
pickles, and split by scaffold.

Data come through DeepChem's ``dc.molnet.load_*`` loaders with ``data_dir`` (offline when the
files are there, DeepChem's download otherwise). The featurized arrays are cached as plain
``.npy`` files, keyed by the featurizer's name, which for ExLM models holds the hash of the
weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import deepchem as dc
import numpy as np
import pandas as pd

from ..errors import InputError
from ..featurizer import ExLMFeaturizer
from ..molecule_files import estimate_records
from ..outputs import atomic_path, atomic_write_text
from ..progress import Progress
from ..smiles import quiet_rdkit
from ..splits import random_scaffold_split

logger = logging.getLogger(__name__)

SPLITS = ("scaffold", "random_scaffold")


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


def load_features(name: str, featurizer, data_dir: Path | None, cache_dir: Path):
    """(tasks, dataset) as `load_dataset`; for joined features (an object with ``parts``),
    each part loaded (and cached) by itself and their columns side by side, on the molecules
    every part could read."""
    if not hasattr(featurizer, "parts"):
        return load_dataset(name, featurizer, data_dir, cache_dir)
    pairs = [load_dataset(name, part, data_dir, cache_dir) for part in featurizer.parts]
    tasks, loaded = pairs[0][0], [dataset for _, dataset in pairs]
    lines = [_file_lines(name, data_dir, part.ids) for part in loaded]
    if any(line is None for line in lines):
        if any(
            len(part) != len(loaded[0]) or list(part.ids) != list(loaded[0].ids) for part in loaded
        ):
            raise InputError(
                f"{name}: {DATASETS[name].file} is not in the data folder, and the joined "
                "features kept different molecules: give --data-dir"
            )
        rows = [np.arange(len(loaded[0]))] * len(loaded)
    else:
        common = sorted(set.intersection(*(set(line) for line in lines)))
        rows = [np.searchsorted(line, common) for line in lines]
    first = loaded[0]
    X = np.concatenate([np.asarray(part.X)[r] for part, r in zip(loaded, rows)], axis=1)
    return tasks, dc.data.NumpyDataset(X, first.y[rows[0]], first.w[rows[0]], first.ids[rows[0]])


def _file_lines(name: str, data_dir: Path | None, ids) -> np.ndarray | None:
    """The file line of each of a dataset's rows, in order (None: the file is not at hand)."""
    path = Path(data_dir or "") / DATASETS[name].file
    if not path.is_file():
        return None
    dropped = set(dropped_rows(name, data_dir, ids))
    lines = [line for line in range(2, 2 + len(ids) + len(dropped)) if line not in dropped]
    return np.asarray(lines)


def _featurize_with_deepchem(name: str, featurizer, data_dir: Path | None):
    loader = getattr(dc.molnet, DATASETS[name].loader)
    progress = None
    if isinstance(featurizer, ExLMFeaturizer):  # fingerprints take seconds; embeddings minutes
        source = Path(data_dir or "") / DATASETS[name].file
        featurizer.progress = progress = Progress(
            estimate_records(source) if source.is_file() else None, f"{name} molecules featurized"
        )
    with tempfile.TemporaryDirectory(prefix="exlm-chem-molnet-") as private:
        options = dict(
            featurizer=featurizer, splitter=None, transformers=[], save_dir=private, reload=False
        )
        if data_dir is not None:
            options["data_dir"] = str(data_dir)
        try:
            # RDKit would print a line per odd molecule and the featurizer one per shard of
            # 8,192 (numbered within the shard): the suite reports the dropped rows instead.
            with warnings.catch_warnings(), quiet_rdkit(), _quiet("exlm_chem.featurizer"):
                warnings.simplefilter("ignore")
                tasks, (disk,), _ = loader(**options)
        except (
            OSError
        ) as exc:  # urllib's errors included: the file was missing and the download failed
            where = data_dir if data_dir is not None else "DeepChem's data folder"
            raise InputError(
                f"{name}: {DATASETS[name].file} is not in {where} and downloading it failed ({exc})"
            ) from None
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

    path = Path(data_dir or "") / DATASETS[name].file
    if not path.is_file():
        return []
    column = pd.read_csv(
        path, usecols=[DATASETS[name].smiles_column], dtype=str, keep_default_na=False
    )
    kept = Counter(str(i) for i in ids)
    rows = []
    for line, smiles in enumerate(column.iloc[:, 0], start=2):
        if kept[smiles] > 0:
            kept[smiles] -= 1
        else:
            rows.append(line)
    return rows


def _is_binary(featurizer) -> bool:
    """Fingerprint bits (DeepChem's ECFP), stored packed."""
    return isinstance(featurizer, dc.feat.CircularFingerprint)


def _write_cached_dataset(folder: Path, tasks: list[str], dataset, packed: bool) -> None:
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
    manifest = dict(
        format=CACHE_FORMAT,
        tasks=list(tasks),
        rows=len(X),
        features=int(X.shape[1]),
        packed_bits=packed,
    )
    atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1))


def _read_cached_dataset(folder: Path):
    """(tasks, NumpyDataset) from a cache folder, or None when there is no complete cache."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != CACHE_FORMAT:
            return None
        arrays = {
            key: np.load(folder / f"{key}.npy", allow_pickle=False)
            for key in ("X", "y", "w", "ids")
        }
    except (OSError, ValueError) as exc:  # ValueError: a pickled object array, or a damaged file
        logger.warning("%s: ignoring an unreadable cache (%s); featurizing again", folder, exc)
        return None
    X = arrays["X"]
    if manifest["packed_bits"]:
        X = np.unpackbits(X, axis=1, count=manifest["features"]).astype(np.float32)
    if len(X) != manifest["rows"] or not all(len(arrays[k]) == len(X) for k in ("y", "w", "ids")):
        logger.warning(
            "%s: ignoring a cache whose arrays disagree with its manifest; featurizing again",
            folder,
        )
        return None
    return list(manifest["tasks"]), dc.data.NumpyDataset(X, arrays["y"], arrays["w"], arrays["ids"])


# -- splits ------------------------------------------------------------------------------------


def cached_split(splits: dict, dataset, split: str, seed: int):
    """`split_dataset`, computed once per seed in ``splits`` (once in all for DeepChem's
    deterministic split)."""
    key = seed if split == "random_scaffold" else None
    if key not in splits:
        splits[key] = split_dataset(dataset, split, seed)
    return splits[key]


def split_dataset(dataset, split: str, seed: int):
    """Train/valid/test 80/10/10: DeepChem's deterministic scaffold split, or a seeded
    random-scaffold split (see `random_scaffold_split`)."""
    if split == "scaffold":
        with quiet_rdkit():
            return dc.splits.ScaffoldSplitter().train_valid_test_split(
                dataset, frac_train=0.8, frac_valid=0.1, frac_test=0.1
            )
    return tuple(dataset.select(rows) for rows in random_scaffold_split(_groups(dataset), seed))


REPORTED_SEEDS = (0, 1, 2, 3, 4)  # the seeded scaffold splits whose test parts are reported


def selection_split(dataset, seed: int, reported_seeds=REPORTED_SEEDS):
    """Train and validation parts of ``seed``'s random-scaffold split with every molecule of
    any reported seed's test part left out: for choosing between models (pretraining recipes,
    lengths, read-outs) on molecules that no reported test score is measured on. A seed's
    own validation part holds other seeds' test molecules, so choosing on it leaks the choice
    into their test scores."""
    groups = _groups(dataset)
    tested = set()
    for reported in reported_seeds:
        tested.update(random_scaffold_split(groups, reported)[2].tolist())
    train, valid, _ = random_scaffold_split(groups, seed)
    return tuple(
        dataset.select(np.array([r for r in rows if r not in tested], dtype=np.int64))
        for rows in (train, valid)
    )


def _groups(dataset) -> list[list[int]]:
    """Row indices grouped by Murcko scaffold, DeepChem's way (the ids are the SMILES)."""
    with quiet_rdkit():
        return dc.splits.ScaffoldSplitter().generate_scaffolds(dataset)
