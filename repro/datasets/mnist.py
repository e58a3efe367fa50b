"""MNIST (LeCun et al. 1998): the official idx gz files, md5-checked, read by Paddle's own loader.

Where the files are looked for: the ``data_dir`` argument (files directly in
it), else ``$REPRO_DATA_DIR/mnist/``, else ``~/.cache/repro/mnist``. A file
that is there must have the official md5 (the values published with
``paddle.vision.datasets.MNIST``, which match LeCun's release); a missing file is
downloaded from Paddle's official mirror (``MNIST.URL_PREFIX``) into a
temporary file, checked, and only then renamed into place, so a failed or
interrupted download never leaves a partial file. Every failure is one
``ReproError`` line naming the file.

The gz files are parsed by ``paddle.vision.datasets.MNIST(image_path=...,
label_path=..., download=False)`` (it keeps each image as a float32 [784] row and
each label as an int64 [1] array); the headers are checked here first, because
Paddle's parser trusts them (it reads in blocks of 100 and ignores the magic
numbers).
"""
import gzip
import os
import struct
import zlib

import numpy as np

from repro.datasets.download import check_split, ensure_file, one_line, resolve_data_dir
from repro.errors import ReproError

# paddle/vision/datasets/mnist.py (paddlepaddle 3.3.1): MNIST.URL_PREFIX and the *_MD5 constants
URL_PREFIX = "https://dataset.bj.bcebos.com/mnist/"
FILES = {
    ("train", "images"): ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train", "labels"): ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("test", "images"): ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
SUBDIR = "mnist"


def load_mnist(split, data_dir=None, download=True, verify_md5=True):
    """The MNIST ``split`` ("train" or "test") as ``(x uint8 [N, 28, 28], y int64 [N])``."""
    check_split(split, ("train", "test"), "MNIST")
    folder = resolve_data_dir(data_dir, SUBDIR)
    paths = {}
    for kind in ("images", "labels"):
        name, md5 = FILES[(split, kind)]
        path = os.path.join(folder, name)
        ensure_file(path, URL_PREFIX + name, md5, f"MNIST {split} {kind}", download, verify_md5, SUBDIR)
        paths[kind] = path
    n = _check_headers(paths["images"], paths["labels"])

    from paddle.vision.datasets import MNIST

    try:
        ds = MNIST(image_path=paths["images"], label_path=paths["labels"], mode=split,
                   download=False, backend="cv2")
    except (OSError, EOFError, zlib.error, struct.error, ValueError) as e:
        raise ReproError(f"cannot read MNIST {split} from {folder}: {one_line(e)}") from None
    if len(ds.images) != n or len(ds.labels) != n:
        raise ReproError(f"cannot read MNIST {split} from {folder}: read {len(ds.labels)} samples, "
                         f"the headers say {n}")
    x = np.stack(ds.images, dtype=np.uint8, casting="unsafe").reshape(n, 28, 28)
    y = np.concatenate(ds.labels).astype(np.int64) if n else np.zeros(0, np.int64)
    if n and (y.min() < 0 or y.max() > 9):
        raise ReproError(f"{paths['labels']}: labels must be 0..9, found {int(y.min())}..{int(y.max())}")
    return x, y


def _check_headers(image_path, label_path):
    """The idx headers, checked before Paddle's parser (which trusts them); returns N."""
    img = _read_header(image_path, 16)
    lab = _read_header(label_path, 8)
    magic, n_img, rows, cols = struct.unpack(">IIII", img)
    if magic != IMAGE_MAGIC:
        raise ReproError(f"{image_path}: idx magic {magic} is not {IMAGE_MAGIC} (not an MNIST image file)")
    if (rows, cols) != (28, 28):
        raise ReproError(f"{image_path}: images are {rows}x{cols}, MNIST's are 28x28")
    magic, n_lab = struct.unpack(">II", lab)
    if magic != LABEL_MAGIC:
        raise ReproError(f"{label_path}: idx magic {magic} is not {LABEL_MAGIC} (not an MNIST label file)")
    if n_img != n_lab:
        raise ReproError(f"{image_path} holds {n_img} images but {label_path} holds {n_lab} labels")
    if n_img % 100:
        raise ReproError(f"{image_path}: {n_img} images; paddle.vision.datasets.MNIST reads MNIST in "
                         "blocks of 100 (the official files hold 60000 and 10000)")
    return n_img


def _read_header(path, size):
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(size)
    except (OSError, EOFError, zlib.error) as e:
        raise ReproError(f"{path}: not a readable gzip file ({one_line(e)})") from None
    if len(head) != size:
        raise ReproError(f"{path}: too short for an idx header ({len(head)} of {size} bytes)")
    return head


