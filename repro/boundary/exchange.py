"""What the judge and a worker hand each other: arrays in safetensors files and one
small JSON request. Nothing here imports paper code or Paddle, and reading never
executes anything (safetensors, strict JSON, sizes checked before reading).

A worker's outputs come back as one stream on its standard output (send_outputs,
receive_outputs): for each file a JSON header line (its name and size) and its bytes,
then an end line. The judge takes only the names it asked for, up to a cap in all, and
writes them into a folder of its own; every file it then reads is opened without
following links and parsed from the descriptor it was checked through (strict.open_regular).

Arrays of rows of different lengths (token ids: numpy object arrays) travel as
two tensors, NAME@values (the rows concatenated) and NAME@offsets (int64, one
more than rows), and come back as the same object array.
"""
import json
import os
import re
import shutil
import stat
import struct

import numpy as np

from repro import strict
from repro.errors import ReproError

MAX_ARRAYS_BYTES = 8 << 30  # one file of arrays from a worker
MAX_REQUEST_BYTES = 64 << 20
MAGIC = b"repro-outputs 1\n"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
HEADER_BYTES = 4096


class OutputError(ReproError):
    """What a worker sent cannot be taken; kind is 'malformed' or 'too much'."""

    def __init__(self, kind, why):
        super().__init__(why)
        self.kind = kind


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
    """{name: array} of a file a worker wrote (or the judge made): opened without following
    links, checked to be one regular file under max_bytes and parsed from that descriptor;
    a ReproError naming `what` if it is missing, anything else, too large or not safetensors."""
    from safetensors.numpy import load
    data = strict.read_regular(path, what, max_bytes)
    try:
        flat, meta = load(data), _metadata(data)
    except Exception as e:
        raise ReproError(f"{what} is not a readable safetensors file ({type(e).__name__})") from None
    del data
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


def take_arrays(out, name, what):
    """read_arrays of the file `name` a worker handed back into the folder out, which is
    removed after, read or not."""
    try:
        return read_arrays(os.path.join(out, name), what)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _metadata(data):
    """The __metadata__ of safetensors bytes (already parsed once by safetensors itself)."""
    (n,) = struct.unpack("<Q", data[:8])
    meta = strict.loads_json(data[8:8 + n].decode("utf-8"), "safetensors header").get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def stage_inputs(in_dir, inputs, req):
    """A worker's input folder: each input (a path on this machine, or its bytes, as a Ray
    node receives them) under its own name, and request.json naming them; everything
    readable by the worker, who is another user, and by nobody writable."""
    os.chmod(in_dir, 0o755)
    for name, src in inputs.items():
        if not isinstance(name, str) or not NAME.match(name) or name == "request.json":
            raise ReproError(f"an input name the worker cannot be given: {str(name)[:60]!r}")
        dst = os.path.join(in_dir, name)
        if isinstance(src, bytes):
            with open(dst, "xb") as f:
                f.write(src)
        else:
            shutil.copyfile(src, dst)
        os.chmod(dst, 0o444)
    req = dict(req, staged=sorted(inputs))
    if "artifact.json" in inputs:
        req["artifact_file"] = "artifact.json"
    write_request(os.path.join(in_dir, "request.json"), req)
    os.chmod(os.path.join(in_dir, "request.json"), 0o444)


def write_request(path, request):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(request, f)
    os.replace(tmp, path)


def read_request(path):
    return strict.read_json(path, "worker request", max_bytes=MAX_REQUEST_BYTES)


def read_result(path, what):
    """A worker's small JSON answer (never a verdict: sizes, names, timings)."""
    return strict.loads_json(strict.read_regular(path, what, 1 << 20).decode("utf-8", "replace"), what)


def read_text(path, what, max_bytes):
    """A small text a worker wrote (its last words), read as read_arrays reads."""
    return strict.read_regular(path, what, max_bytes).decode("utf-8", "replace")


# ------------------------------------------------------------------ the worker's outputs, as one stream

def send_outputs(fd, folder):
    """The worker's side: every entry of its output folder onto descriptor fd. A regular file
    with one link goes as its header and bytes; anything else (a link, a FIFO, a hard link, a
    folder) goes as a header naming what it is, which the judge refuses."""
    with os.fdopen(fd, "wb") as out:
        out.write(MAGIC)
        for name in sorted(os.listdir(folder)):
            try:
                src, st = strict.open_regular(os.path.join(folder, name), name)
            except ReproError as e:
                out.write(_header({"name": name, "invalid": str(e)}))
                continue
            with os.fdopen(src, "rb") as f:
                out.write(_header({"name": name, "size": st.st_size}))
                left = st.st_size
                while left > 0:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    out.write(chunk)
                    left -= len(chunk)
                out.write(b"\0" * left)  # a file that shrank meanwhile: its size was promised
        out.write(_header({"end": True}))


def _header(obj):
    return (json.dumps(obj, ensure_ascii=True)[:HEADER_BYTES - 1] + "\n").encode()


def receive_outputs(stream, folder, allowed, cap):
    """The judge's side: the outputs named in `allowed` from a worker's stream, written into
    folder (the judge's own, empty); [names received]. An OutputError when the stream is not
    what send_outputs writes, names a file the judge did not ask for or one that was not a
    regular file, or carries more than cap bytes."""
    start = stream.read(len(MAGIC))
    if not start:
        raise OutputError("empty", "it wrote no outputs")
    if start != MAGIC:
        raise OutputError("malformed", "its outputs do not start as the harness's worker writes them")
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    got, total = [], 0
    try:
        while True:
            line = stream.readline(HEADER_BYTES)
            if not line.endswith(b"\n"):
                raise OutputError("malformed", "its outputs end before their end mark")
            try:
                head = strict.loads_json(line.decode("ascii"), "an output header")
            except (ReproError, UnicodeDecodeError):
                raise OutputError("malformed", "an output header is not what the harness's worker writes") from None
            if not isinstance(head, dict):
                raise OutputError("malformed", "an output header is not a mapping")
            if head.get("end") is True:
                return got
            name = head.get("name")
            if not isinstance(name, str) or not NAME.match(name) or name not in allowed or name in got:
                raise OutputError("malformed", "it returned a file the judge did not ask for")
            if "invalid" in head:
                raise OutputError("malformed", f"its output {name} is not a regular file with one link")
            size = head.get("size")
            if type(size) is not int or size < 0:
                raise OutputError("malformed", f"its output {name} has no size")
            if total + size > cap:
                raise OutputError("too much", f"its outputs are over the {cap:,} bytes the judge takes from it")
            _copy(stream, dir_fd, name, size)
            got.append(name)
            total += size
    finally:
        os.close(dir_fd)


def _copy(stream, dir_fd, name, size):
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600,
                 dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputError("malformed", f"its output {name} is not a regular file")
        left = size
        while left > 0:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                raise OutputError("malformed", f"its output {name} ends before its size")
            os.write(fd, chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
