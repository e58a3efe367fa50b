"""What the judge and a worker hand each other: arrays in safetensors files and one
small JSON request. Nothing here imports paper code or Paddle, and reading never
executes anything (safetensors, strict JSON, sizes checked before reading).

Arrays of rows of different lengths (token ids: numpy object arrays) travel as
two tensors, NAME@values (the rows concatenated) and NAME@offsets (int64, one
more than rows), and come back as the same object array.
"""
import json
import os

import numpy as np

from repro import strict
from repro.errors import ReproError

MAX_ARRAYS_BYTES = 8 << 30  # one file of arrays from a worker
MAX_REQUEST_BYTES = 64 << 20


def write_arrays(path, arrays, metadata=None):
    from safetensors.numpy import save_file
    flat = {}
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.dtype == object:
            rows = [np.asarray(r) for r in a.reshape(-1)]
            lengths = np.array([r.size for r in rows], np.int64)
            flat[f"{name}@offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            flat[f"{name}@values"] = (np.concatenate([r.ravel() for r in rows]) if rows
                                      else np.zeros(0, np.int64))
        else:
            flat[name] = np.ascontiguousarray(a)
    tmp = f"{path}.tmp"
    save_file(flat, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)


def read_arrays(path, what, max_bytes=MAX_ARRAYS_BYTES):
    """{name: array} of a file a worker wrote (or the judge made); a ReproError naming
    `what` if it is missing, not a regular file, too large or not safetensors."""
    from safetensors import safe_open
    strict.regular_file(path, what)
    size = os.lstat(path).st_size
    if size > max_bytes:
        raise ReproError(f"{what}: {size:,} bytes, over the limit {max_bytes:,}")
    try:
        with safe_open(path, framework="np") as f:
            flat = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
    except Exception as e:
        raise ReproError(f"{what} is not a readable safetensors file ({type(e).__name__})") from None
    out = {}
    for name, a in flat.items():
        base, _, part = name.rpartition("@")
        if not base:
            out[name] = a
        elif part == "offsets":
            values = flat.get(f"{base}@values")
            if values is None or a.ndim != 1 or a.dtype != np.int64 or len(a) < 1 or a[0] != 0 \
                    or np.any(np.diff(a) < 0) or a[-1] != len(values):
                raise ReproError(f"{what}: {base} is not a well-formed array of rows")
            rows = np.empty(len(a) - 1, dtype=object)
            for i in range(len(a) - 1):
                rows[i] = values[a[i]:a[i + 1]]
            out[base] = rows
        elif part != "values":
            raise ReproError(f"{what}: unexpected entry {name[:60]!r}")
    return out, meta


def write_request(path, request):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(request, f)
    os.replace(tmp, path)


def read_request(path):
    return strict.read_json(path, "worker request", max_bytes=MAX_REQUEST_BYTES)


def read_result(path, what):
    """A worker's small JSON answer (never a verdict: sizes, names, timings)."""
    strict.regular_file(path, what)
    return strict.read_json(path, what, max_bytes=1 << 20)
