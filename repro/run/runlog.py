"""A run's logs: the machine-readable event log and the human text derived from it.

events.jsonl  one JSON object per line, append-only: {"seq", "time", "kind",
              "prev", ...payload}; "prev" is the sha256 of the previous line's
              bytes (64 zeros for the first), so lines cannot be removed,
              reordered or edited without breaking the chain. The format is
              written down in docs/log-format.md (FORMAT below), and SCHEMA
              here is its machine-checked form.
train.log     the same events as text, in the style of Paddle's reproduction
              guide (iter, loss, lr, reader_cost, batch_cost, ips).
vdl/          VisualDL scalars (optional).

read_log() is strict and bounded (repro.strict): a log a stranger wrote is
either read as exactly the events SCHEMA allows, or refused with one line
naming the file, the line and the key.
"""
import hashlib
import json
import math
import re
import time

from repro import strict
from repro.strict import short
from repro.errors import ReproError

FORMAT = "repro-log/2"
GENESIS = "0" * 64
MAX_LINE = 1 << 20  # bytes; the header of a big config is a few KiB
MAX_LOG = 64 << 20  # bytes; 100,000 events are about 30 MiB
NONFINITE = ("nan", "inf", "-inf")
STATUSES = ("success", "interrupted", "diverged", "failed")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def line_hash(line):
    """sha256 of one event line as stored, without its newline."""
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the schema

def _int(v):
    return type(v) is int and v >= 0


def _num(v):
    return type(v) in (int, float) and math.isfinite(v)


def _num_or_nonfinite(v):
    return _num(v) or v in NONFINITE


def _str(v):
    return type(v) is str


def _hex(v):
    return type(v) is str and _HEX64.fullmatch(v) is not None


def _metrics(v):
    return type(v) is dict and all(_str(k) and _num_or_nonfinite(x) for k, x in v.items())


def _counts(v):
    return type(v) is dict and all(_str(k) and _int(x) for k, x in v.items())


def _strs(v):
    return type(v) is list and all(_str(x) for x in v)


def _dict(v):
    return type(v) is dict


def _data(v):
    return type(v) is dict and all(
        type(d) is dict and set(d) == {"n", "sha256"} and _int(d["n"]) and _hex(d["sha256"]) for d in v.values())


def _str_map(v):
    return type(v) is dict and all(_str(x) for x in v.values())


def _targets(v):
    return type(v) is list and all(type(t) is dict for t in v)


TYPES = {_int: "a non-negative integer", _num: "a finite number", _num_or_nonfinite: "a number",
         _str: "a string", _hex: "a sha256 (64 hex digits)", _metrics: "an object of metric numbers",
         _counts: "an object of counts", _strs: "a list of strings", _dict: "an object",
         _data: "an object of {n, sha256} per split", _str_map: "an object of strings",
         _targets: "a list of objects", bool: "true or false"}

COMMON = {"seq": _int, "time": _num, "kind": _str, "prev": _hex}
# kind: ({required field: check}, {optional field: check})
SCHEMA = {
    "run_start": ({"format": _str, "paper": _str, "exp": _str, "title": _str, "lite": bool, "overrides": _strs,
                   "config": _dict, "config_hash": _hex, "targets": _targets, "metrics": _str_map, "data": _data,
                   "init_weights_sha256": _hex, "env": _dict, "code": _dict, "provenance": _str_map},
                  {"artifact_sha256": _hex}),
    "train": ({"step": _int, "steps": _int, "epoch": _int, "loss": _num_or_nonfinite, "lr": _num,
               "reader_cost": _num, "batch_cost": _num, "ips": _num, "eta": _str}, {}),
    "eval": ({"step": _int, "metrics": _metrics, "samples": _counts}, {}),
    "checkpoint": ({"step": _int, "path": _str, "sha256": _hex, "weights_sha256": _hex}, {"decisions_sha256": _hex}),
    "resume": ({"step": _int, "env": _dict, "code": _dict}, {"note": _str}),
    # peak_memory_bytes: written for a few hours of 2026-12-07 (the MNIST-1D reference runs carry it), then
    # moved to resources.json beside the log; read and ignored
    "run_end": ({"status": _str, "step": _int}, {"metrics": _metrics, "seconds": _num, "reason": _str,
                                                 "peak_memory_bytes": _int}),
}


def check_event(ev, where):
    """Raise a ReproError naming where and the key if ev is not an event SCHEMA allows."""
    if type(ev) is not dict:
        raise ReproError(f"{where} is not an event (a JSON object)")
    kind = ev.get("kind")
    if kind not in SCHEMA:
        raise ReproError(f"{where}: unknown event kind {kind!r}" if _str(kind) else f"{where}: no event kind")
    required, optional = SCHEMA[kind]
    fields = {**COMMON, **required, **optional}
    for key, value in ev.items():
        if key not in fields:
            raise ReproError(f"{where}: {kind} has an unknown key {key!r}")
        ok = fields[key](value) if fields[key] is not bool else type(value) is bool
        if not ok:
            raise ReproError(f"{where}: {kind} key {key!r} must be {TYPES[fields[key]]}, got {short(value, 60)}")
    for key in {**COMMON, **required}:
        if key not in ev:
            raise ReproError(f"{where}: {kind} has no {key!r}")
    if kind == "run_end" and ev["status"] not in STATUSES:
        raise ReproError(f"{where}: run_end status {ev['status']!r} is not one of {', '.join(STATUSES)}")



# ---------------------------------------------------------------- reading

def read_log(path, allow_partial_tail=False):
    """(lines, events) of an events.jsonl file: each line's exact text (for the
    hash chain) and its checked event. A ReproError names the line and key of
    the first problem. With allow_partial_tail, a last line without its newline
    (a kill while it was written) is left out instead: (lines, events, tail bytes)."""
    out_lines, events, tail = [], [], b""
    for n, raw, ended in strict.lines(path, MAX_LINE, MAX_LOG):
        if not ended:
            if allow_partial_tail:
                tail = raw
                break
            raise ReproError(f"{path} line {n} is incomplete (no newline): the run was stopped while writing it")
        where = f"{path} line {n}"
        text = strict.utf8(raw, where)
        ev = strict.loads_json(text, where)
        if n == 1 and isinstance(ev, dict) and ev.get("kind") == "run_start" and ev.get("format") != FORMAT:
            # nothing else can be read reliably in another version of the format
            got = ev.get("format")
            raise ReproError(f"{path}: unknown log format {got if _str(got) else None!r} "
                             f"(this version of repro reads {FORMAT})")
        check_event(ev, where)
        out_lines.append(text)
        events.append(ev)
    if not events:
        raise ReproError(f"{path} holds no events")
    return (out_lines, events, tail) if allow_partial_tail else (out_lines, events)


# ---------------------------------------------------------------- writing

def _clean(value):
    """JSON has no NaN/inf: write them as strings so the file stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _fmt_metrics(metrics):
    return ", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items())


class RunLog:
    """Appends events to events.jsonl (and their text to train.log and VisualDL).
    A log that already has lines is continued (resume): `lines` are its lines as read."""

    def __init__(self, events_path, text_path, vdl_dir=None, echo=print, lines=()):
        self.seq, self.prev = len(lines), line_hash(lines[-1]) if lines else GENESIS
        self._events = open(events_path, "a", encoding="utf-8")
        self._text = open(text_path, "a", encoding="utf-8")
        self._echo = echo
        self._vdl = None
        if vdl_dir:
            from visualdl import LogWriter
            self._vdl = LogWriter(logdir=vdl_dir)

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
            loss = ev["loss"]
            line = (f"epoch: {ev['epoch']}, iter: {ev['step']}/{ev['steps']}, "
                    f"loss: {loss if isinstance(loss, str) else f'{loss:.5f}'}, "
                    f"lr: {ev['lr']:.6f}, reader_cost: {ev['reader_cost']:.5f} s, "
                    f"batch_cost: {ev['batch_cost']:.5f} s, ips: {ev['ips']:.1f} samples/s, eta: {ev['eta']}")
            self._scalars(ev["step"], {"train/loss": ev["loss"], "train/lr": ev["lr"], "train/ips": ev["ips"]})
        elif kind == "eval":
            line = f"eval iter: {ev['step']}, {_fmt_metrics(ev['metrics'])}"
            self._scalars(ev["step"], {f"eval/{k}": v for k, v in ev["metrics"].items()})
        elif kind == "run_start":
            line = (f"run_start paper: {ev['paper']}, exp: {ev['exp']}, seed: {ev['config']['train']['seed']}, "
                    f"lite: {ev['lite']}, config_hash: {ev['config_hash'][:12]}")
        elif kind == "resume":
            line = f"resume from iter {ev['step']}" + (f" ({ev['note']})" if ev.get("note") else "")
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
        for f in (self._events, self._text):
            try:
                f.close()
            except OSError:  # a full disk can refuse the last flush; the caller reports the first error
                pass
        if self._vdl is not None:
            try:
                self._vdl.close()
            except OSError:
                pass
