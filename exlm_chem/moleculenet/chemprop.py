"""chemprop (a directed message-passing network) trained from scratch on a suite's split: the
model a chemist would train on their own assay instead of probing pretrained features.

chemprop runs as its own command (``chemprop train`` on the training and validation parts,
then ``chemprop predict`` for the validation and test parts) with its default hyper-parameters
and epochs, in a private temporary folder; its predictions are scored by this package's metrics
like every other baseline's. It is an optional dependency: ``pip install 'exlm-chem[bench]'``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

# chemprop's console script, run with this interpreter (its package has no __main__).
_COMMAND = "import sys; from chemprop.cli.main import main; sys.argv[0] = 'chemprop'; main()"


def check_chemprop() -> str:
    """chemprop's version; InputError naming the extra to install when it is missing."""
    try:
        import chemprop
    except ImportError:
        raise InputError(
            "--features chemprop: chemprop is not installed; pip install 'exlm-chem[bench]'"
        ) from None
    return chemprop.__version__


def chemprop_predictions(
    task_type: str, train, valid, test, seed: int, options: tuple[str, ...] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Train chemprop on ``train`` (its best validation epoch kept, as chemprop does) and
    predict ``valid`` and ``test``: (n_valid, n_tasks) and (n_test, n_tasks), probabilities
    for classification. The parts are DeepChem datasets whose ids are SMILES; a label with
    weight 0 is missing. ``options``: more ``chemprop train`` options (none: its defaults)."""
    n_tasks = train.y.shape[1]
    columns = [f"task_{t}" for t in range(n_tasks)]  # task names may hold any character
    with tempfile.TemporaryDirectory(prefix="exlm-chem-chemprop-") as folder:
        folder = Path(folder)
        # chemprop sees the training and validation parts only; the test part is predicted
        # afterwards like the validation part. (Its own test scoring fails on a task without
        # any test label, as one of ToxCast's 617 on a split; and the labels are not its to see.)
        training = [_table(train, columns, "train"), _table(valid, columns, "val")]
        pd.concat(training, ignore_index=True).to_csv(folder / "data.csv", index=False)
        _run(
            [
                "train", "-i", "data.csv", "-s", "smiles", "--target-columns", *columns,
                "--splits-column", "split", "-t", task_type, "-o", "model",
                "--accelerator", "cpu", "--devices", "1", "-n", "0",
                "--pytorch-seed", str(seed), "--data-seed", str(seed), *options,
            ],
            folder,
        )  # fmt: skip
        ids = [str(i) for i in valid.ids] + [str(i) for i in test.ids]
        pd.DataFrame({"smiles": ids}).to_csv(folder / "molecules.csv", index=False)
        _run(
            [
                "predict", "-i", "molecules.csv", "-s", "smiles", "--model-paths",
                "model/model_0/best.pt", "-o", "predictions.csv",
                "--accelerator", "cpu", "--devices", "1", "-n", "0",
            ],
            folder,
        )  # fmt: skip
        predictions = pd.read_csv(folder / "predictions.csv")
        n_valid = len(valid.ids)
        return (
            _predictions(predictions.iloc[:n_valid], columns, valid.ids),
            _predictions(predictions.iloc[n_valid:], columns, test.ids),
        )


def _table(part, columns: list[str], split: str) -> pd.DataFrame:
    labels = np.where(part.w > 0, part.y, np.nan)
    frame = pd.DataFrame(labels, columns=columns)
    frame.insert(0, "smiles", [str(i) for i in part.ids])
    frame["split"] = split
    return frame


def _run(args: list[str], folder: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND, *args], cwd=folder, capture_output=True, text=True
    )
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"chemprop {args[0]} failed (exit {done.returncode}):\n{tail}")


def _predictions(frame: pd.DataFrame, columns: list[str], ids) -> np.ndarray:
    """The predictions, checked to be for ``ids`` in their order."""
    if frame["smiles"].astype(str).tolist() != [str(i) for i in ids]:
        raise RuntimeError(f"chemprop predicted {len(frame)} molecules, not the {len(ids)} asked")
    return frame[columns].to_numpy(dtype=np.float64)
