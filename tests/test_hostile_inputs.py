"""Hostile or unlucky data files: zip bombs, signs, byte-order marks, header-only files, and
errors at the very end of a file, each refused (or read) with an exact one-line message."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES

from digits.data import kaggle
from digits.data.kaggle import load_kaggle_csv
from digits.data.submission import read_submission
from digits.errors import DataError, SubmissionError

BOM = "\ufeff".encode()


# --- zip bombs ---------------------------------------------------------------------------

def _zip_of_zeros(path: Path, member: str, size: int) -> None:
    """A real deflated member of ``size`` bytes of '0' characters, streamed in chunks."""
    chunk = b"0" * (1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open(member, "w", force_zip64=True) as fh:
        for _ in range(size // len(chunk)):
            fh.write(chunk)


def test_a_zip_member_that_inflates_a_thousand_fold_is_refused_before_it_is_inflated(tmp_path, cli):
    bomb = tmp_path / "digit-recognizer.zip"
    _zip_of_zeros(bomb, "train.csv", 64 * 1024 * 1024)
    assert bomb.stat().st_size < 1024 * 1024  # 64 MB of zeros deflate to well under a megabyte
    result = cli("data", "check", bomb)
    assert result.code == 2 and result.err.count("\n") == 1
    assert f"{bomb}: member train.csv would inflate" in result.err
    assert "times its compressed size, more than the 100:1 allowed" in result.err


def _forge_sizes(path: Path, uncompressed: int) -> None:
    """Rewrite the uncompressed size the zip's headers declare for its one member."""
    data = bytearray(path.read_bytes())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, uncompressed)
    struct.pack_into("<I", data, central + 24, uncompressed)
    path.write_bytes(bytes(data))


def test_a_zip_member_declaring_4_gb_is_refused_without_reading_it(tmp_path, cli):
    bomb = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(FIXTURES / "train.csv", "train.csv")
    _forge_sizes(bomb, 4 * 1024 ** 3 - 1)
    result = cli("data", "check", bomb)
    assert result.code == 2 and result.err.count("\n") == 1
    assert (f"{bomb}: member train.csv would inflate to 4,294,967,295 bytes, more than the "
            "1,073,741,824 allowed") in result.err


def test_a_zip_member_that_inflates_past_what_it_declares_is_refused(tmp_path):
    # The headers say 1 kB; the deflate stream holds the whole fixture. Reading stops at the
    # declared size and the checksum then disagrees: a broken zip, not a flood of bytes.
    bomb = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(FIXTURES / "train.csv", "train.csv")
    _forge_sizes(bomb, 1000)
    with pytest.raises(DataError, match=r"digit-recognizer.zip: broken zip file \(Bad CRC-32"):
        load_kaggle_csv(bomb, kind="train")


def test_an_honest_kaggle_zip_is_still_read(tmp_path):
    archive = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.write(FIXTURES / "train.csv", "train.csv")
    assert len(load_kaggle_csv(archive, kind="train")) == 2000


# --- signs, byte-order marks, header-only files ----------------------------------------------

def _fixture_with(line: int, column: int, value: str) -> bytes:
    lines = (FIXTURES / "train.csv").read_bytes().split(b"\n")
    fields = lines[line - 1].split(b",")
    fields[column] = value.encode()
    lines[line - 1] = b",".join(fields)
    return b"\n".join(lines)


@pytest.mark.parametrize("value", ["+0", "-0", "+7"])
def test_a_signed_field_is_named_by_line_and_column(tmp_path, value):
    path = tmp_path / "signed.csv"
    path.write_bytes(_fixture_with(1200, 301, value))
    with pytest.raises(DataError, match=rf"signed.csv: line 1200, column pixel300: '\{value}' has a sign; "
                                        r"expected digits only, 0-255"):
        load_kaggle_csv(path, cache=False)


def test_a_train_file_that_starts_with_a_byte_order_mark_is_read_as_kaggle_would(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(BOM + (FIXTURES / "train.csv").read_bytes())
    data = load_kaggle_csv(path, kind="train")
    assert np.array_equal(data.images, load_kaggle_csv(FIXTURES / "train.csv").images)


def test_a_header_that_differs_only_by_an_invisible_character_shows_it(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(BOM + BOM + (FIXTURES / "train.csv").read_bytes())  # one mark is read past, not two
    with pytest.raises(DataError, match=r"line 1: expected the header 'label,pixel0,\.\.\.,pixel783' \(train\) "
                                        r"or 'pixel0,\.\.\.,pixel783' \(test\), found '\\ufefflabel,pixel0"):
        load_kaggle_csv(path, cache=False)
    path.write_bytes((FIXTURES / "train.csv").read_bytes().replace(b"pixel9,", "pixel9\u200b,".encode(), 1))
    with pytest.raises(DataError, match=r"line 1, column 11: expected header 'pixel9', found 'pixel9\\u200b'"):
        load_kaggle_csv(path, cache=False)


def test_a_submission_with_a_byte_order_mark_is_read_as_kaggle_would(tmp_path, cli):
    path = tmp_path / "submission.csv"
    path.write_bytes(BOM + (FIXTURES / "solution.csv").read_bytes())
    assert np.array_equal(read_submission(path), read_submission(FIXTURES / "solution.csv"))
    result = cli("data", "check", path)
    assert result.code == 0 and "submission, 500 rows" in result.out


def test_a_header_only_submission_is_refused(tmp_path, cli):
    path = tmp_path / "submission.csv"
    path.write_text("ImageId,Label\n")
    with pytest.raises(SubmissionError, match=r"submission.csv: no rows after the header"):
        read_submission(path)
    result = cli("data", "check", path)
    assert result.code == 2 and result.err.count("\n") == 1 and "no rows after the header" in result.err


# --- the first error is found in bulk, and named exactly, wherever it is ----------------------

LAST = 2001  # the fixture's last line: header + 2,000 rows
DAMAGE = {  # what is written into the row, and the message for it
    "a letter": (lambda f: f.__setitem__(500, b"x"), "column pixel499: 'x' is not an integer"),
    "a space": (lambda f: f.__setitem__(500, b" 1"), "column pixel499: ' 1' is not an integer"),
    "a pixel of 256": (lambda f: f.__setitem__(784, b"256"), "column pixel783: 256 is outside 0-255"),
    "a pixel of 1000": (lambda f: f.__setitem__(1, b"1000"), "column pixel0: '1000...' (4 digits) is outside 0-255"),
    "a label of 10": (lambda f: f.__setitem__(0, b"10"), "column label: 10 is outside 0-9"),
    "an empty field": (lambda f: f.__setitem__(784, b""), "column pixel783: missing value"),
    "a short row": (lambda f: f.pop(), "short row, 784 values, expected 785"),
    "a long row": (lambda f: f.append(b"0"), "long row, 786 values, expected 785"),
    "a sign": (lambda f: f.__setitem__(3, b"+0"), "column pixel2: '+0' has a sign; expected digits only, 0-255"),
    "a decimal point": (lambda f: f.__setitem__(3, b"1.5"), "column pixel2: '1.5' is not an integer"),
}


def _damaged(line: int, damage, ending: bytes = b"\n", final_newline: bool = True) -> bytes:
    lines = (FIXTURES / "train.csv").read_bytes().rstrip(b"\n").split(b"\n")
    fields = lines[line - 1].split(b",")
    damage(fields)
    lines[line - 1] = b",".join(fields)
    return ending.join(lines) + (ending if final_newline else b"")


@pytest.mark.parametrize("line", [2, 1000, LAST])
@pytest.mark.parametrize("case", list(DAMAGE))
def test_the_first_error_is_named_by_its_exact_line_and_column_wherever_it_is(tmp_path, case, line):
    damage, message = DAMAGE[case]
    path = tmp_path / "bad.csv"
    path.write_bytes(_damaged(line, damage))
    with pytest.raises(DataError, match=rf"bad.csv: line {line}\b.*{message.split(':')[0]}") as refused:
        load_kaggle_csv(path, cache=False)
    assert str(refused.value) == f"{path}: line {line}{', ' if message.startswith('column') else ': '}{message}"


@pytest.mark.parametrize("ending, final_newline", [(b"\r\n", True), (b"\n", False), (b"\r\n", False)])
def test_an_error_on_the_last_line_is_exact_whatever_the_line_endings(tmp_path, ending, final_newline):
    path = tmp_path / "bad.csv"
    path.write_bytes(_damaged(LAST, DAMAGE["a pixel of 256"][0], ending, final_newline))
    with pytest.raises(DataError) as refused:
        load_kaggle_csv(path, cache=False)
    assert str(refused.value) == f"{path}: line {LAST}, column pixel783: 256 is outside 0-255"


def test_a_screened_row_that_is_fine_does_not_hide_the_real_error_after_it(tmp_path):
    # '0007' is flagged by the bulk screen (over 3 digits) but is a valid 7: the error is later.
    lines = _damaged(LAST, DAMAGE["a letter"][0]).split(b"\n")
    fields = lines[9].split(b",")
    fields[200] = b"0007"
    lines[9] = b",".join(fields)
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=rf"line {LAST}, column pixel499: 'x' is not an integer"):
        load_kaggle_csv(path, cache=False)


@pytest.mark.parametrize("chunk", [997, 8192, 100_000])
def test_errors_are_named_exactly_when_the_screen_splits_the_file_into_many_chunks(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(kaggle, "SCREEN_CHUNK", chunk)
    for line, case in [(2, "a label of 10"), (1317, "a short row"), (LAST, "an empty field")]:
        path = tmp_path / f"bad-{line}.csv"
        path.write_bytes(_damaged(line, DAMAGE[case][0]))
        with pytest.raises(DataError, match=rf"bad-{line}.csv: line {line}\b"):
            load_kaggle_csv(path, cache=False)


def test_a_blank_line_before_the_end_is_named(tmp_path):
    raw = (FIXTURES / "train.csv").read_bytes()
    path = tmp_path / "bad.csv"
    path.write_bytes(raw + b"\n" + raw.split(b"\n")[1] + b"\n")
    with pytest.raises(DataError, match=rf"bad.csv: line {LAST + 1}: empty line; expected 785 values"):
        load_kaggle_csv(path, cache=False)


def test_invalid_utf8_is_named_by_its_byte_offset(tmp_path):
    raw = (FIXTURES / "train.csv").read_bytes()
    path = tmp_path / "bad.csv"
    at = len(raw) - 10
    path.write_bytes(raw[:at] + b"\xe9" + raw[at + 1:])
    with pytest.raises(DataError, match=rf"bad.csv: not CSV text \(invalid UTF-8 at byte {at}\)"):
        load_kaggle_csv(path, cache=False)
