"""Checkpoints as safetensors: tensors and string metadata, no pickle, so
loading a checkpoint somebody sent can never execute code.

Layout: model/<param>  the model's state_dict
        optim/<param>/<accumulator>  optimizer state, keyed by the parameter's
        structured name (Paddle's own keys use auto-generated names such as
        linear_0.w_0, which differ between processes)
metadata: format, paper, exp, step, config_hash, lite, and log_seq/log_head:
the number of event lines written before it and the hash of the last one.
Writes are atomic: a temp file in the same folder, then os.replace.

Reading checks names, shapes and dtypes against the model before any tensor
is loaded, so a hostile file cannot make us allocate what the model would not.
"""
import errno
import hashlib
import json
import os
import re

import numpy as np

from repro.errors import ReproError
from repro.strict import sha256_file  # the one implementation of file hashing (checkpoint.sha256_file)

FORMAT = "repro-checkpoint/2"
MAX_META = 64 << 10  # bytes of metadata: a handful of short strings


def weights_sha256(tensors):
    """Identity of the weights themselves (model/* tensors: names, dtypes, shapes,
    bytes), whatever the file's metadata or optimizer state: two runs whose
    weights are the same have the same value, however the files were relabelled."""
    h = hashlib.sha256()
    for k in sorted(k for k in tensors if k.startswith("model/")):
        a = np.ascontiguousarray(tensors[k])
        h.update(f"{k}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def state_tensors(model, optimizer=None):
    """{name: numpy array}: what a checkpoint holds for model and optimizer."""
    import paddle
    tensors = {f"model/{k}": v.numpy() for k, v in model.state_dict().items()}
    if optimizer is not None:
        state = optimizer.state_dict()
        for sname, p in model.named_parameters():
            prefix = p.name + "_"
            for key, value in state.items():
                if key.startswith(prefix) and isinstance(value, paddle.Tensor):
                    tensors[f"optim/{sname}/{key[len(prefix):]}"] = value.numpy()
    return tensors


def save(path, model, optimizer=None, meta=None):
    """Write model (and optimizer) state atomically; returns (file sha256, weights sha256)."""
    tensors = state_tensors(model, optimizer)
    metadata = {"format": FORMAT}
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (meta or {}).items()})
    return save_atomic(path, tensors, metadata), weights_sha256(tensors)


def save_atomic(path, arrays, metadata):
    """A safetensors file written atomically (a temporary name, fsync, rename: a kill leaves the
    old file or the new one, never half of one; a full disk is an OSError); returns its sha256.
    Checkpoints and the verifiable record (repro.run.decisions) are written here."""
    from safetensors.numpy import save_file
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        try:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp, metadata=metadata)
        except OSError:
            raise
        except Exception as e:  # safetensors reports a full disk as its own error type
            code = re.search(r"os error (\d+)", str(e))
            raise OSError(int(code.group(1)) if code else errno.EIO,
                          os.strerror(int(code.group(1))) if code else str(e), path) from None
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return sha256_file(path)


def _expected(model, optimizer=None):
    """{key: (shape, dtype)} that a checkpoint of this model must hold (optimizer
    keys are checked by parameter, since their accumulators vary by optimizer)."""
    return {f"model/{k}": (tuple(v.shape), str(v.numpy().dtype) if v.size else None)
            for k, v in model.state_dict().items()}


def read(path, model=None, want_optimizer=False, tensors=True):
    """(tensors, metadata) of a checkpoint; a ReproError naming the problem if it
    is not one. With model: every model/* key must exist with the model's shape
    and dtype (checked before loading); want_optimizer keeps optim/* tensors too;
    tensors=False reads the metadata alone ({} for the tensors)."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise ReproError(f"checkpoint not found: {path}")
    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
            if model is not None:
                _check_layout(path, f, keys, model)
            if len(json.dumps(meta)) > MAX_META:
                raise ReproError(f"checkpoint {path} has {len(json.dumps(meta)):,} bytes of metadata, "
                                 f"over {MAX_META:,}")
            tensors = {k: f.get_tensor(k) for k in keys if want_optimizer or not k.startswith("optim/")} \
                if tensors else {}
    except ReproError:
        raise
    except Exception as e:  # safetensors raises several types for a damaged file
        raise ReproError(f"checkpoint {path} is not a readable safetensors file "
                         f"({type(e).__name__}: {str(e)[:200]})") from None
    if meta.get("format") != FORMAT:
        raise ReproError(f"checkpoint {path} is not a {FORMAT} file (format={str(meta.get('format'))[:40]!r})")
    return tensors, meta


def _check_layout(path, f, keys, model):
    wanted = _expected(model)
    given = set(k for k in keys if k.startswith("model/"))
    missing = sorted(set(wanted) - given)
    extra = sorted(given - set(wanted))
    bad = []
    for k in sorted(given & set(wanted)):
        sl = f.get_slice(k)
        shape, dtype = tuple(sl.get_shape()), _np_dtype(sl.get_dtype())
        want_shape, want_dtype = wanted[k]
        if shape != want_shape:
            bad.append(f"{k[6:]} shape {shape} vs model {want_shape}")
        elif want_dtype and dtype != want_dtype:
            bad.append(f"{k[6:]} dtype {dtype} vs model {want_dtype}")
    params = {name for name, _ in model.named_parameters()}
    stray = sorted({k.split("/")[1] for k in keys if k.startswith("optim/") and k.count("/") >= 2}
                   - params)
    other = sorted(k for k in keys if not k.startswith(("model/", "optim/")))
    if missing or extra or bad or stray or other:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(m[6:] for m in missing[:5])}" + ("..." if len(missing) > 5 else ""))
        if extra:
            parts.append(f"unexpected {', '.join(m[6:] for m in extra[:5])}" + ("..." if len(extra) > 5 else ""))
        if bad:
            parts.append("; ".join(bad[:5]))
        if stray:
            parts.append(f"optimizer state for unknown parameters {', '.join(stray[:5])}")
        if other:
            parts.append(f"tensors outside model/ and optim/: {', '.join(other[:5])}")
        raise ReproError(f"checkpoint {path} does not fit this model: {'; '.join(parts)}")


def _np_dtype(name):
    return {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
            "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64",
            "BOOL": "bool"}.get(name, name)


def load_model(model, tensors):
    """Copy model/* tensors into model (their layout was checked by read(path, model))."""
    import paddle
    given = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in given.items()})


def load_optimizer(optimizer, model, tensors):
    import paddle
    params = dict(model.named_parameters())
    state = {}
    for key, value in tensors.items():
        if not key.startswith("optim/"):
            continue
        sname, acc = key[len("optim/"):].rsplit("/", 1)
        if sname not in params:
            raise ReproError(f"checkpoint has optimizer state for unknown parameter {sname}")
        shape = tuple(params[sname].shape)
        # an accumulator is per element (moments) or one number (beta powers)
        if value.dtype.kind != "f" or (tuple(value.shape) != shape and value.size != 1):
            raise ReproError(f"checkpoint optimizer state {sname}/{acc} has {value.dtype} {tuple(value.shape)}, "
                             f"which does not fit the parameter's {shape}")
        state[f"{params[sname].name}_{acc}"] = paddle.to_tensor(value)
    if not state and any(not p.stop_gradient for p in model.parameters()):
        raise ReproError("checkpoint holds no optimizer state, so training cannot resume from it")
    optimizer.set_state_dict(state)
