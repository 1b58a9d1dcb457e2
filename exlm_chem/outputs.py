"""Writing files so that nothing is lost: outputs checked before any work, written to a
temporary file and renamed into place only when complete."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

# Format suffixes that a derived output name drops (``screen.plate1.csv.gz`` -> ``screen.plate1``).
MOLECULE_SUFFIXES = (".csv", ".tsv", ".smi", ".smiles", ".txt", ".sdf", ".sd")
# Errors of the disk we write to, reported as one line naming the file.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def molecule_file_stem(path: Path) -> str:
    """The name without ``.gz`` and a molecule-format suffix; other dots are kept."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for suffix in MOLECULE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def check_writable_dir(directory: Path, what: str = "output") -> None:
    """Raise InputError unless ``directory`` exists and is writable."""
    if not directory.is_dir():
        raise InputError(f"{directory}: {what} folder does not exist")
    if not os.access(directory, os.W_OK):
        raise InputError(f"{directory}: {what} folder is not writable")


def same_file(a: Path, b: Path) -> bool:
    """True when two paths name one file: the same path, or through symbolic or hard links."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_output_file(path: Path, inputs=(), overwrite: bool = False) -> None:
    """Refuse, before any work, an output file that would destroy something.

    The output may not be one of ``inputs`` (a symlink to an input included), nor a folder;
    an existing file is replaced only with ``overwrite``; its folder must exist and be
    writable.
    """
    for source in inputs:
        if same_file(path, Path(source)):
            raise InputError(f"{path}: is the input file {source}; choose another output")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give an output file name")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists; pass --overwrite to replace it")
    check_writable_dir(path.parent if str(path.parent) else Path("."))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    On any exception (Ctrl-C and a full disk included) the temporary file is removed, so
    ``path`` is either the complete new file or untouched. Errors of the disk being written
    (full, read-only, over quota) become an InputError naming ``path``.
    """
    path = Path(path)
    check_writable_dir(path.parent if str(path.parent) else Path("."))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"{path}: cannot write there ({exc.strerror})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS or exc.errno in (errno.EISDIR, errno.ENOTDIR):
            raise InputError(f"{path}: cannot write ({exc.strerror})") from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class NpyAppender:
    """Writes a C-ordered ``.npy`` array row block by row block to an open file, without
    knowing the row count in advance: the header has room for any shape and is rewritten in
    place by `finish` (nothing is held in memory or copied)."""

    HEADER_BYTES = 128

    def __init__(self, handle, descr: str, row_shape: tuple[int, ...] = ()):
        self.handle, self.descr, self.row_shape, self.rows = handle, descr, row_shape, 0
        handle.write(self._header())

    def _header(self) -> bytes:
        shape = (self.rows, *self.row_shape)
        text = f"{{'descr': '{self.descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
        body = text.ljust(self.HEADER_BYTES - 10 - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")

    def append(self, data: bytes, rows: int) -> None:
        self.handle.write(data)
        self.rows += rows

    def finish(self) -> None:
        self.handle.seek(0)
        self.handle.write(self._header())
        self.handle.seek(0, os.SEEK_END)
