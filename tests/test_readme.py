"""The README's examples run as written: every Python block, and every command of its bash
blocks whose input files are at hand (the samples in data/); the others are listed as skipped."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
MOLECULE_FILE = re.compile(r"\.(csv|tsv|smi|sdf|txt)(\.gz)?$")
OUTPUT_OPTIONS = {"-o", "--output", "--out", "--png"}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def commands() -> list[str]:
    """The exlm-chem commands of the bash blocks, continuation lines joined."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].strip()
            if line.startswith("exlm-chem "):
                found.append(line)
    return found


def missing_inputs(args: list[str], folder: Path) -> list[str]:
    """Input files (or folders) a command names that are not in ``folder``."""
    missing = []
    for before, arg in zip(["", *args], args):
        if before in OUTPUT_OPTIONS:
            continue
        named = MOLECULE_FILE.search(arg) or before in ("--corpus", "--model", "--data-dir")
        if named and not (folder / arg).exists() and "exlm-chem-v" not in arg:
            missing.append(arg)
    return missing


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from exlm_chem.cli import main; main()", *args],
        cwd=cwd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(blocks("python"))))
def test_python_blocks_run_as_written(number, tmp_path):
    shutil.copytree(REPO / "data", tmp_path / "data")
    script = blocks("python")[number]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_commands_run_as_written_where_their_files_are_at_hand(tmp_path):
    shutil.copytree(REPO / "data", tmp_path / "data")
    ran, skipped = [], []
    for command in commands():
        args = shlex.split(command)[1:]
        missing = missing_inputs(args, tmp_path)
        if missing:
            skipped.append(f"{command}: needs {', '.join(missing)}")
            continue
        done = run(args, tmp_path)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
        ran.append(command)
    # The sample-file examples all ran (a later one reads what an earlier one wrote).
    assert len(ran) >= 7, ran
    assert any(c.startswith("exlm-chem predict data/drugs.csv") for c in ran)
    assert any("benchmark" in s for s in skipped)  # the large-data examples are skipped
