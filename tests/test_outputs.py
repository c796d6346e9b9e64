"""Outputs go where the user names them, through FIFOs, devices, symlinks and stdout; a full,
read-only or missing destination is one line and exit status 2, with nothing half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FIXTURES, train_fixture_run

needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="mounting a tmpfs (a small or read-only disk) needs root")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained run (tutorial-mlp, 2 epochs on the fixture: a curve to draw) shared by this file's tests."""
    return train_fixture_run(tmp_path_factory, epochs=2)


def _one_line_error(result) -> str:
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and result.err.startswith("digits: error: "), result.err
    assert "Traceback" not in result.err
    return result.err


def _expected_submission(run: Path, cli, tmp_path: Path) -> str:
    reference = tmp_path / "reference.csv"
    assert cli("predict", run, "--test", FIXTURES / "test.csv", "--out", reference).code == 0
    return reference.read_text()


@contextlib.contextmanager
def _read_fifo(path: Path) -> Iterator[list[bytes]]:
    """A real reader on the FIFO at ``path``, in a thread; yields what it will have read."""
    got: list[bytes] = []

    def read() -> None:
        with open(path, "rb") as fh:
            got.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield got
    finally:
        if reader.is_alive():  # nothing was written: open it ourselves so the reader ends
            with open(path, "wb"):
                pass
        reader.join(timeout=30)


def _char_device(tmp_path: Path) -> Path:
    """A character device like /dev/null: a node made with mknod (as root) so a bug cannot
    destroy the machine's own /dev/null; the real one otherwise (which we cannot replace)."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        return Path("/dev/null")
    return node


# --- write through: FIFO, character device, symlink, stdout --------------------------------

def test_predict_out_onto_a_fifo_writes_through_it_instead_of_replacing_it(run, tmp_path, cli):
    expected = _expected_submission(run, cli, tmp_path)
    fifo = tmp_path / "submission.fifo"
    os.mkfifo(fifo)
    with _read_fifo(fifo) as got:
        result = cli("predict", run, "--test", FIXTURES / "test.csv", "--out", fifo)
    assert result.code == 0, result.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO is still a FIFO"
    assert got == [expected.encode()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.csv", "submission.fifo"], "no temp left"


def test_predict_out_onto_a_character_device_leaves_it_a_character_device(run, tmp_path, cli):
    device = _char_device(tmp_path)
    before = os.lstat(device)
    result = cli("predict", run, "--test", FIXTURES / "test.csv", "--out", device)
    assert result.code == 0, result.err
    after = os.lstat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    assert list(tmp_path.glob(".*.tmp")) == [], "no temporary file left"


def test_predict_out_onto_a_symlink_replaces_the_file_it_points_at_and_keeps_the_link(run, tmp_path, cli):
    expected = _expected_submission(run, cli, tmp_path)
    (tmp_path / "kept").mkdir()
    real = tmp_path / "kept" / "submission.csv"
    real.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(real)
    result = cli("predict", run, "--test", FIXTURES / "test.csv", "--out", link)
    assert result.code == 0, result.err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == expected
    assert sorted(p.name for p in real.parent.iterdir()) == ["submission.csv"], "no temp left"


@pytest.mark.parametrize("out", ["-", "/dev/stdout"])
def test_predict_out_to_stdout_writes_the_csv_there_and_nothing_else(run, tmp_path, cli, out):
    expected = _expected_submission(run, cli, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "digits.cli", "predict", str(run), "--test",
                           str(FIXTURES / "test.csv"), "--out", out], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected, "stdout carries the submission alone; messages go to stderr"
    assert "predicted 500 digits" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reference.csv"], "no file named - or stdout"


def test_out_to_stdout_with_json_is_refused_in_one_line(run, cli):
    err = _one_line_error(cli("predict", run, "--test", FIXTURES / "test.csv", "--out", "-", "--json"))
    assert "both write to standard output" in err


def test_report_onto_a_fifo_writes_the_self_contained_page_and_no_pngs_beside_it(run, tmp_path, cli):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    with _read_fifo(fifo) as got:
        result = cli("report", run, "--out", fifo)
    assert result.code == 0, result.err
    assert got and got[0].startswith(b"<!DOCTYPE html>") and b"data:image/png;base64," in got[0]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["report.fifo"], "no PNG beside a FIFO"


def test_export_onto_a_fifo_writes_the_onnx_model_through_it(run, tmp_path, cli):
    onnx = pytest.importorskip("onnx")
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    with _read_fifo(fifo) as got:
        result = cli("export", run, "--out", fifo)
    assert result.code == 0, result.err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    model = onnx.load_from_string(got[0])
    assert [i.name for i in model.graph.input] == ["pixels"]


def test_compare_out_onto_a_device_is_refused_in_one_line(run, tmp_path, cli):
    err = _one_line_error(cli("compare", run, "--out", _char_device(tmp_path)))
    assert "is not a folder" in err


# --- refused destinations -------------------------------------------------------------------

def test_predict_out_that_is_a_folder_is_one_line_naming_it(run, tmp_path, cli):
    err = _one_line_error(cli("predict", run, "--test", FIXTURES / "test.csv", "--out", tmp_path))
    assert f"{tmp_path}: is a folder; expected a file name" in err


def test_predict_out_under_a_file_is_one_line_naming_the_file(run, tmp_path, cli):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder\n")
    err = _one_line_error(cli("predict", run, "--test", FIXTURES / "test.csv",
                              "--out", blocker / "sub" / "submission.csv"))
    assert f"{blocker} is a file, not a folder" in err


def test_train_out_that_is_a_file_is_one_line(tmp_path, cli):
    blocker = tmp_path / "run"
    blocker.write_text("x")
    err = _one_line_error(cli("train", "--train", FIXTURES / "train.csv", "--epochs", "1", "--out", blocker))
    assert "exists and is not a folder" in err and blocker.read_text() == "x"


# --- full and read-only disks ---------------------------------------------------------------

@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path, leave: int = 0) -> None:
    """Fill the disk of ``folder`` until at most ``leave`` bytes are free."""
    with open(folder / "filler", "wb") as fh:
        while True:
            free = shutil.disk_usage(folder).free - leave
            if free <= 0:
                break
            try:
                fh.write(b"\0" * min(free, 1 << 16))
                fh.flush()
            except OSError:
                break


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a full disk) needs root")
    with _tmpfs(tmp_path / "full", "size=1m") as folder:
        yield folder


@needs_root
def test_train_on_a_full_disk_is_one_line_and_leaves_no_run_directory(tmp_path, full_disk, cli):
    _fill(full_disk, leave=16384)  # config.json fits, the first checkpoint (weights, RMSprop state) does not
    out = full_disk / "run"
    err = _one_line_error(cli("train", "--train", FIXTURES / "train.csv", "--epochs", "2", "--out", out))
    assert "No space left on device" in err
    assert [p.name for p in full_disk.iterdir()] == ["filler"], "no config.json, checkpoint/ or run directory"


@needs_root
def test_predict_on_a_full_disk_is_one_line_and_leaves_no_file(run, full_disk, cli):
    _fill(full_disk)
    out = full_disk / "submission.csv"
    err = _one_line_error(cli("predict", run, "--test", FIXTURES / "test.csv", "--out", out))
    assert f"{out}: cannot write it (No space left on device)" in err
    assert [p.name for p in full_disk.iterdir()] == ["filler"]


@needs_root
def test_score_on_a_full_disk_is_one_line(run, full_disk, cli):
    scored_run = full_disk / "run"
    scored_run.mkdir()
    for name in ("config.json", "model.json", "training_rows.npy"):  # what score checks the key against
        shutil.copy(run / name, scored_run / name)
    submission = scored_run / "submission.csv"
    assert cli("predict", run, "--test", FIXTURES / "test.csv", "--out", submission).code == 0
    _fill(full_disk)
    err = _one_line_error(cli("score", submission, "--solution", FIXTURES / "solution.csv"))
    assert "score.json: cannot write it (No space left on device)" in err
    assert not (scored_run / "score.json").exists()


@needs_root
def test_data_prepare_on_a_full_disk_is_one_line_and_leaves_no_folder(tmp_path, full_disk, cli):
    archive = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(FIXTURES / "train.csv", "train.csv")
        zf.write(FIXTURES / "test.csv", "test.csv")
    _fill(full_disk, leave=16384)
    out = full_disk / "data"
    err = _one_line_error(cli("data", "prepare", "--from", archive, "--out", out))
    assert "No space left on device" in err
    assert [p.name for p in full_disk.iterdir()] == ["filler"], "the folder the command created is gone"


@needs_root
def test_report_on_a_full_disk_leaves_no_png_behind(run, tmp_path, cli):
    trial = tmp_path / "trial"
    assert cli("report", run, "--out", trial / "report.html").code == 0
    curves = (trial / "curves.png").stat().st_size
    with _tmpfs(tmp_path / "small", "size=1m") as disk:
        _fill(disk, leave=curves + 4096)  # room for curves.png (written first), not for the rest
        out = disk / "report" / "report.html"
        err = _one_line_error(cli("report", run, "--out", out))
        assert "No space left on device" in err
        assert [p.name for p in disk.iterdir()] == ["filler"], "no curves.png, no empty report folder"


@needs_root
def test_predict_into_a_read_only_folder_is_one_line(run, tmp_path, cli):
    with _tmpfs(tmp_path / "ro", "size=1m,ro") as folder:
        err = _one_line_error(cli("predict", run, "--test", FIXTURES / "test.csv",
                                  "--out", folder / "submission.csv"))
        assert f"cannot write into {folder} (Read-only file system)" in err


# --- reproducible bytes ---------------------------------------------------------------------

def test_two_saves_of_identical_weights_are_byte_identical(run, tmp_path):
    import json
    import struct

    from digits.runs import load_model, save_model

    model, card = load_model(run)
    saved = []
    for i in range(8):  # the library's metadata order is random per save: 8 equal saves by chance is 1 in 128
        folder = tmp_path / str(i)
        save_model(folder, model, card.name, card.args)
        saved.append((folder / "model.safetensors").read_bytes())
    assert all(data == saved[0] for data in saved)
    (size,) = struct.unpack("<Q", saved[0][:8])
    metadata = json.loads(saved[0][8:8 + size])["__metadata__"]
    assert list(metadata) == sorted(metadata)
    reloaded, _ = load_model(tmp_path / "0")
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
