"""The two plain tensor files a reference checkpoint may come as besides torch's own: an .npz
archive of named arrays (no pickles) and a .safetensors file (read here where the safetensors
package is missing or the file holds bfloat16). Bad input is a ReproError of one line."""
import json
import operator
import os
import struct

import numpy as np

from repro.errors import ReproError


def read_npz(path, label):
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - bad zip, pickled data, truncated file ...
        raise ReproError(f"{label}: not a readable .npz archive ({type(e).__name__}: {e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ReproError(f"{label} is a single .npy array, not an .npz archive of named arrays")
    try:
        with npz:
            return {k: npz[k] for k in npz.files}
    except Exception as e:  # noqa: BLE001 - pickled object arrays, damaged members ...
        raise ReproError(f"{label}: not a readable .npz archive ({type(e).__name__}: {e})") from None


_SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}


def _safetensors_header(f, label):
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        raise ReproError(f"{label}: not a readable .safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", head)
    if n > size - 8:
        raise ReproError(f"{label}: not a readable .safetensors file (truncated header)")
    try:
        header = json.loads(f.read(n))
    except ValueError as e:
        raise ReproError(f"{label}: not a readable .safetensors file (bad header: {e})") from None
    if not isinstance(header, dict):
        raise ReproError(f"{label}: not a readable .safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    return header, 8 + n, size


def _read_safetensors_here(f, label, header, start, size):
    out = {}
    for key, info in header.items():
        try:
            dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
            shape = tuple(operator.index(d) for d in info["shape"])
            begin, end = (operator.index(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ReproError(f"{label}: not a readable .safetensors file (bad entry for {key!r})") from None
        count = int(np.prod(shape, dtype=np.int64))
        if any(d < 0 for d in shape) or end - begin != count * dtype.itemsize or begin < 0 or start + end > size:
            raise ReproError(f"{label}: not a readable .safetensors file (tensor {key!r} does not fit the file)")
        f.seek(start + begin)
        array = np.frombuffer(f.read(end - begin), dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
        if info["dtype"] == "BF16":
            array = array.astype(np.uint32)
            array <<= 16
            array = array.view(np.float32)
        out[key] = array
    return out


def read_safetensors(path, label):
    with open(path, "rb") as f:
        header, start, size = _safetensors_header(f, label)
        try:
            from safetensors.numpy import load_file
        except ImportError:
            load_file = None
        if load_file is None or any(isinstance(v, dict) and v.get("dtype") == "BF16" for v in header.values()):
            return _read_safetensors_here(f, label, header, start, size)
    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise ReproError(f"{label}: not a readable .safetensors file ({type(e).__name__}: {e})") from None
