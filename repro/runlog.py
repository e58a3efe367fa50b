"""A run's logs: the machine-readable event log and the human text derived from it.

events.jsonl  one JSON object per line, append-only: {"seq", "time", "kind",
              "prev", ...payload}; "prev" is the sha256 of the previous line's
              bytes (64 zeros for the first), so lines cannot be removed,
              reordered or edited without breaking the chain. The format is
              written down in docs/log-format.md (FORMAT below).
              kinds: run_start (header), resume, train, eval, checkpoint, run_end.
train.log     the same events as text, in the style of Paddle's reproduction
              guide (iter, loss, lr, reader_cost, batch_cost, ips).
vdl/          VisualDL scalars (optional).
"""
import hashlib
import json
import math
import os
import time

from repro.errors import ReproError

EVENTS = "events.jsonl"
TEXT = "train.log"
FORMAT = "repro-log/1"
GENESIS = "0" * 64


def line_hash(line):
    """sha256 of one event line as stored, without its newline."""
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


def _clean(value):
    """JSON has no NaN/inf: write them as strings so the file stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def read_log(run_dir):
    """(lines, events): each line's exact text (for the hash chain) and its event.
    A ReproError names the line when the file cannot be read as events."""
    path = os.path.join(run_dir, EVENTS)
    if not os.path.isfile(path):
        raise ReproError(f"{run_dir} is not a run: no {EVENTS}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise ReproError(f"{path} is not UTF-8 text") from None
    if lines[-1] == "":
        lines.pop()
    events = []
    for n, line in enumerate(lines, 1):
        try:
            ev = json.loads(line)
        except json.JSONDecodeError as e:
            raise ReproError(f"{path} line {n} is not JSON ({e.msg})") from None
        if not isinstance(ev, dict) or "kind" not in ev:
            raise ReproError(f"{path} line {n} is not an event (no 'kind')")
        events.append(ev)
    if not events:
        raise ReproError(f"{path} is empty")
    return lines, events


def read_events(run_dir):
    return read_log(run_dir)[1]


def _fmt_metrics(metrics):
    return ", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items())


class RunLog:
    def __init__(self, run_dir, visualdl=False, echo=print):
        self.run_dir = run_dir
        path = os.path.join(run_dir, EVENTS)
        self.seq, self.prev = 0, GENESIS
        if os.path.exists(path):  # a resumed run continues the chain
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
            if lines[-1] != "":
                raise ReproError(f"{path} ends with an incomplete line; the run cannot be continued")
            lines = lines[:-1]
            self.seq = len(lines)
            if lines:
                self.prev = line_hash(lines[-1])
        self._events = open(path, "a", encoding="utf-8")
        self._text = open(os.path.join(run_dir, TEXT), "a", encoding="utf-8")
        self._echo = echo
        self._vdl = None
        if visualdl:
            from visualdl import LogWriter
            self._vdl = LogWriter(logdir=os.path.join(run_dir, "vdl"))

    def event(self, kind, **payload):
        record = {"seq": self.seq, "time": round(time.time(), 3), "kind": kind, "prev": self.prev, **_clean(payload)}
        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        self._events.write(line + "\n")
        self._events.flush()
        self.seq += 1
        self.prev = line_hash(line)
        self._human(record)
        return record

    def _human(self, ev):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev["time"]))
        kind = ev["kind"]
        if kind == "train":
            line = (f"epoch: {ev['epoch']}, iter: {ev['step']}/{ev['steps']}, loss: {ev['loss']:.5f}, "
                    f"lr: {ev['lr']:.6f}, reader_cost: {ev['reader_cost']:.5f} s, "
                    f"batch_cost: {ev['batch_cost']:.5f} s, ips: {ev['ips']:.1f} samples/s, eta: {ev['eta']}")
            self._scalars(ev["step"], {"train/loss": ev["loss"], "train/lr": ev["lr"], "train/ips": ev["ips"]})
        elif kind == "eval":
            line = f"eval iter: {ev['step']}, {_fmt_metrics(ev['metrics'])}"
            self._scalars(ev["step"], {f"eval/{k}": v for k, v in ev["metrics"].items()})
        elif kind == "run_start":
            line = f"run_start paper: {ev['paper']}, exp: {ev['exp']}, seed: {ev['seed']}, lite: {ev['lite']}, config_hash: {ev['config_hash'][:12]}"
        elif kind == "resume":
            line = f"resume from checkpoint at iter {ev['step']}"
        elif kind == "checkpoint":
            line = f"checkpoint iter: {ev['step']}, {ev['path']} sha256: {ev['sha256'][:16]}"
        elif kind == "run_end":
            line = f"run_end status: {ev['status']}, iter: {ev['step']}" + (
                f", {_fmt_metrics(ev['metrics'])}" if ev.get("metrics") else "") + (
                f" ({ev['reason']})" if ev.get("reason") else "")
        else:
            line = f"{kind} {json.dumps({k: v for k, v in ev.items() if k not in ('seq', 'time', 'kind')})}"
        self._text.write(f"[{stamp}] {line}\n")
        self._text.flush()
        if self._echo:
            self._echo(f"[{stamp}] {line}")

    def _scalars(self, step, values):
        if self._vdl is None:
            return
        for tag, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self._vdl.add_scalar(tag=tag, value=v, step=step)

    def close(self):
        self._events.close()
        self._text.close()
        if self._vdl is not None:
            self._vdl.close()
