"""What a kill or an edit leaves behind is never taken for finished or current work: a
prepared folder is complete only once prepare.json is written (last), a rerun removes the
temporary files a killed prepare left, and the CSV cache follows the file's content."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from helpers import FIXTURES

from digits.errors import DataError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def kaggle_zip(tmp_path: Path) -> Path:
    archive = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(FIXTURES / "train.csv", "train.csv")
        zf.write(FIXTURES / "test.csv", "test.csv")
    return archive


def test_a_rerun_of_prepare_removes_the_temporary_files_a_killed_prepare_left(tmp_path, kaggle_zip, cli):
    out = tmp_path / "data"
    out.mkdir()
    # What digits.atomic leaves when a prepare is SIGKILLed mid-write: its temporary names.
    stale = [out / ".test.csv.k3j9x2.tmp", out / ".train.csv.a81kq0.tmp"]
    for path in stale:
        path.write_bytes(b"pixel0,pixel1\n0,")
    mine = out / ".notes.tmp"  # not one of prepare's files: left alone
    mine.write_text("keep")
    result = cli("data", "prepare", "--from", kaggle_zip, "--out", out)
    assert result.code == 0, result.err
    assert not any(path.exists() for path in stale)
    assert mine.read_text() == "keep"


def test_prepare_writes_its_completion_marker_last(tmp_path, kaggle_zip, cli):
    out = tmp_path / "data"
    assert cli("data", "prepare", "--from", kaggle_zip, "--out", out).code == 0
    marker = out / "prepare.json"
    assert marker.is_file()
    others = [p for p in out.iterdir() if p != marker]
    assert others and all(p.stat().st_mtime_ns <= marker.stat().st_mtime_ns for p in others)


def test_a_prepare_that_fails_over_a_finished_folder_leaves_it_marked_unfinished(tmp_path, kaggle_zip, cli):
    out = tmp_path / "data"
    assert cli("data", "prepare", "--from", kaggle_zip, "--out", out).code == 0
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("train.csv", "label,pixel0\n1,2\n")
        zf.writestr("test.csv", "pixel0\n2\n")
    result = cli("data", "prepare", "--from", broken, "--out", out)
    assert result.code == 2
    assert not (out / "prepare.json").exists(), "the folder no longer claims to be a finished prepare"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_data_redoes_a_folder_whose_prepare_never_finished(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(FIXTURES / "train.csv", folder / "train.csv")  # what a kill right after train.csv leaves
    stamp = tmp_path / "venv" / ".installed-stamp"
    stamp.parent.mkdir()
    stamp.touch()  # newer than the pins: make sees an installed venv and plans only the data

    def planned() -> str:
        return subprocess.run(["make", "-n", "-C", str(REPO), "data", f"DATA={folder}", f"VENV={stamp.parent}"],
                              capture_output=True, text=True, check=True).stdout

    assert f"data prepare --out {folder}" in planned()
    (folder / "prepare.json").write_text("{}\n")
    assert "data prepare" not in planned(), "a folder with its marker is done"


def test_an_edited_csv_with_its_mtime_put_back_is_not_read_from_the_stale_cache(tmp_path):
    from digits.data.kaggle import load_kaggle_csv

    path = tmp_path / "train.csv"
    shutil.copy(FIXTURES / "train.csv", path)
    first = load_kaggle_csv(path, kind="train")
    before = path.stat()
    lines = path.read_text().splitlines(keepends=True)
    label = lines[1][0]
    lines[1] = ("7" if label != "7" else "3") + lines[1][1:]  # same size: one label changed
    path.write_text("".join(lines))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as rsync -t or touch -r would
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    again = load_kaggle_csv(path, kind="train")
    assert int(again.labels[0]) == int(lines[1][0]) != int(first.labels[0])


def test_a_prepare_killed_half_way_is_finished_by_the_same_command(tmp_path):
    # What a SIGKILL after train.csv leaves: the files written so far and the started marker.
    from digits.data.prepare import STARTED_FILE, _refuse_other_split, _start_over

    out = tmp_path / "data"
    _start_over(out, 3)
    shutil.copy(FIXTURES / "train.csv", out / "train.csv")
    _refuse_other_split(out, 3)  # the same split: allowed, it finishes the folder
    with pytest.raises(DataError, match="unfinished prepare of the seed-3 split"):
        _refuse_other_split(out, 4)
    assert (out / STARTED_FILE).is_file()


def test_a_write_removes_the_copies_of_its_file_that_killed_writers_left_but_not_a_live_ones(tmp_path):
    import fcntl

    from digits.atomic import write_text

    dead = tmp_path / ".out.csv.d3adbeef.tmp"  # a writer killed mid-write: nobody holds its lock
    dead.write_text("half")
    alive = tmp_path / ".out.csv.a1ivea1i.tmp"  # a writer still at work holds its lock
    alive.write_text("in progress")
    with open(alive) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        write_text(tmp_path / "out.csv", "done\n")
        assert not dead.exists() and alive.exists()
    assert (tmp_path / "out.csv").read_text() == "done\n"
