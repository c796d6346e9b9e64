"""Inputs that cannot be read, or hold what a parser refuses deep down, are one line and exit
status 2: an unreadable file, a 5,000-digit integer, a corrupt deflate stream in a zip."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest
from helpers import FIXTURES, train_fixture_run


def _one_line_error(result) -> str:
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and result.err.startswith("digits: error: "), result.err
    assert "Traceback" not in result.err
    return result.err


@pytest.fixture
def unreadable(tmp_path: Path) -> Path:
    """A regular file that opening for reading really refuses, for whoever runs the tests."""
    path = tmp_path / "locked.csv"
    shutil.copy(FIXTURES / "test.csv", path)
    path.chmod(0)
    try:
        open(path, "rb").close()
    except PermissionError:
        return path
    # Root reads any file whatever its mode; the kernel still refuses it another process's
    # memory where the container lacks CAP_SYS_PTRACE (a regular file in /proc).
    try:
        open("/proc/1/mem", "rb").read(1)
    except PermissionError:
        return Path("/proc/1/mem")
    except OSError:
        pass
    pytest.skip("no file here refuses to be read by this user (root reads any mode)")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_fixture_run(tmp_path_factory, epochs=1)


def test_data_check_of_an_unreadable_file_is_one_line(unreadable, cli):
    assert f"{unreadable}: Permission denied" in _one_line_error(cli("data", "check", unreadable))


def test_train_on_an_unreadable_file_is_one_line_and_leaves_no_run(unreadable, tmp_path, cli):
    err = _one_line_error(cli("train", "--train", unreadable, "--out", tmp_path / "run"))
    assert f"{unreadable}: Permission denied" in err and not (tmp_path / "run").exists()


def test_predict_on_an_unreadable_file_is_one_line_and_writes_nothing(unreadable, run, tmp_path, cli):
    err = _one_line_error(cli("predict", run, "--test", unreadable, "--out", tmp_path / "sub.csv"))
    assert f"{unreadable}: Permission denied" in err and not (tmp_path / "sub.csv").exists()


def test_score_of_an_unreadable_submission_is_one_line(unreadable, cli):
    err = _one_line_error(cli("score", unreadable, "--solution", FIXTURES / "solution.csv"))
    assert f"{unreadable}: Permission denied" in err


def test_a_5000_digit_pixel_names_file_line_and_column(tmp_path, cli):
    lines = (FIXTURES / "test.csv").read_text().splitlines(keepends=True)[:4]
    fields = lines[2].split(",")
    fields[7] = "9" * 5000
    lines[2] = ",".join(fields)
    bad = tmp_path / "test.csv"
    bad.write_text("".join(lines))
    err = _one_line_error(cli("data", "check", bad))
    assert f"{bad}: line 3, column pixel7: '99999999999999999999...' (5000 digits) is outside 0-255" in err


def test_a_5000_digit_image_id_in_a_submission_names_file_line_and_column(tmp_path, cli):
    bad = tmp_path / "submission.csv"
    bad.write_text("ImageId,Label\n1,3\n" + "2" * 5000 + ",4\n")
    err = _one_line_error(cli("data", "check", bad))
    assert f"{bad}: line 3, column ImageId: '22222222222222222222...' (5000 digits) is out of range" in err


def test_a_corrupt_deflate_stream_in_a_zip_is_one_line(tmp_path, cli):
    archive = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(FIXTURES / "train.csv", "train.csv")
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("train.csv")
    data = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the deflate stream
    for i in range(start + 100, start + 400):
        data[i] = 0xFF  # invalid block types and distances: zlib itself refuses them
    archive.write_bytes(bytes(data))
    err = _one_line_error(cli("train", "--train", archive, "--out", tmp_path / "run"))
    assert f"{archive}: broken zip file" in err and not (tmp_path / "run").exists()


def test_an_unreadable_input_is_named_even_when_read_inside_an_output_block(tmp_path):
    """digits.atomic names the output only for errors about the output; an input read in the
    same block keeps its own name."""
    from digits.atomic import atomic_path

    with pytest.raises(FileNotFoundError) as caught, atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes((tmp_path / "missing.bin").read_bytes())
    assert caught.value.filename == str(tmp_path / "missing.bin")
    assert os.listdir(tmp_path) == []
