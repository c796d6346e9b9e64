"""Where the data files are: the file a command reads, found from its flags, or a message that
says what the path is instead and what to type next."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from digits.errors import DataError

DATA_FOLDER = "data"  # what `digits data prepare` and `make data` write, at the repository root


def not_a_file(path: str | os.PathLike[str]) -> str:
    """Why ``path`` is not a data file to read, in words ("no such file", "is a folder", ...);
    "" when it is a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a file; give the file itself (it is read more than once)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    return "is not a regular file"


def require_file(path: str | os.PathLike[str]) -> Path:
    """``path``, or a DataError saying what it is instead of a regular file."""
    reason = not_a_file(path)
    if reason:
        raise DataError(f"{path}: {reason}")
    return Path(path)


def find_data_folder(start: str | os.PathLike[str] | None = None, kind: str = "train") -> Path | None:
    """The nearest ``data/`` holding ``{kind}.csv`` in ``start`` (default: the working folder)
    or a folder above it, as from ``notebooks/`` or ``docs/`` in the repository; else None."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DATA_FOLDER / f"{kind}.csv").is_file():
            return folder / DATA_FOLDER
    return None


def prepare_hint(folder: str | os.PathLike[str]) -> str:
    """What to do when a data folder has no data yet."""
    make = f"make it with `digits data prepare --out {folder}` (`make data` at the repository root)"
    found = find_data_folder(kind="train")
    if found is not None and found.resolve() != Path(folder).resolve():
        return f"{make}; there is prepared data in {os.path.relpath(found)}: pass --data {os.path.relpath(found)}"
    return f"{make}, or pass --data DIR"


def data_file(file: str | os.PathLike[str] | None, folder: str | os.PathLike[str], kind: str) -> Path:
    """The ``{kind}.csv`` a command reads: ``--{kind} FILE`` when given, else the one in
    ``--data FOLDER``; a DataError that says what to pass instead otherwise."""
    if file:
        path = Path(file)
        if path.is_dir():
            inside = path / f"{kind}.csv"
            also = f" (or --{kind} {inside})" if inside.is_file() else ""
            raise DataError(f"{path}: is a folder, not a {kind} file; for the {kind}.csv in it, "
                            f"use --data {path}{also}")
        return require_file(path)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: is a file, not a folder; to read it, use --{kind} {folder}")
    path = folder / f"{kind}.csv"
    if not path.exists():
        raise DataError(f"{path}: no such file; {prepare_hint(folder)}")
    return require_file(path)


def locate_data_folder(given: str | os.PathLike[str] | None = None) -> Path:
    """``given``, or the nearest ``data/`` holding train.csv in the working folder or above it
    (so a notebook finds the repository's data from ``notebooks/`` as from the root); a
    DataError saying how to make it when there is none."""
    folder = Path(given) if given else find_data_folder()
    if folder is None:
        raise DataError(f"{DATA_FOLDER}/train.csv: not here ({Path.cwd()}) nor in a folder above; make it with "
                        "`make data` at the repository root (or `digits data prepare --out data`)")
    data_file(None, folder, "train")
    return folder
