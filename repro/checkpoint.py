"""Checkpoints as safetensors: tensors and string metadata, no pickle, so
loading a checkpoint somebody sent can never execute code.

Layout: model/<param>  the model's state_dict
        optim/<param>/<accumulator>  optimizer state, keyed by the parameter's
        structured name (Paddle's own keys use auto-generated names such as
        linear_0.w_0, which differ between processes)
metadata: format, paper, exp, step, config_hash, lite, and log_seq/log_head:
the number of event lines written before it and the hash of the last one.
Writes are atomic: a temp file in the same folder, then os.replace.
"""
import hashlib
import json
import os

import numpy as np

from repro.errors import ReproError

FORMAT = "repro-checkpoint/1"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _optim_tensors(model, optimizer):
    import paddle
    state = optimizer.state_dict()
    out = {}
    for sname, p in model.named_parameters():
        prefix = p.name + "_"
        for key, value in state.items():
            if key.startswith(prefix) and isinstance(value, paddle.Tensor):
                out[f"optim/{sname}/{key[len(prefix):]}"] = value.numpy()
    return out


def save(path, model, optimizer=None, meta=None):
    from safetensors.numpy import save_file

    tensors = {f"model/{k}": v.numpy() for k, v in model.state_dict().items()}
    if optimizer is not None:
        tensors.update(_optim_tensors(model, optimizer))
    metadata = {"format": FORMAT}
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (meta or {}).items()})
    tmp = f"{path}.tmp-{os.getpid()}"
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=metadata)
    os.replace(tmp, path)
    return sha256_file(path)


def read(path):
    """(tensors, metadata) of a checkpoint; a clear ReproError if it is not one."""
    from safetensors import safe_open

    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint.safetensors")
    if not os.path.isfile(path):
        raise ReproError(f"checkpoint not found: {path}")
    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for a damaged file
        raise ReproError(f"checkpoint {path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT:
        raise ReproError(f"checkpoint {path} is not a {FORMAT} file (format={meta.get('format')!r})")
    return tensors, meta


def load_model(model, tensors, path=""):
    """Copy model/* tensors into model; every key must match in name and shape."""
    wanted = model.state_dict()
    given = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    missing = sorted(set(wanted) - set(given))
    extra = sorted(set(given) - set(wanted))
    shape = sorted(k for k in set(wanted) & set(given) if tuple(wanted[k].shape) != given[k].shape)
    if missing or extra or shape:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        if shape:
            parts.append("shape mismatch " + ", ".join(
                f"{k} {tuple(given[k].shape)} vs model {tuple(wanted[k].shape)}" for k in shape))
        raise ReproError(f"checkpoint {path} does not fit this model: {'; '.join(parts)}")
    import paddle
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in given.items()})


def load_optimizer(optimizer, model, tensors):
    import paddle
    names = {sname: p.name for sname, p in model.named_parameters()}
    state = {}
    for key, value in tensors.items():
        if not key.startswith("optim/"):
            continue
        sname, acc = key[len("optim/"):].rsplit("/", 1)
        if sname not in names:
            raise ReproError(f"checkpoint has optimizer state for unknown parameter {sname}")
        state[f"{names[sname]}_{acc}"] = paddle.to_tensor(value)
    if not state:
        raise ReproError("checkpoint holds no optimizer state, so training cannot resume from it")
    optimizer.set_state_dict(state)
