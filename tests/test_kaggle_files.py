"""Reading Kaggle's train.csv / test.csv: fast path, zip, binary cache, and strict errors."""

from __future__ import annotations

import time
import zipfile

import numpy as np
import pytest
from helpers import FIXTURES

from digits.data.kaggle import TRAIN_HEADER, load_kaggle_csv, write_kaggle_csv
from digits.errors import DataError


def test_train_file_gives_images_and_labels():
    data = load_kaggle_csv(FIXTURES / "train.csv", kind="train")
    assert data.images.shape == (2000, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.shape == (2000,) and set(np.unique(data.labels)) == set(range(10))
    assert 0 < data.images.mean() < 60  # MNIST: mostly black background, ~33 mean


def test_test_file_has_no_labels():
    data = load_kaggle_csv(FIXTURES / "test.csv", kind="test")
    assert data.labels is None and data.images.shape == (500, 28, 28)


def test_write_then_read_round_trips(tmp_path):
    data = load_kaggle_csv(FIXTURES / "train.csv")
    write_kaggle_csv(tmp_path / "copy.csv", data.images[:50], data.labels[:50])
    again = load_kaggle_csv(tmp_path / "copy.csv")
    assert np.array_equal(again.images, data.images[:50]) and np.array_equal(again.labels, data.labels[:50])


def test_kaggle_zip_is_read_directly(tmp_path):
    archive = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(FIXTURES / "train.csv", "train.csv")
        zf.write(FIXTURES / "test.csv", "test.csv")
    train = load_kaggle_csv(archive, kind="train")
    test = load_kaggle_csv(archive, kind="test")
    assert len(train) == 2000 and len(test) == 500
    assert np.array_equal(train.images, load_kaggle_csv(FIXTURES / "train.csv").images)


def test_zip_without_the_member_is_an_error(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(DataError, match=r"other.zip: the zip holds no train.csv"):
        load_kaggle_csv(archive, kind="train")


def test_second_load_of_unchanged_file_comes_from_cache(tmp_path, isolated_cache):
    path = tmp_path / "train.csv"
    path.write_bytes((FIXTURES / "train.csv").read_bytes())
    first = load_kaggle_csv(path)
    assert list((isolated_cache / "csv").glob("*.npz")), "a binary cache entry is written"
    started = time.perf_counter()
    second = load_kaggle_csv(path)
    assert time.perf_counter() - started < 0.5
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)


def test_changed_file_is_read_again_not_served_stale(tmp_path):
    path = tmp_path / "train.csv"
    data = load_kaggle_csv(FIXTURES / "train.csv")
    write_kaggle_csv(path, data.images[:10], data.labels[:10])
    assert len(load_kaggle_csv(path)) == 10
    write_kaggle_csv(path, data.images[:20], data.labels[:20])
    assert len(load_kaggle_csv(path)) == 20


def test_asking_for_train_but_giving_test_is_an_error():
    with pytest.raises(DataError, match=r"test.csv: line 1: expected a train file"):
        load_kaggle_csv(FIXTURES / "test.csv", kind="train")


# --- one test per class of bad input: the message names the file, the line and the column ---

HEADER = ",".join(TRAIN_HEADER)
GOOD_ROW = "3," + ",".join(["0"] * 784)


def _row(label: str = "3", pixels: list[str] | None = None) -> str:
    return ",".join([label, *(pixels if pixels is not None else ["0"] * 784)])


def _pixels_with(index: int, value: str) -> list[str]:
    pixels = ["0"] * 784
    pixels[index] = value
    return pixels


BAD_FILES = {
    "empty file": (b"", r"bad.csv: empty file"),
    "not CSV text": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), r"bad.csv: not CSV text"),
    "missing header": (f"{GOOD_ROW}\n{GOOD_ROW}\n".encode(), r"bad.csv: line 1: expected the header"),
    "wrong header name": (HEADER.replace("pixel5,", "pixelX,").encode() + f"\n{GOOD_ROW}\n".encode(),
                          r"bad.csv: line 1, column 7: expected header 'pixel5', found 'pixelX'"),
    "wrong column count": (",".join(TRAIN_HEADER[:-1]).encode() + f"\n{GOOD_ROW}\n".encode(),
                           r"bad.csv: line 1: header has 784 columns, expected 785"),
    "short row": (f"{HEADER}\n{GOOD_ROW}\n{','.join(['3'] + ['0'] * 700)}\n".encode(),
                  r"bad.csv: line 3: short row, 701 values, expected 785"),
    "long row": (f"{HEADER}\n{GOOD_ROW},0\n".encode(), r"bad.csv: line 2: long row, 786 values, expected 785"),
    "non-integer": (f"{HEADER}\n{GOOD_ROW}\n{_row(pixels=_pixels_with(10, '1.5'))}\n".encode(),
                    r"bad.csv: line 3, column pixel10: '1.5' is not an integer"),
    "pixel above 255": (f"{HEADER}\n{_row(pixels=_pixels_with(783, '256'))}\n".encode(),
                        r"bad.csv: line 2, column pixel783: 256 is outside 0-255"),
    "negative pixel": (f"{HEADER}\n{_row(pixels=_pixels_with(0, '-1'))}\n".encode(),
                       r"bad.csv: line 2, column pixel0: -1 is outside 0-255"),
    "label outside 0-9": (f"{HEADER}\n{GOOD_ROW}\n{_row(label='10')}\n".encode(),
                          r"bad.csv: line 3, column label: 10 is outside 0-9"),
    "missing value": (f"{HEADER}\n{_row(pixels=_pixels_with(42, ''))}\n".encode(),
                      r"bad.csv: line 2, column pixel42: missing value"),
    "missing label": (f"{HEADER}\n{_row(label='')}\n".encode(), r"bad.csv: line 2, column label: missing value"),
    "blank line": (f"{HEADER}\n{GOOD_ROW}\n\n{GOOD_ROW}\n".encode(), r"bad.csv: line 3: empty line"),
    "header only": (f"{HEADER}\n".encode(), r"bad.csv: no rows after the header"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_names_file_line_and_column(tmp_path, case):
    content, message = BAD_FILES[case]
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_kaggle_csv(path)


@pytest.mark.parametrize("case", ["short row", "pixel above 255", "label outside 0-9", "not CSV text"])
def test_data_check_reports_bad_input_in_one_line_with_status_2(tmp_path, cli, case):
    path = tmp_path / "bad.csv"
    path.write_bytes(BAD_FILES[case][0])
    result = cli("data", "check", path)
    assert result.code == 2
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert str(path) in result.err


def test_error_deep_in_a_large_file_names_the_right_line(tmp_path):
    data = load_kaggle_csv(FIXTURES / "train.csv")
    path = tmp_path / "bad.csv"
    write_kaggle_csv(path, data.images, data.labels)
    lines = path.read_text().split("\n")
    lines[1501] = lines[1501].replace(",0,", ",x,", 1)
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"line 1502, column pixel\d+: 'x' is not an integer"):
        load_kaggle_csv(path, cache=False)


def test_windows_line_endings_are_accepted(tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes((FIXTURES / "train.csv").read_bytes().replace(b"\n", b"\r\n"))
    assert len(load_kaggle_csv(path)) == 2000


def test_data_check_prints_rows_and_label_counts(cli):
    result = cli("data", "check", FIXTURES / "train.csv")
    assert result.code == 0
    assert "train file, 2000 rows" in result.out and "labels: 0: 206, 1: 222" in result.out


def test_data_check_accepts_a_submission(cli):
    result = cli("data", "check", FIXTURES / "solution.csv")
    assert result.code == 0 and "submission, 500 rows" in result.out


def test_missing_file_is_one_line_error(cli, tmp_path):
    result = cli("data", "check", tmp_path / "nope.csv")
    assert result.code == 2 and "nope.csv: no such file" in result.err
