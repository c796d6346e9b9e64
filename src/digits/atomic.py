"""Atomic file output: write to a temporary file beside the target, then rename.

A crash or an error half-way leaves either the old file or nothing, never half a file.

Outputs are written *through* what the user names, never over it: a symlink's file is
replaced (the link stays a link), while a FIFO, a character device (``/dev/null``, a
terminal) or standard output (``-``, ``/dev/stdout``) receives the finished bytes in one
go, since a rename onto one of those would replace the node itself. A folder, a block
device or a socket is refused with a one-line :class:`~digits.errors.OutputError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from digits.errors import OutputError

STDOUT = "-"  # as an output file name: standard output

Target = Literal["file", "stream", "stdout"]
# Errors that mean "the output could not be written" whichever call in the block raised them.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def is_stdout(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names this process's standard output: ``-``, or a path to the very
    file descriptor 1 is open on (``/dev/stdout``, ``/dev/fd/1``)."""
    if os.fspath(target) == STDOUT:
        return True
    try:
        named, out = os.stat(target), os.fstat(1)
    except (OSError, ValueError):
        return False
    return (named.st_dev, named.st_ino) == (out.st_dev, out.st_ino)


def output_kind(target: str | os.PathLike[str]) -> Target:
    """How ``target`` is written: ``file`` (atomic replace; also a new path or a symlink to a
    file), ``stream`` (a FIFO or character device, written into) or ``stdout``. Raises
    OutputError for a folder, a block device, a socket, or a path under a file."""
    if is_stdout(target):
        return "stdout"
    try:
        mode = os.stat(target).st_mode  # follows a symlink to what it names
    except FileNotFoundError:
        return "file"
    except NotADirectoryError:
        raise OutputError(f"{target}: cannot be created: {_blocking_file(Path(target))} is a file, "
                          "not a folder") from None
    except OSError as exc:
        raise OutputError(f"{target}: cannot be written ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return "stream"
    if stat.S_ISDIR(mode):
        raise OutputError(f"{target}: is a folder; expected a file name")
    what = "block device" if stat.S_ISBLK(mode) else "socket" if stat.S_ISSOCK(mode) else "special file"
    raise OutputError(f"{target}: is a {what}; refusing to write into it")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; once the block succeeds, its file becomes ``target``.

    The caller writes the file at the yielded path by any means (a library's ``save``,
    ``open``...). A regular file (or a new path) is replaced by a rename, so it is whole or
    untouched; a symlink's file is replaced, not the link. A FIFO, a character device or
    standard output gets the finished bytes written into it. If the block raises, the
    temporary file is removed and ``target`` is untouched. Failures to write (no space, a
    read-only disk, a path under a file) raise OutputError naming ``target``.
    """
    kind = output_kind(target)
    if kind == "file":
        with _replacing(Path(target)) as tmp:
            yield tmp
    else:
        with _writing_through(Path(target), kind) as tmp:
            yield tmp


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    final = Path(os.path.realpath(target)) if target.is_symlink() else target
    _make_folder(final.parent, target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write into {final.parent} ({exc.strerror or exc})") from None
    _lock(fd)  # held while writing: a later writer of the same file knows this one is alive
    tmp_path = Path(tmp)
    try:
        with _named_write_errors(target, tmp_path):
            yield tmp_path
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, final)
        _remove_dead_writers(final)
    finally:
        os.close(fd)
        tmp_path.unlink(missing_ok=True)


def _lock(fd: int, wait: bool = True) -> bool:
    """An exclusive flock on ``fd`` (False when ``wait`` is off and another holds it)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock, so no leftovers are ever taken for dead
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


def _remove_dead_writers(final: Path) -> None:
    """Remove the temporary copies of ``final`` that writers killed mid-write left (a SIGKILL
    runs no clean-up): those whose lock nobody holds any more. A live writer's copy is locked."""
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _lock(fd, wait=False):
                stale.unlink(missing_ok=True)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _writing_through(target: Path, kind: Target) -> Iterator[Path]:
    # The whole file is made first (in the system's temporary folder: /dev is no place for
    # it), so a reader never sees half of it and libraries that read back what they wrote
    # (ONNX export) work unchanged; then its bytes are copied into the target.
    fd, tmp = tempfile.mkstemp(prefix=f"digits-{target.name or 'stdout'}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _named_write_errors(target, tmp_path):
            yield tmp_path
            with open(tmp_path, "rb") as src:
                if kind == "stdout":
                    sys.stdout.flush()
                    shutil.copyfileobj(src, sys.stdout.buffer)
                    sys.stdout.buffer.flush()
                else:
                    with open(target, "wb") as out:  # no truncation or rename on a FIFO or device
                        shutil.copyfileobj(src, out)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _named_write_errors(target: Path, tmp: Path) -> Iterator[None]:
    """An OSError about the temporary file (or a full or read-only disk) names ``target``."""
    try:
        yield
    except OSError as exc:
        if exc.filename not in (None, str(tmp), tmp, str(target)) and exc.errno not in _WRITE_ERRNOS:
            raise  # about another file (an input read inside the block): its own message
        raise OutputError(f"{target}: cannot write it ({exc.strerror or exc})") from None


def _make_folder(folder: Path, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{target}: cannot be created: {_blocking_file(folder)} is a file, "
                          "not a folder") from None
    except OSError as exc:
        raise OutputError(f"{target}: cannot create the folder {folder} ({exc.strerror or exc})") from None


def _blocking_file(path: Path) -> Path:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) that is not a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate if not candidate.is_dir() else path
    return path


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically and return the target path."""
    return write_bytes(target, text.encode("utf-8"))


def remove_leftovers(folder: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Remove the temporary files a write of ``names`` (file names or glob patterns) into
    ``folder`` left when its process was killed (a SIGKILL runs no clean-up); return them. Only
    this module's own temporary names (``.NAME.XXXXXXXX.tmp``) of the files named are touched."""
    removed = []
    for name in names:
        for stale in Path(folder).glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed
