"""MNIST and CIFAR-10 loaders (repro/datasets), and the ResNet paper's augmentation (papers/resnet_cifar/data.py).

The real MNIST test split comes from ../shared/data/mnist (skipped when absent);
everything else is small synthetic files in the official formats, written here.
No test needs the internet: download failures are forced with an unroutable URL,
and the download success path is served from a local HTTP server.
"""
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import re
import struct
import tarfile
import threading
import time

import numpy as np
import pytest

from conftest import shared_file
from repro.papers.resnet_cifar import data as resnet_data
from repro.datasets import cifar10 as cifar
from repro.datasets import mnist
from repro.datasets.download import resolve_data_dir
from repro.errors import ReproError

DEAD_URL = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused at once


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback URLs must not go through a proxy set in the environment."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def one_line_error(excinfo):
    msg = str(excinfo.value)
    assert type(excinfo.value) is ReproError
    assert "\n" not in msg and msg
    return msg


def md5_of(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


# ---- MNIST helpers

def write_idx_images(path, images):
    n, rows, cols = images.shape
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path, labels):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + np.asarray(labels, np.uint8).tobytes())


def synthetic_mnist(folder, split="train", n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=n)
    os.makedirs(folder, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    write_idx_images(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), x)
    write_idx_labels(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), y)
    return x, y


# ---- MNIST: the real test split

def test_real_mnist_test_split_loads_with_the_official_md5(tmp_path):
    images = shared_file("mnist", "t10k-images-idx3-ubyte.gz")
    labels = shared_file("mnist", "t10k-labels-idx1-ubyte.gz")
    for src in (images, labels):  # links made at test time; the data is never copied into the repo
        os.symlink(src, tmp_path / os.path.basename(src))

    x, y = mnist.load_mnist("test", data_dir=str(tmp_path), download=False, verify_md5=True)

    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.int64
    assert y.min() == 0 and y.max() == 9
    with gzip.open(labels, "rb") as f:
        raw = f.read()
    magic, count = struct.unpack(">II", raw[:8])
    assert (magic, count) == (2049, 10000)
    assert y[0] == raw[8]  # the first label byte of the idx file (a 7)
    np.testing.assert_array_equal(y, np.frombuffer(raw[8:], np.uint8))
    with gzip.open(images, "rb") as f:
        head = f.read(16 + 28 * 28)
    assert struct.unpack(">IIII", head[:16]) == (2051, 10000, 28, 28)
    np.testing.assert_array_equal(x[0], np.frombuffer(head[16:], np.uint8).reshape(28, 28))


# ---- MNIST: synthetic files in the real format

def test_synthetic_train_split_round_trips(tmp_path):
    x0, y0 = synthetic_mnist(tmp_path, "train", n=200)
    x, y = mnist.load_mnist("train", data_dir=str(tmp_path), download=False, verify_md5=False)
    assert x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


def test_wrong_md5_is_one_line_naming_the_file(tmp_path):
    synthetic_mnist(tmp_path, "train", n=100)
    path = str(tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(ReproError) as e:  # verify_md5 is on by default
        mnist.load_mnist("train", data_dir=str(tmp_path))
    msg = one_line_error(e)
    assert msg == (f"{path}: md5 {md5_of(path)} is not the official f68b3c2dcbeaaa9fbdd348bbdeb94873 "
                   "(a damaged or different file); delete it to download again")


def test_missing_file_without_download(tmp_path):
    with pytest.raises(ReproError) as e:
        mnist.load_mnist("train", data_dir=str(tmp_path), download=False)
    msg = one_line_error(e)
    assert msg.startswith(f"MNIST train images not found: {tmp_path / 'train-images-idx3-ubyte.gz'}")
    assert "REPRO_DATA_DIR" in msg and "failed" not in msg
    assert os.listdir(tmp_path) == []


def test_missing_file_with_a_failing_download_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "URL_PREFIX", DEAD_URL)
    folder = tmp_path / "new" / "mnist"
    t0 = time.monotonic()
    with pytest.raises(ReproError) as e:
        mnist.load_mnist("test", data_dir=str(folder), download=True)
    assert time.monotonic() - t0 < 10
    msg = one_line_error(e)
    assert msg.startswith(f"MNIST test images not found: {folder / 't10k-images-idx3-ubyte.gz'}, "
                          f"and downloading {DEAD_URL}t10k-images-idx3-ubyte.gz failed (")
    assert "REPRO_DATA_DIR" in msg
    assert os.listdir(tmp_path) == []  # no partial file, and the folders it made are gone again


def test_repro_data_dir_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    x0, y0 = synthetic_mnist(tmp_path / "mnist", "test", n=100, seed=3)
    x, y = mnist.load_mnist("test", download=False, verify_md5=False)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    with pytest.raises(ReproError, match=re.escape(f"not found: {tmp_path / 'mnist' / 'train-images-idx3-ubyte.gz'}")):
        mnist.load_mnist("train", download=False)
    # the argument wins over the variable; without either, ~/.cache/repro/<name>
    assert resolve_data_dir("/elsewhere", mnist.SUBDIR) == "/elsewhere"
    monkeypatch.delenv("REPRO_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(None, mnist.SUBDIR) == str(tmp_path / "home" / ".cache" / "repro" / "mnist")
    assert resolve_data_dir(None, cifar.SUBDIR) == str(tmp_path / "home" / ".cache" / "repro" / "cifar")


def test_bad_split_and_bad_files_are_one_line(tmp_path):
    with pytest.raises(ReproError, match="split must be 'train' or 'test'"):
        mnist.load_mnist("val", data_dir=str(tmp_path))
    synthetic_mnist(tmp_path, "train", n=100)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(labels, "wb") as f:  # an image header where labels belong
        f.write(struct.pack(">IIII", 2051, 100, 28, 28))
    with pytest.raises(ReproError) as e:
        mnist.load_mnist("train", data_dir=str(tmp_path), verify_md5=False)
    assert "idx magic 2051 is not 2049" in one_line_error(e)
    labels.write_bytes(b"not gzip at all")
    with pytest.raises(ReproError) as e:
        mnist.load_mnist("train", data_dir=str(tmp_path), verify_md5=False)
    assert "not a readable gzip file" in one_line_error(e)
    write_idx_labels(labels, np.zeros(100))
    images = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(images, "wb") as f:  # the header promises 100 images, the body holds 1
        f.write(struct.pack(">IIII", 2051, 100, 28, 28) + bytes(784))
    with pytest.raises(ReproError) as e:
        mnist.load_mnist("train", data_dir=str(tmp_path), verify_md5=False)
    assert "cannot read MNIST train" in one_line_error(e)


@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server for tmp_path/'served'; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_download_checks_md5_then_moves_into_place(tmp_path, monkeypatch, http_folder):
    served, url = http_folder
    x0, y0 = synthetic_mnist(served, "test", n=100, seed=7)
    files = dict(mnist.FILES)
    for kind in ("images", "labels"):
        name, _ = files[("test", kind)]
        files[("test", kind)] = (name, md5_of(served / name))
    monkeypatch.setattr(mnist, "URL_PREFIX", url)
    monkeypatch.setattr(mnist, "FILES", files)

    dest = tmp_path / "dest"
    x, y = mnist.load_mnist("test", data_dir=str(dest))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    assert sorted(os.listdir(dest)) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]

    # a served file whose md5 is not the official one is refused and nothing is left behind
    (dest / "t10k-images-idx3-ubyte.gz").unlink()
    files[("test", "images")] = ("t10k-images-idx3-ubyte.gz", "0" * 32)
    with pytest.raises(ReproError) as e:
        mnist.load_mnist("test", data_dir=str(dest))
    assert f"the downloaded file's md5 {md5_of(served / 't10k-images-idx3-ubyte.gz')} is not the official " \
           f"{'0' * 32}" in one_line_error(e)
    assert os.listdir(dest) == ["t10k-labels-idx1-ubyte.gz"]


# ---- CIFAR-10 helpers

def batch_pickle(data, labels):
    return pickle.dumps({b"batch_label": b"synthetic", b"labels": list(labels), b"data": data,
                         b"filenames": [b"x.png"] * len(labels)}, protocol=2)


def py2_batch_pickle(data, labels):
    """The batch as Python 2's cPickle wrote the official files: str opcodes, numpy.core paths."""
    def s(b):
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    k, n = data.shape
    out = b"\x80\x02}(" + s(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s(b"b") + b"\x87R"
    out += b"(K\x01M" + struct.pack("<H", k) + b"M" + struct.pack("<H", n) + b"\x86"
    out += b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R"
    out += b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89" + s(data.tobytes()) + b"tb"
    out += s(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"eu."
    return out


def write_cifar_tar(path, members):
    """members: {batch name: pickle bytes}, written under cifar-10-batches-py/ in the given order."""
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def synthetic_cifar(folder, k=4, pickler=batch_pickle):
    """A tiny archive: 5 train batches and a test batch of k images; image j of batch b has
    every byte of its R plane = 10*b + j, G = 100 + that, B = 200 - that, and label (b + j) % 10."""
    os.makedirs(folder, exist_ok=True)
    arrays = {}
    for b, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                              "data_batch_5", "test_batch"]):
        v = (10 * b + np.arange(k)).astype(np.uint8)[:, None]
        data = np.concatenate([np.repeat(v, 1024, 1), np.repeat(100 + v, 1024, 1), np.repeat(200 - v, 1024, 1)], 1)
        data[:, 1024 + 5 * 32 + 7] = 255  # one marked pixel: G plane, row 5, column 7
        arrays[name] = (np.ascontiguousarray(data, dtype=np.uint8), [(b + j) % 10 for j in range(k)])
    order = ["test_batch", "data_batch_3", "data_batch_1", "data_batch_5", "data_batch_2", "data_batch_4"]
    members = {"batches.meta": pickle.dumps({b"label_names": [b"airplane"]}, protocol=2)}
    members.update({n: pickler(*arrays[n]) for n in order})  # tar order is not batch order
    path = os.path.join(folder, "cifar-10-python.tar.gz")
    write_cifar_tar(path, members)
    return path, arrays


# ---- CIFAR-10

@pytest.mark.parametrize("pickler", [batch_pickle, py2_batch_pickle], ids=["py3-protocol2", "py2-cpickle"])
def test_cifar_layout_channel_and_label_order(tmp_path, pickler):
    _, arrays = synthetic_cifar(tmp_path, k=4, pickler=pickler)
    x, y = cifar.load_cifar10("train", data_dir=str(tmp_path), download=False, verify_md5=False)
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8
    assert y.shape == (20,) and y.dtype == np.int64
    assert y.tolist() == [(b + j) % 10 for b in range(5) for j in range(4)]  # data_batch_1..5, in order
    for i in range(20):
        b, j = divmod(i, 4)
        r = 10 * b + j
        assert (x[i, 0] == r).all() and (x[i, 2] == 200 - r).all()  # R plane first, then G, then B
        g = np.full((32, 32), 100 + r, np.uint8)
        g[5, 7] = 255  # row-major within a plane
        np.testing.assert_array_equal(x[i, 1], g)
    xt, yt = cifar.load_cifar10("test", data_dir=str(tmp_path), download=False, verify_md5=False)
    assert xt.shape == (4, 3, 32, 32) and yt.tolist() == [5, 6, 7, 8]
    np.testing.assert_array_equal(xt.reshape(4, 3072), arrays["test_batch"][0])


def test_cifar_batch_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2)
    good = batch_pickle(np.zeros((1, 3072), np.uint8), [0])
    members = {f"data_batch_{i}": good for i in range(1, 6)}
    members["data_batch_3"] = evil
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", members)
    with pytest.raises(ReproError) as e:
        cifar.load_cifar10("train", data_dir=str(tmp_path), verify_md5=False)
    msg = one_line_error(e)
    assert "cifar-10-batches-py/data_batch_3: not a plain CIFAR-10 batch" in msg
    assert f"refusing to load {os.system.__module__}.system" in msg
    assert not marker.exists()


def test_cifar_missing_wrong_md5_and_incomplete_archives(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "CIFAR10_URL", DEAD_URL + "cifar-10-python.tar.gz")
    path = tmp_path / "cifar-10-python.tar.gz"
    with pytest.raises(ReproError) as e:
        cifar.load_cifar10("train", data_dir=str(tmp_path), download=False)
    msg = one_line_error(e)
    assert msg.startswith(f"CIFAR-10 archive not found: {path} (") and "REPRO_DATA_DIR" in msg
    with pytest.raises(ReproError) as e:
        cifar.load_cifar10("train", data_dir=str(tmp_path), download=True)
    msg = one_line_error(e)
    assert msg.startswith(f"CIFAR-10 archive not found: {path}, and downloading {DEAD_URL}cifar-10-python.tar.gz "
                          "failed (") and "REPRO_DATA_DIR" in msg
    assert os.listdir(tmp_path) == []

    synthetic_cifar(tmp_path)
    with pytest.raises(ReproError) as e:
        cifar.load_cifar10("test", data_dir=str(tmp_path))
    assert one_line_error(e) == (f"{path}: md5 {md5_of(path)} is not the official c58f30108f718f92721af3b95e74349a "
                                 "(a damaged or different file); delete it to download again")

    write_cifar_tar(path, {"test_batch": batch_pickle(np.zeros((1, 3072), np.uint8), [0])})
    with pytest.raises(ReproError, match="no cifar-10-batches-py/data_batch_1, .* in the archive"):
        cifar.load_cifar10("train", data_dir=str(tmp_path), verify_md5=False)
    write_cifar_tar(path, {"test_batch": batch_pickle(np.zeros((2, 3072), np.uint8), [0])})
    with pytest.raises(ReproError, match="'labels' must be a list of 2 ints"):
        cifar.load_cifar10("test", data_dir=str(tmp_path), verify_md5=False)
    path.write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(ReproError, match="not a readable tar.gz"):
        cifar.load_cifar10("test", data_dir=str(tmp_path), verify_md5=False)


def test_cifar_repro_data_dir_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    synthetic_cifar(tmp_path / "cifar", k=2)
    x, y = cifar.load_cifar10("test", download=False, verify_md5=False)
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [5, 6]


# ---- augmentation and the mean image

def reference_augment(x, seed):
    """The documented draws, done the slow obvious way."""
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, 9, size=(len(x), 2))
    flips = rng.random(len(x)) < 0.5
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    out = np.stack([padded[i, :, dy:dy + 32, dx:dx + 32] for i, (dy, dx) in enumerate(offsets)])
    out[flips] = out[flips][..., ::-1]
    return out, offsets, flips


def test_augment_crops_and_flips_deterministically():
    x = np.random.default_rng(0).random((64, 3, 32, 32), dtype=np.float32)
    out = resnet_data.augment(x, np.random.default_rng(5))
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, resnet_data.augment(x, np.random.default_rng(5)))
    assert not np.array_equal(out, resnet_data.augment(x, np.random.default_rng(6)))
    expected, offsets, flips = reference_augment(x, 5)
    np.testing.assert_array_equal(out, expected)
    assert flips.any() and not flips.all()  # both kinds happen with this seed
    assert (offsets != 4).any(axis=1).sum() > 32  # most images are shifted
    changed = [not np.array_equal(out[i], x[i]) for i in range(64)]
    assert sum(changed) > 48


def test_augment_keeps_ones_inside_and_zeros_only_from_padding():
    x = np.ones((32, 3, 32, 32), np.float32)
    out = resnet_data.augment(x, np.random.default_rng(1))
    assert set(np.unique(out)) <= {0.0, 1.0}
    for img in out:
        assert (img == img[0]).all()  # the same window in every channel
        rows, cols = np.flatnonzero(img[0].any(1)), np.flatnonzero(img[0].any(0))
        assert rows.size >= 28 and cols.size >= 28  # at most 4 pixels of padding can come in
        assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))
        assert np.array_equal(cols, np.arange(cols[0], cols[-1] + 1))
        assert (rows[0] == 0 or rows[-1] == 31) and (cols[0] == 0 or cols[-1] == 31)
        assert (img[0][np.ix_(rows, cols)] == 1).all()  # ones inside, zeros only in the border bands
        assert img[0].sum() == rows.size * cols.size


def test_augment_is_fast_enough():
    x = np.random.default_rng(0).random((128, 3, 32, 32), dtype=np.float32)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        resnet_data.augment(x, rng)
        times.append(time.perf_counter() - t0)
    assert sorted(times)[10] < 0.02  # about 1 ms on one core; generous for a loaded machine


def test_per_pixel_mean():
    x = np.zeros((4, 3, 32, 32), np.uint8)
    x[1] = 255
    x[2, 0, 3, 4] = 100
    x[:, 2, 31, 31] = [1, 2, 3, 4]
    m = resnet_data.per_pixel_mean(x)
    assert m.shape == (3, 32, 32) and m.dtype == np.float32
    expected = np.full((3, 32, 32), 63.75, np.float32)
    expected[0, 3, 4] = 88.75
    expected[2, 31, 31] = 2.5
    np.testing.assert_array_equal(m, expected)
    with pytest.raises(ReproError, match=r"per_pixel_mean needs images \[N>0, 3, 32, 32\]"):
        resnet_data.per_pixel_mean(np.zeros((4, 32, 32, 3), np.uint8))
