"""Convert a PyTorch state dict to a Paddle model, by the known rules, and
report every key that does not fit instead of guessing.

Rules (Paddle's reproduction guide):
  - nn.Linear weights are transposed: PyTorch stores [out, in], Paddle [in, out];
  - BatchNorm running_mean / running_var become _mean / _variance;
  - num_batches_tracked is dropped (Paddle has no such buffer);
  - everything else is copied by name and must have the same shape.
`rename` maps PyTorch names to Paddle names first, for ports that renamed layers.
"""
from dataclasses import dataclass, field

import numpy as np

from repro.errors import ReproError

BN_RENAMES = {"running_mean": "_mean", "running_var": "_variance"}


@dataclass
class ConversionReport:
    converted: list = field(default_factory=list)   # (torch key, paddle key, transposed)
    dropped: list = field(default_factory=list)     # torch keys dropped by rule
    unused: list = field(default_factory=list)      # torch keys with no Paddle counterpart
    unmatched: list = field(default_factory=list)   # Paddle keys nothing was given for
    mismatched: list = field(default_factory=list)  # (key, torch shape, paddle shape)

    @property
    def ok(self):
        return not (self.unused or self.unmatched or self.mismatched)

    def summary(self):
        parts = [f"{len(self.converted)} converted ({sum(t for *_, t in self.converted)} transposed)"]
        if self.dropped:
            parts.append(f"dropped by rule: {', '.join(self.dropped)}")
        if self.unused:
            parts.append(f"unused PyTorch keys: {', '.join(self.unused)}")
        if self.unmatched:
            parts.append(f"Paddle keys with no PyTorch value: {', '.join(self.unmatched)}")
        if self.mismatched:
            parts.append("shape mismatches: " + ", ".join(f"{k} {tuple(t)} vs Paddle {tuple(p)}"
                                                         for k, t, p in self.mismatched))
        return "; ".join(parts)


def _linear_weights(model):
    import paddle
    return {f"{name}.weight" if name else "weight" for name, layer in model.named_sublayers(include_self=True)
            if isinstance(layer, paddle.nn.Linear)}


def convert(torch_state, model, rename=None):
    """(paddle_state, report): paddle_state maps Paddle keys to arrays."""
    target = model.state_dict()
    # Paddle can expose one parameter under two names (an RNN's weight_ih_l0 is
    # also 0.cell_fw.weight_ih): such aliases are satisfied together.
    alias = {}
    by_tensor = {}
    for key, tensor in target.items():
        by_tensor.setdefault(tensor.name, []).append(key)
    for keys in by_tensor.values():
        for key in keys:
            alias[key] = keys
    linears = _linear_weights(model)
    report = ConversionReport()
    out, satisfied = {}, set()
    for tkey, value in torch_state.items():
        key = (rename or {}).get(tkey, tkey)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            report.dropped.append(tkey)
            continue
        if leaf in BN_RENAMES:
            key = key[: -len(leaf)] + BN_RENAMES[leaf]
        if key not in target:
            report.unused.append(tkey)
            continue
        value = np.asarray(value)
        transposed = key in linears and value.ndim == 2
        if transposed:
            value = value.T
        want = tuple(target[key].shape)
        if value.shape != want:
            report.mismatched.append((tkey, value.T.shape if transposed else value.shape, want))
            continue
        out[key] = np.array(value, dtype=target[key].numpy().dtype, order="C", copy=True)
        report.converted.append((tkey, key, transposed))
        satisfied.update(alias[key])
    report.unmatched = [k for k in target if k not in satisfied]
    return out, report


def load_into(model, torch_state, rename=None):
    """Convert and load; a ReproError listing every problem if anything does not fit."""
    import paddle

    state, report = convert(torch_state, model, rename)
    if not report.ok:
        raise ReproError(f"weights do not fit the Paddle model: {report.summary()}")
    by_name = {t.name: v for k, v in state.items() for t in [model.state_dict()[k]]}
    model.set_state_dict({k: paddle.to_tensor(by_name[t.name]) for k, t in model.state_dict().items()})
    return report


def canonical(model):
    """state-dict key -> the parameter's own name, so aliases compare as one."""
    first = {}
    for key, tensor in model.state_dict().items():
        first.setdefault(tensor.name, key)
    return {key: first[t.name] for key, t in model.state_dict().items()}


def paddle_weights(model):
    """The model's parameters as arrays, one per parameter (aliases once), keyed by Paddle names."""
    canon = canonical(model)
    return {canon[k]: p.numpy() for k, p in model.named_parameters() if k in canon and canon[k] == k}


def torch_as_paddle(named, model):
    """Reference arrays keyed by PyTorch names -> Paddle names and layouts."""
    state, _ = convert(named, model)
    canon = canonical(model)
    return {canon[k]: v for k, v in state.items() if canon[k] == k}
