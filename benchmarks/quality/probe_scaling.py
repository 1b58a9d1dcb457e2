"""The linear probe's input scaling: standardized columns against the features as they are,
on the validation parts only (DeepChem's scaffold split and seeded random-scaffold splits).

    EXLM_DATA_DIR=../shared/data python benchmarks/quality/probe_scaling.py --features ecfp \
        --datasets clintox,bace,bbbp,sider

Each task's logistic regression (ridge for regression) has its regularization chosen on
validation, as in the suite; the printed number is the validation ROC-AUC (RMSE) averaged
over the tasks. The suite's `logreg` probe now keeps, per task, whichever input scores better.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.preprocessing import StandardScaler

from exlm_chem.metrics import score
from exlm_chem.moleculenet.datasets import DATASETS, load_dataset, split_dataset
from exlm_chem.moleculenet.features import make_featurizer, parse_features
from exlm_chem.moleculenet.probes import _fit_linear_probe, _task_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import shared_data_dir

SPLITS = [("scaffold", 0), ("random_scaffold", 0), ("random_scaffold", 1), ("random_scaffold", 2)]


def validation_score(task_type: str, train, valid, prepare) -> float:
    """The validation metric averaged over tasks, features passed through ``prepare``."""
    classification = task_type == "classification"
    train_X, valid_X = prepare(train.X), prepare(valid.X)
    values = []
    for t in range(train.y.shape[1]):
        X_train, y_train = _task_rows(train, train_X, t)
        X_valid, y_valid = _task_rows(valid, valid_X, t)
        if len(np.unique(y_train)) < 2 or (classification and len(np.unique(y_valid)) < 2):
            continue
        model = _fit_linear_probe(classification, X_train, y_train, X_valid, y_valid)
        predicted = model.predict_proba(X_valid)[:, 1] if classification else model.predict(X_valid)
        values.append(score(task_type, y_valid, np.ones_like(y_valid), predicted))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", default="ecfp")
    parser.add_argument("--datasets", default="clintox,bace,bbbp")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/moleculenet-cache"))
    args = parser.parse_args()
    data = shared_data_dir() / "moleculenet"
    spec = parse_features(args.features)[0]
    for name in args.datasets.split(","):
        task_type = DATASETS[name].task_type
        _, dataset = load_dataset(name, make_featurizer(spec), data, args.cache_dir)
        for split, seed in SPLITS:
            train, valid, _ = split_dataset(dataset, split, seed)  # the test part is not read
            scaler = StandardScaler().fit(train.X)
            standardized = validation_score(task_type, train, valid, scaler.transform)
            as_given = validation_score(
                task_type, train, valid, lambda X: np.asarray(X, dtype=np.float64)
            )
            print(
                f"{spec.name} {name} {split} seed {seed}: validation "
                f"standardized {standardized:.3f}, as given {as_given:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
