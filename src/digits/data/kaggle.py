"""Kaggle's ``train.csv`` / ``test.csv``, read fast, validated strictly, cached in binary.

The fast path checks the bytes with NumPy and parses with polars under a fixed schema
(faster than pandas). Anything it does not accept goes to a line-by-line validator whose
only job is to say exactly what is wrong: the file, the line, the column, what was expected.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from digits.atomic import atomic_path
from digits.data.dataset import DigitSet
from digits.data.mnist import cache_dir
from digits.data.paths import require_file
from digits.errors import DataError, visible
from digits.limits import MAX_UNCOMPRESSED_BYTES, MAX_ZIP_RATIO, RATIO_CHECK_FROM_BYTES

PIXELS = tuple(f"pixel{i}" for i in range(784))
BOM = "\ufeff".encode()  # UTF-8 byte-order mark
CSV_BYTES = b"0123456789,\r\n"  # all a row of a Kaggle file may hold
NEWLINE, CR, COMMA = ord("\n"), ord("\r"), ord(",")
_CSV_BYTE = np.zeros(256, bool)
_CSV_BYTE[list(CSV_BYTES)] = True
TRAIN_HEADER = ("label", *PIXELS)
TEST_HEADER = PIXELS
CACHE_FORMAT = 2  # 2: keyed on the file's content



def load_kaggle_csv(path: str | os.PathLike[str], member: str | None = None, *,
                    kind: str | None = None, cache: bool = True) -> DigitSet:
    """Read a Kaggle train or test file (or one inside Kaggle's zip), validated.

    ``kind`` is ``"train"``, ``"test"`` or None for either (decided by the header).
    A repeated load of an unchanged file comes from a binary cache.

    >>> train = load_kaggle_csv("data/train.csv", kind="train")  # doctest: +SKIP
    >>> train.images.shape, train.labels[:3]                      # doctest: +SKIP
    ((42000, 28, 28), array([1, 0, 1]))
    """
    path = require_file(path)
    if member is None and zipfile.is_zipfile(path):
        member = "train.csv" if kind != "test" else "test.csv"
    origin = f"{path}:{member}" if member else str(path)
    key = _cache_key(path, member) if cache else None
    cached = _read_cache(key, origin) if key else None
    if cached is not None:
        _check_kind(cached, kind, origin)
        return cached
    data = parse_kaggle_bytes(_read_bytes(path, member), origin)
    _check_kind(data, kind, origin)
    if key:
        _write_cache(key, data)
    return data


def _read_bytes(path: Path, member: str | None) -> bytes:
    if member is None:
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as zf:
            names = {Path(n).name: n for n in zf.namelist()}
            if member not in names:
                raise DataError(f"{path}: the zip holds no {member} (it has {', '.join(sorted(names)) or 'nothing'})")
            return _inflate(zf, zf.getinfo(names[member]), f"{path}: member {member}")
    except (zipfile.BadZipFile, zlib.error) as exc:  # zlib.error: a corrupt deflate stream
        raise DataError(f"{path}: broken zip file ({exc})") from None


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
    """The member's bytes, refused before inflating when its declared size or compression
    ratio is that of a zip bomb, and cut off while inflating should it exceed the cap anyway."""
    if info.file_size > MAX_UNCOMPRESSED_BYTES:
        raise DataError(f"{where} would inflate to {info.file_size:,} bytes, more than the "
                        f"{MAX_UNCOMPRESSED_BYTES:,} allowed (Kaggle's train.csv is 77 MB); not a Kaggle file")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_CHECK_FROM_BYTES and ratio > MAX_ZIP_RATIO:
        raise DataError(f"{where} would inflate {ratio:,.0f} times its compressed size, more than the "
                        f"{MAX_ZIP_RATIO}:1 allowed (a zip bomb?); Kaggle's files compress about 8:1")
    chunks, total = [], 0
    with zf.open(info) as fh:
        # zipfile stops at the declared size; counting here as well keeps the cap binding
        # whatever a forged header or another zip implementation would let through.
        while chunk := fh.read(1 << 24):
            total += len(chunk)
            if total > MAX_UNCOMPRESSED_BYTES:
                raise DataError(f"{where} inflates past the {MAX_UNCOMPRESSED_BYTES:,} bytes allowed; "
                                "not a Kaggle file")
            chunks.append(chunk)
    return b"".join(chunks)


def _check_kind(data: DigitSet, kind: str | None, origin: str) -> None:
    if kind == "train" and not data.labelled:
        raise DataError(f"{origin}: line 1: expected a train file (header label,pixel0,...,pixel783), "
                        "found a test file")
    if kind == "test" and data.labelled:
        raise DataError(f"{origin}: line 1: expected a test file (header pixel0,...,pixel783), "
                        "found a train file with labels")


def parse_kaggle_bytes(raw: bytes, origin: str) -> DigitSet:
    """Parse the bytes of a train or test CSV; raise DataError naming line and column."""
    if raw.startswith(BOM):
        # Excel's "CSV UTF-8" starts with a byte-order mark; pandas, and so Kaggle, read past it.
        raw = raw[len(BOM):]
    if not raw or raw.isspace():
        raise DataError(f"{origin}: empty file; expected a header line and rows of digits")
    header_end = raw.find(b"\n")
    header_end = len(raw) if header_end < 0 else header_end
    header_bytes = raw[:header_end]
    header = tuple(header_bytes.decode("utf-8", "replace").strip().split(","))
    expected = TRAIN_HEADER if header[:1] == ("label",) else TEST_HEADER
    # Only digits, commas and line ends may reach polars, which would accept ' 1' or '+1'.
    # Deleting those from the whole file leaves the header's letters and nothing else (no
    # copy of the body is made: this is a 1 GB file's one pass before polars).
    only_csv = raw.translate(None, CSV_BYTES) == header_bytes.translate(None, CSV_BYTES)
    if header == expected and only_csv:
        table = _polars_parse(raw, expected)
        rows = raw.count(b"\n", header_end + 1) + (not raw.endswith(b"\n"))
        # A row count that disagrees with the newlines means polars skipped a blank line.
        if table is not None and len(table) == rows and _labels_in_range(table, expected):
            return _to_digitset(table, expected is TRAIN_HEADER, origin)
    find_first_error(raw, origin)
    raise DataError(f"{origin}: could not be read as a Kaggle CSV file")  # pragma: no cover


def _polars_parse(raw: bytes, header: tuple[str, ...]) -> np.ndarray | None:
    import polars as pl  # imported here: commands that never parse CSV start faster

    # UInt8 makes polars itself reject negatives and values above 255.
    schema = {name: pl.UInt8 for name in header}
    try:
        frame = pl.read_csv(io.BytesIO(raw), schema=schema, has_header=True)
    except Exception:  # noqa: BLE001 - any polars failure means: ask the precise validator
        return None
    if frame.height == 0 or frame.null_count().sum_horizontal().item() > 0:
        return None
    return frame.to_numpy()


def _labels_in_range(table: np.ndarray, header: tuple[str, ...]) -> bool:
    return header is not TRAIN_HEADER or int(table[:, 0].max()) <= 9


def _to_digitset(table: np.ndarray, has_label: bool, origin: str) -> DigitSet:
    pixels = table[:, 1:] if has_label else table
    images = np.ascontiguousarray(pixels).reshape(-1, 28, 28)
    labels = table[:, 0].astype(np.int64) if has_label else None
    return DigitSet(images, labels, origin)


def find_first_error(raw: bytes, origin: str) -> None:
    """Raise a DataError for the first problem in the file: its line, column and what was expected.

    The rows are screened in bulk with NumPy (:func:`_suspect_lines`), and only the lines
    the screen flags are checked one by one, so locating an error on the last line of a 1 GB
    file costs about what parsing it would, not a Python loop over every field."""
    if b"\x00" in raw[:65536]:
        raise DataError(f"{origin}: not CSV text (binary data); expected Kaggle's train.csv or test.csv")
    header_end = raw.find(b"\n")
    header_end = len(raw) if header_end < 0 else header_end
    header = _decoded(raw, 0, header_end, origin).rstrip("\r").split(",")
    expected = TRAIN_HEADER if header[:1] == ["label"] else TEST_HEADER
    _check_header(header, expected, origin)
    if header_end + 1 >= len(raw):
        raise DataError(f"{origin}: no rows after the header")
    for number, start, end in _suspect_lines(raw, header_end + 1, expected):
        _check_row(_decoded(raw, start, end, origin).rstrip("\r"), number, expected, origin)


def _decoded(raw: bytes, start: int, end: int, origin: str) -> str:
    try:
        return raw[start:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{origin}: not CSV text (invalid UTF-8 at byte {start + exc.start})") from None


SCREEN_CHUNK = 8 * 1024 * 1024  # bytes screened at once: NumPy's temporaries stay near 100 MB


def _suspect_lines(raw: bytes, start: int, expected: tuple[str, ...]) -> Iterator[tuple[int, int, int]]:
    """(line number, start, end) of every row that may be wrong, in file order, screened in
    chunks of whole lines. A superset: every row :func:`_check_row` would refuse is among
    them (a byte other than a digit, comma or line end, a wrong number of fields, an empty
    field, a field over 3 digits or above 255, a label over 1 digit); a flagged row that is
    fine (``007``) is simply checked and passed."""
    data = np.frombuffer(raw, np.uint8)
    number = 2  # the first row is line 2
    while start < len(raw):
        end = min(start + SCREEN_CHUNK, len(raw))
        if end < len(raw):  # end the chunk after a newline, so no row is split
            newline = raw.rfind(b"\n", start, end)
            end = newline + 1 if newline >= 0 else (raw.find(b"\n", end) + 1 or len(raw))
        ends, flagged = _screen(data[start:end], raw[start:end], len(expected), expected is TRAIN_HEADER)
        begins = np.concatenate(([0], ends[:-1] + 1))
        for line in np.flatnonzero(flagged):
            yield number + int(line), start + int(begins[line]), start + int(ends[line])
        number += len(ends)
        start = end


def _screen(chunk: np.ndarray, text: bytes, columns: int, labelled: bool) -> tuple[np.ndarray, np.ndarray]:
    """The end offset of each line of ``chunk`` (``text``'s bytes; its newline, or the chunk's
    end) and whether the line is suspect."""
    if chunk[-1] != NEWLINE:
        chunk = np.append(chunk, np.uint8(NEWLINE))  # the file's last row, without a final newline
    is_end = chunk == NEWLINE
    ends = np.flatnonzero(is_end)
    flagged = np.zeros(len(ends), bool)

    def flag(positions: np.ndarray) -> None:
        flagged[np.searchsorted(ends, positions)] = True  # the line each position lies in

    if text.translate(None, CSV_BYTES):  # any other byte at all (one C pass to find out)
        flag(np.flatnonzero(~_CSV_BYTE[chunk]))
    stops = np.flatnonzero(is_end | (chunk == COMMA))  # where each field ends
    last = np.flatnonzero(is_end[stops])  # per line: the index in stops of its end, and of its first field
    first = np.concatenate(([0], last[:-1] + 1))
    flagged |= last - first + 1 != columns
    digits_end = stops.copy()
    if b"\r" in text:
        crlf = np.flatnonzero((ends > 0) & (chunk[ends - 1] == CR))
        digits_end[last[crlf]] -= 1  # the \r of a \r\n is no part of the last field
        cr = np.flatnonzero(chunk == CR)
        flag(cr[chunk[cr + 1] != NEWLINE])  # a \r inside a row
    lengths = digits_end - np.concatenate(([-1], stops[:-1])) - 1
    flag(stops[(lengths < 1) | (lengths > 3)])  # empty fields and empty lines; 4+ digits
    three = np.flatnonzero(lengths == 3)  # above 255 needs 3 digits: compare them as text
    at = digits_end[three]
    hundreds, tens, units = chunk[at - 3], chunk[at - 2], chunk[at - 1]
    two, five = ord("2"), ord("5")
    over = (hundreds > two) | ((hundreds == two) & ((tens > five) | ((tens == five) & (units > five))))
    flag(stops[three[over]])
    if labelled:
        flagged |= lengths[first] != 1  # a label is one digit
    return ends, flagged


def _check_header(header: list[str], expected: tuple[str, ...], origin: str) -> None:
    where = f"{origin}: line 1"
    if header[0] not in ("label", "pixel0"):
        raise DataError(f"{where}: expected the header 'label,pixel0,...,pixel783' (train) or "
                        f"'pixel0,...,pixel783' (test), found '{visible(','.join(header)[:40])}'")
    if len(header) != len(expected):
        raise DataError(f"{where}: header has {len(header)} columns, expected {len(expected)}")
    for col, (got, want) in enumerate(zip(header, expected), start=1):
        if got != want:
            raise DataError(f"{where}, column {col}: expected header '{want}', found '{visible(got)}'")



def _check_row(line: str, number: int, expected: tuple[str, ...], origin: str) -> None:
    where = f"{origin}: line {number}"
    if line.strip() == "":
        raise DataError(f"{where}: empty line; expected {len(expected)} values")
    fields = line.split(",")
    if len(fields) != len(expected):
        kind = "short" if len(fields) < len(expected) else "long"
        raise DataError(f"{where}: {kind} row, {len(fields)} values, expected {len(expected)}")
    for name, field in zip(expected, fields):
        if field == "":
            raise DataError(f"{where}, column {name}: missing value")
        if not _is_integer(field):
            raise DataError(f"{where}, column {name}: '{field[:20]}' is not an integer")
        high = 9 if name == "label" else 255
        if len(field.lstrip("+-0")) > 3:  # out of range; int() would refuse past 4,300 digits
            raise DataError(f"{where}, column {name}: '{field[:20]}...' ({len(field)} digits) is outside 0-{high}")
        if not 0 <= int(field) <= high:
            raise DataError(f"{where}, column {name}: {int(field)} is outside 0-{high}")
        if field[0] in "+-":  # in range, but Kaggle's files hold digits only
            raise DataError(f"{where}, column {name}: '{field[:20]}' has a sign; "
                            f"expected digits only, 0-{high}")


def _is_integer(field: str) -> bool:
    digits = field[1:] if field[:1] in "+-" else field
    return digits.isascii() and digits.isdigit()


# --- writing ------------------------------------------------------------------------------

def write_kaggle_csv(target: str | os.PathLike[str], images: np.ndarray,
                     labels: np.ndarray | None) -> Path:
    """Write images (and labels, for a train file) in Kaggle's CSV format, atomically."""
    import polars as pl

    flat = images.reshape(len(images), 784)
    columns = {} if labels is None else {"label": np.asarray(labels, np.uint8)}
    columns.update({name: flat[:, i] for i, name in enumerate(PIXELS)})
    with atomic_path(target) as tmp:
        pl.DataFrame(columns).write_csv(tmp)
    return Path(target)


# --- binary cache -------------------------------------------------------------------------

def _cache_key(path: Path, member: str | None) -> str:
    # Keyed on the bytes, not on the path and mtime: a file edited with its mtime put back
    # (rsync -t, touch -r, a restored backup) must not be read from a stale cache. SHA-256
    # (OpenSSL, with the CPU's SHA instructions where it has them) hashed faster here than
    # BLAKE2b or MD5, and far faster than polars parses the file.
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return f"{CACHE_FORMAT}-{member or ''}-{digest.hexdigest()[:32]}".replace("/", "_")


def _cache_file(key: str) -> Path:
    return cache_dir() / "csv" / f"{key}.npz"


def _read_cache(key: str, origin: str) -> DigitSet | None:
    file = _cache_file(key)
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            labels = z["labels"] if "labels" in z.files else None
            return DigitSet(z["images"], labels, origin)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, DataError):
        return None  # a damaged cache entry is re-made from the CSV


def _write_cache(key: str, data: DigitSet) -> None:
    arrays = {"images": data.images}
    if data.labels is not None:
        arrays["labels"] = data.labels
    try:
        with atomic_path(_cache_file(key)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError:
        pass  # a cache that cannot be written only costs speed
