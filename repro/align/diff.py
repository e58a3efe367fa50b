"""Record named arrays and compare two records, reprod_log-compatible.

A record is a dict {key: ndarray}. `ReprodLogger.save(path)` writes it as
reprod_log does (`np.save(path, dict)`), so dumps made with reprod_log load
here unchanged and ours load in reprod_log. Loading never unpickles anything
but arrays (repro.safe_pickle).

Methods, per key (diff = |a - b| elementwise):
  mean      mean(diff)                      reprod_log's default
  max       max(diff)
  relative  max(diff) / max(max|b|, 1e-12)  for values of any scale
Unlike reprod_log, a shape mismatch fails instead of silently transposing:
a transposed Linear weight is exactly the bug this should catch.
"""
import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from repro import safe_pickle
from repro.errors import ReproError

METHODS = ("mean", "max", "relative")


class ReprodLogger:
    def __init__(self):
        self.data = {}

    def add(self, key, value):
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{key}: value must be a numpy array (tensor.numpy()), got {type(value).__name__}")
        self.data[key] = value

    def save(self, path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        np.save(path, self.data, allow_pickle=True)


def load(path):
    """A reprod_log dump (.npy holding a dict of arrays) as a dict."""
    if not os.path.isfile(path):
        raise ReproError(f"no such dump: {path}")
    try:
        obj = safe_pickle.load_npy(path)
    except Exception as e:  # a damaged or hostile file: say which and why
        raise ReproError(f"{path} is not a readable reprod_log dump ({type(e).__name__}: {e})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ReproError(f"{path} does not hold a dict of arrays (reprod_log format)")
    return obj


@dataclass
class Row:
    key: str
    method: str
    threshold: float
    mean: float = float("nan")
    max: float = float("nan")
    relative: float = float("nan")
    passed: bool = False
    note: str = ""

    @property
    def value(self):
        return getattr(self, self.method)


@dataclass
class AlignResult:
    rows: list = field(default_factory=list)
    title: str = ""

    @property
    def passed(self):
        return bool(self.rows) and all(r.passed for r in self.rows)

    def failures(self):
        return [r for r in self.rows if not r.passed]

    def table(self):
        head = ["key", "method", "value", "threshold", "mean", "max", "relative", "result"]
        body = [[r.key, r.method, f"{r.value:.3e}", f"{r.threshold:.1e}", f"{r.mean:.3e}", f"{r.max:.3e}",
                 f"{r.relative:.3e}", ("PASS" if r.passed else "FAIL") + (f" ({r.note})" if r.note else "")]
                for r in self.rows]
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        lines = ([self.title] if self.title else []) + [fmt(head), fmt(["-" * w for w in widths])]
        lines += [fmt(b) for b in body]
        lines.append(f"{'PASSED' if self.passed else 'FAILED'}: {sum(r.passed for r in self.rows)} of "
                     f"{len(self.rows)} checks pass")
        return "\n".join(lines)

    def to_dict(self):
        return {"title": self.title, "passed": self.passed, "rows": [asdict(r) for r in self.rows]}

    def write(self, path):
        """A text report at path and the same as JSON at path.json (read by repro.report)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.table() + "\n")
        with open(path + ".json", "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1, default=float)


def diff_stats(a, b):
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    if d.size == 0:
        return 0.0, 0.0, 0.0
    scale = max(float(np.abs(np.asarray(b, np.float64)).max()), 1e-12)
    return float(d.mean()), float(d.max()), float(d.max()) / scale


def compare(a, b, method="mean", threshold=1e-6, per_key=None, title=""):
    """Compare two records key by key. per_key: {key: (method, threshold)}."""
    if method not in METHODS:
        raise ReproError(f"unknown diff method {method!r}; methods: {', '.join(METHODS)}")
    per_key = per_key or {}
    result = AlignResult(title=title)
    for key in list(a) + [k for k in b if k not in a]:
        m, t = per_key.get(key, (method, threshold))
        if m not in METHODS:
            raise ReproError(f"unknown diff method {m!r} for {key}; methods: {', '.join(METHODS)}")
        row = Row(key, m, float(t))
        if key not in b or key not in a:
            row.note = f"only in the {'first' if key in a else 'second'} record"
        elif np.shape(a[key]) != np.shape(b[key]):
            row.note = f"shape {np.shape(a[key])} vs {np.shape(b[key])}"
        else:
            row.mean, row.max, row.relative = diff_stats(a[key], b[key])
            row.passed = bool(np.isfinite(row.value) and row.value <= row.threshold)
            if not np.isfinite(row.value):
                row.note = "NaN or inf"
        result.rows.append(row)
    return result
