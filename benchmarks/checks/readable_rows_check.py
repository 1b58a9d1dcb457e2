"""Rows-only loading (ReadableRows) against loading with the embeddings: the same ids, labels
and weights per MoleculeNet set, and the seconds each takes.

    python benchmarks/checks/readable_rows_check.py lipo toxcast bbbp bace clintox tox21 sider \
        esol freesolv
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from exlm_chem.moleculenet.datasets import load_dataset
from exlm_chem.moleculenet.features import ReadableRows, make_featurizer, parse_features

data = Path(os.environ.get("EXLM_DATA_DIR", "../shared/data")) / "moleculenet"
feat = make_featurizer(parse_features("exlm")[0])
for name in sys.argv[1:]:
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        _, rows = load_dataset(name, ReadableRows(feat), data, Path(cache))
        t1 = time.perf_counter() - t
    t = time.perf_counter()
    _, full = load_dataset(name, feat, data, Path("runs/moleculenet-cache"))
    t2 = time.perf_counter() - t
    same = (
        len(rows) == len(full)
        and np.array_equal(rows.ids, full.ids)
        and np.array_equal(rows.w, full.w)
        and np.array_equal(np.nan_to_num(rows.y), np.nan_to_num(full.y))
    )
    print(
        name,
        len(rows),
        len(full),
        "identical" if same else "DIFFERENT",
        f"rows {t1:.1f} s, full {t2:.1f} s",
        flush=True,
    )
