"""CIFAR-10 (Krizhevsky 2009): the official python release.

The data is the official ``cifar-10-python.tar.gz``, md5-checked, looked for in
the ``data_dir`` argument, else ``$REPRO_DATA_DIR/cifar/``, else
``~/.cache/repro/cifar``, and downloaded atomically when missing (a temporary
file, checked, then renamed; never a partial file). Every failure is one
``ReproError`` line.

The batches are read straight from the tar.gz and unpickled WITHOUT running
code: ``paddle.vision.datasets.Cifar10`` uses ``pickle.load``, which runs
whatever a file asks for; here only NumPy arrays inside plain containers are
accepted (``repro.safe_pickle``), plus the two helpers a Python 3 protocol-2
pickle of bytes needs, restricted to what they do there.
"""
import io
import os
import pickle
import tarfile
import zlib

import numpy as np

from repro import safe_pickle
from repro.datasets.download import check_split, ensure_file, one_line, resolve_data_dir
from repro.errors import ReproError

# The official release (Krizhevsky); the same md5 as CIFAR10_MD5 in
# paddle/vision/datasets/cifar.py (paddlepaddle 3.3.1), whose mirror is
# https://dataset.bj.bcebos.com/cifar/cifar-10-python.tar.gz
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
BATCHES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}
SUBDIR = "cifar"


def load_cifar10(split, data_dir=None, download=True, verify_md5=True):
    """The CIFAR-10 ``split`` ("train" or "test") as ``(x uint8 [N, 3, 32, 32], y int64 [N])``.

    Train is data_batch_1..5 in that order (50,000 images), test is test_batch
    (10,000). Each row of a batch's ``data`` is the red plane, then green, then
    blue, each 32x32 row-major, so a reshape to [3, 32, 32] is the CHW image.
    """
    check_split(split, BATCHES, "CIFAR-10")
    path = os.path.join(resolve_data_dir(data_dir, SUBDIR), ARCHIVE)
    ensure_file(path, CIFAR10_URL, CIFAR10_MD5, "CIFAR-10 archive", download, verify_md5, SUBDIR)

    wanted = {f"{FOLDER}/{b}": b for b in BATCHES[split]}
    raw = {}
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:  # one pass: no seeking back in the gzip stream
                name = os.path.normpath(member.name)
                if name not in wanted:
                    continue
                if name in raw:
                    raise ReproError(f"{path}: {name} appears twice in the archive")
                if not member.isfile():
                    raise ReproError(f"{path}: {name} is not a regular file in the archive")
                raw[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ReproError(f"{path}: not a readable tar.gz ({one_line(e)})") from None
    missing = [n for n in wanted if n not in raw]
    if missing:
        raise ReproError(f"{path}: no {', '.join(missing)} in the archive (not the official CIFAR-10 python release)")

    xs, ys = [], []
    for name in wanted:  # data_batch_1..5 in order
        data, labels = _parse_batch(raw.pop(name), f"{path}: {name}")
        xs.append(data)
        ys.append(labels)
    x = np.concatenate(xs).reshape(-1, 3, 32, 32)
    y = np.concatenate(ys)
    return x, y


class _BatchUnpickler(safe_pickle.NumpyOnlyUnpickler):
    """safe_pickle's allow-list, as Paddle's Cifar10 reads the batches (encoding="bytes").

    The official batches were pickled by Python 2: their ``str`` objects (keys,
    the array's raw data) need ``encoding="bytes"``, or unpickling fails with
    "'ascii' codec can't decode". A Python 3 pickle at protocol 2 writes each
    ``bytes`` object as ``_codecs.encode(text, "latin1")`` (and ``b""`` as
    ``bytes()``); those two are allowed here, each able to do only that.
    """

    def __init__(self, file, *, encoding="bytes"):
        super().__init__(file, encoding=encoding)

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in (("__builtin__", "bytes"), ("builtins", "bytes")):
            return _empty_bytes
        return super().find_class(module, name)


def _latin1_encode(text, encoding="latin1", *rest):
    if rest or not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than (str, 'latin1')")
    return text.encode("latin1")


def _empty_bytes(*args):
    if args:
        raise pickle.UnpicklingError("refusing bytes() with arguments")
    return b""


def unpickle_batch(data):
    """One batch file's bytes -> its dict, without running code from it."""
    return _BatchUnpickler(io.BytesIO(data)).load()


def _parse_batch(data, where):
    try:
        batch = unpickle_batch(data)
    except Exception as e:  # untrusted bytes: any failure to parse is a bad file, not a crash
        raise ReproError(f"{where}: not a plain CIFAR-10 batch ({one_line(e)})") from None
    if not isinstance(batch, dict):
        raise ReproError(f"{where}: not a CIFAR-10 batch (a {type(batch).__name__}, not a dict)")
    images = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != 3072:
        desc = f"{images.dtype} {list(images.shape)}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ReproError(f"{where}: 'data' must be a uint8 [N, 3072] array, not {desc}")
    if not isinstance(labels, (list, tuple, np.ndarray)) or len(labels) != len(images):
        n = len(labels) if isinstance(labels, (list, tuple, np.ndarray)) else type(labels).__name__
        raise ReproError(f"{where}: 'labels' must be a list of {len(images)} ints, not {n}")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        raise ReproError(f"{where}: 'labels' must hold ints")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise ReproError(f"{where}: labels must be 0..9, found {int(y.min())}..{int(y.max())}")
    return np.ascontiguousarray(images), y
