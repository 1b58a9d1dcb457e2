"""Would ExLM add anything to RDKit's 2D descriptors? Validation parts only: the suite's
linear probe on RDKit 2D descriptors alone and on the descriptors side by side with the
default model's vector (`layers` read-out), each block weighted as the ECFP4 hybrid's are
(standardized, then 1 / sqrt(width), so the 256 ExLM numbers and the 217 descriptors weigh
alike), on seeded random-scaffold splits; paired differences per dataset.

    python benchmarks/quality/hybrid_descriptors.py \
        --datasets esol,freesolv,bbbp,bace,clintox,sider --json

Reads and writes the suite's featurization cache (--cache-dir).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import deepchem as dc
import numpy as np

from exlm_chem.metrics import metric_name, score
from exlm_chem.moleculenet.datasets import DATASETS, load_dataset, split_dataset
from exlm_chem.moleculenet.features import make_featurizer, parse_features
from exlm_chem.moleculenet.probes import probe_predictions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import print_result, shared_data_dir


def side_by_side(first, second):
    """The rows both datasets hold (by id, in ``first``'s order), their columns joined."""
    where = {molecule: row for row, molecule in enumerate(second.ids)}
    rows = [(i, where[m]) for i, m in enumerate(first.ids) if m in where]
    a, b = (np.array(r) for r in zip(*rows))
    X = np.concatenate([first.X[a], second.X[b]], axis=1)
    return dc.data.NumpyDataset(X, first.y[a], first.w[a], first.ids[a])


def validation_scores(dataset, task_type, seeds, blocks=None) -> list[float]:
    scores = []
    for seed in seeds:
        train, valid, test = split_dataset(dataset, "random_scaffold", seed)
        prediction, _ = probe_predictions("logreg", task_type, train, valid, test, seed, blocks)
        scores.append(score(task_type, valid.y, valid.w, prediction))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="esol,freesolv,bbbp,bace,clintox,sider")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--features", default="exlm[layers]", help="the model's read-out")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/moleculenet-cache"))
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", module="sklearn")  # ridge's ill-conditioning notes
    data = shared_data_dir()
    if data is None:
        raise SystemExit("the shared MoleculeNet files are needed: set EXLM_DATA_DIR")
    seeds = [int(s) for s in args.seeds.split(",")]
    (model_spec,) = parse_features(args.features)
    (descriptor_spec,) = parse_features("rdkit2d")
    result = {"features": args.features, "seeds": seeds, "datasets": {}}
    for name in args.datasets.split(","):
        start = time.perf_counter()
        task_type = DATASETS[name].task_type
        datasets = {}
        for spec in (model_spec, descriptor_spec):
            featurizer = make_featurizer(spec)
            _, datasets[spec.kind] = load_dataset(
                name, featurizer, data / "moleculenet", args.cache_dir
            )
        both = side_by_side(datasets["rdkit2d"], datasets["exlm"])
        widths = [datasets["rdkit2d"].X.shape[1], datasets["exlm"].X.shape[1]]
        descriptors_only = dc.data.NumpyDataset(both.X[:, : widths[0]], both.y, both.w, both.ids)
        alone = validation_scores(descriptors_only, task_type, seeds)
        joined = validation_scores(both, task_type, seeds, blocks=widths)
        sign = 1 if task_type == "classification" else -1  # positive: the hybrid is better
        gains = [sign * (j - a) for j, a in zip(joined, alone)]
        result["datasets"][name] = dict(
            metric=metric_name(task_type),
            rdkit2d=round(float(np.mean(alone)), 4),
            hybrid=round(float(np.mean(joined)), 4),
            gain_per_seed=[round(g, 4) for g in gains],
            better_on=f"{sum(g > 0 for g in gains)} of {len(gains)} seeds",
            seconds=round(time.perf_counter() - start, 1),
        )
        print(name, json.dumps(result["datasets"][name]), flush=True)
    print_result(result, args.json)


if __name__ == "__main__":
    main()
