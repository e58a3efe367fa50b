"""Compliance checks on one run, each failing with its own message.

load_run() reads a run directory (a ReproError only when it cannot be read at
all); check_run() lists every reason the run cannot count; recompute() re-runs
the evaluation from the checkpoint the log names. The log format is described
in docs/log-format.md.
"""
import math
import os
from dataclasses import dataclass, field

from repro import checkpoint
from repro.config import config_hash, from_dict, load_config, set_key, to_dict
from repro.errors import ReproError
from repro.registry import get_paper
from repro.runlog import EVENTS, FORMAT, GENESIS, line_hash, read_log

# Config keys a run may change without changing the experiment: they decide
# what is logged and when, not what is computed.
FREE_KEYS = {"train.seed", "train.log_every", "train.checkpoint_every", "train.visualdl",
             "train.amp.enabled", "train.amp.level", "train.amp.dtype"}
# Recomputed metrics must equal the logged ones exactly when both sides ran on
# the CPU; where the run used an accelerator, within this relative tolerance.
RECOMPUTE_RTOL_ACCELERATOR = 1e-3


@dataclass
class Run:
    path: str
    lines: list
    events: list
    header: dict
    paper: str = ""
    exp: str = ""
    seed: int = None
    metrics: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def last(self, kind):
        return next((e for e in reversed(self.events) if e.get("kind") == kind), None)


def load_run(path):
    lines, events = read_log(path)
    head = events[0]
    if head["kind"] != "run_start":
        raise ReproError(f"{os.path.join(path, EVENTS)} does not start with a run_start event")
    for key in ("paper", "exp", "seed", "config"):
        if key not in head:
            raise ReproError(f"{os.path.join(path, EVENTS)}: run_start has no {key!r}")
    return Run(path, lines, events, head, head["paper"], head["exp"], head["seed"])


# ------------------------------------------------------------------ the checks

def check_chain(run):
    seqs = [e.get("seq") for e in run.events]
    prev = GENESIS
    for i, (line, ev) in enumerate(zip(run.lines, run.events)):
        n, seq = i + 1, ev.get("seq")
        if seq != i:
            if seq in seqs[:i]:
                return [f"line {n}: seq {seq} repeats line {seqs.index(seq) + 1} (a duplicated line)"]
            if i in seqs[i + 1:]:
                return [f"line {n}: seq {seq} where {i} was expected (lines reordered)"]
            return [f"line {n}: seq {seq} where {i} was expected (a line was removed)"]
        if ev.get("prev") != prev:
            what = "is not the chain's start" if i == 0 else f"does not match line {n - 1}"
            return [f"line {n}: hash chain broken: its prev {what} (a line was edited, inserted or removed)"]
        prev = line_hash(line)
    return []


def check_events(run):
    problems = []
    kinds = [e["kind"] for e in run.events]
    for kind in ("eval", "checkpoint"):
        if kind not in kinds:
            problems.append(f"missing required event: no {kind}")
    if kinds[-1] != "run_end":
        problems.append("the run did not finish: the log does not end with run_end")
    elif run.events[-1].get("status") != "success":
        problems.append(f"the run ended with status {run.events[-1].get('status')!r}")
    for i, kind in enumerate(kinds[:-1]):
        if kind == "run_end" and kinds[i + 1] != "resume":
            problems.append(f"line {i + 1}: run_end is not the last event and no resume follows it")
    return problems


def check_protocol(run, paper, exp):
    problems = []
    head = run.header
    if config_hash(head["config"]) != head.get("config_hash"):
        problems.append("config_hash does not match the logged config")
    if head.get("lite"):
        problems.append("a --lite smoke run, not the experiment")
    if head.get("seed") != head["config"].get("train", {}).get("seed"):
        problems.append(f"the header's seed {head.get('seed')} is not the config's train.seed")
    diffs = config_differences(paper, exp, head["config"])
    if diffs:
        problems.append("config departs from the registered experiment: " + "; ".join(diffs))
    registered = [t.to_dict() for t in exp.targets]
    if head.get("targets") != registered:
        problems.append("the log's targets differ from the registered ones: "
                        + _diff_targets(head.get("targets"), registered))
    try:
        cfg = from_dict(paper.config_class, head["config"])
        metrics = {n: f"{type(m).__module__}.{type(m).__qualname__}" for n, m in paper.metrics(cfg).items()}
    except ReproError as e:
        problems.append(f"the logged config is not valid: {e}")
        metrics = None
    if metrics is not None and head.get("metrics") != metrics:
        problems.append(f"metric definitions differ from the registered ones: logged {head.get('metrics')}, "
                        f"registered {metrics}")
    data = head.get("data") or {}
    for split, (n, sha) in exp.eval_data.items():
        got = data.get(split)
        if not isinstance(got, dict):
            problems.append(f"the log does not record its {split!r} evaluation data")
        elif got.get("n") != n or (sha is not None and got.get("sha256") != sha):  # sha None: count only
            problems.append(f"evaluation data {split!r} differ from the registered protocol: "
                            f"{got.get('n')} samples, sha256 {str(got.get('sha256'))[:12]}… "
                            f"(registered {n} samples, sha256 {str(sha)[:12]}…)")
    return problems


def check_models(run, paper):
    """(problems, warnings) about what a full run used by path (its free keys): no
    built-in smoke model or data (random weights); a pinned model must be the pinned
    file; an unpinned one is named, so a maintainer can judge it."""
    head = run.header
    if head.get("lite") or not paper.free_keys:
        return [], []
    config = flatten(head["config"]) if isinstance(head["config"], dict) else {}
    provenance = head.get("provenance") or {}
    smoke = [f"{k}={config[k]}" for k in paper.free_keys if str(config.get(k, "")).startswith("builtin:")]
    smoke += [f"{name}: {v}" for name, v in provenance.items() if "random-init" in str(v)]
    problems = ["built-in smoke-test models or data (random weights), on which no result can rest: "
                + "; ".join(smoke)] if smoke else []
    warnings = []
    for name, (key, pin) in paper.pins.items():
        want, used = config.get(pin), provenance.get(name)
        if want and f"sha256:{want}" not in str(used):
            problems.append(f"{key}: the run used {used!r}, not the registered file ({pin} {want[:12]}…)")
        elif not want:
            warnings.append(f"{key} is not pinned by the registered config ({pin} is empty): the result rests "
                            f"on the run's own choice, {used!r}")
    return problems, warnings


def check_order(run):
    """Time never goes back; steps of each kind strictly increase, except that a
    resume restarts them from a logged checkpoint."""
    problems = []
    last_time = -math.inf
    last = {"train": 0, "eval": 0, "checkpoint": 0}
    checkpoints = set()
    total = run.header["config"].get("train", {}).get("steps")
    for n, ev in enumerate(run.events, 1):
        t = ev.get("time")
        if not isinstance(t, (int, float)) or t < last_time:
            problems.append(f"line {n}: time goes backwards ({t} after {last_time})")
            break
        last_time = t
        kind, step = ev["kind"], ev.get("step")
        if kind == "resume":
            if step not in checkpoints:
                problems.append(f"line {n}: resume from step {step}, where no checkpoint was logged")
            last = dict.fromkeys(last, step)
        elif kind in last:
            if not isinstance(step, int) or step <= last[kind]:
                problems.append(f"line {n}: {kind} at step {step} after step {last[kind]} (steps go backwards or repeat)")
                break
            if total is not None and step > total:
                problems.append(f"line {n}: {kind} at step {step}, beyond the configured {total} steps")
            last[kind] = step
            if kind == "checkpoint":
                checkpoints.add(step)
    return problems


def check_results(run):
    """The final metrics must be the last evaluation's, at the final step, with a checkpoint there."""
    end, last_eval, last_ckpt = run.events[-1], run.last("eval"), run.last("checkpoint")
    if end["kind"] != "run_end" or end.get("status") != "success" or last_eval is None:
        return []
    problems = []
    total = run.header["config"].get("train", {}).get("steps")
    if end.get("metrics") != last_eval.get("metrics"):
        problems.append(f"results contradict each other: the final metrics {end.get('metrics')} are not "
                        f"those of the last evaluation {last_eval.get('metrics')}")
    if not (end.get("step") == last_eval.get("step") == total):
        problems.append(f"the run ends at step {end.get('step')} with its last evaluation at step "
                        f"{last_eval.get('step')}, but the config trains {total} steps")
    if last_ckpt is None or last_ckpt.get("step") != total:
        problems.append("no checkpoint was logged at the final step")
    run.metrics = end.get("metrics") or {}
    return problems


def check_run(run):
    """Every reason this run cannot count (empty when it can)."""
    try:
        paper = get_paper(run.paper)
        exp = paper.experiment(run.exp)
    except ReproError as e:
        run.problems.append(str(e))
        return run
    if run.header.get("format") != FORMAT:  # nothing else can be read reliably
        run.problems.append(f"unknown log format {run.header.get('format')!r} (expected {FORMAT})")
        return run
    run.problems += check_chain(run)
    run.problems += check_events(run)
    run.problems += check_protocol(run, paper, exp)
    problems, warnings = check_models(run, paper)
    run.problems += problems
    run.warnings += warnings
    run.problems += check_order(run)
    run.problems += check_results(run)
    code = run.header.get("code") or {}
    if code.get("git_dirty"):
        run.warnings.append("the git tree had uncommitted changes when the run started")
    return run


# ------------------------------------------------------------------ recompute

def recompute(run, local=None):
    """Re-run the evaluation from the checkpoint the log names; returns problems.

    local: {config key: value} for the paper's free keys (local paths of a
    pretrained model or metric weights on the verifying machine); what they
    point to must have the identities the run logged (its provenance)."""
    from repro.eval import evaluate

    ck = run.last("checkpoint")
    if ck is None:
        return ["--recompute: the log names no checkpoint"]
    name = ck.get("path", "")
    if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
        return [f"--recompute: the logged checkpoint path {name!r} is not a file in the run directory"]
    file = os.path.join(run.path, name)
    if not os.path.isfile(file):
        return [f"--recompute: the logged checkpoint {name} is missing"]
    if checkpoint.sha256_file(file) != ck.get("sha256"):
        return [f"--recompute: {name} is not the checkpoint the log names (sha256 differs)"]
    try:
        tensors, meta = checkpoint.read(file)
    except ReproError as e:
        return [f"--recompute: {e}"]
    head = run.header
    if (meta.get("paper"), meta.get("exp"), meta.get("config_hash")) != (head["paper"], head["exp"], head.get("config_hash")):
        return [f"--recompute: {name} belongs to another run ({meta.get('paper')}/{meta.get('exp')})"]
    if meta.get("step") != str(ck.get("step")):
        return [f"--recompute: {name} holds step {meta.get('step')}, the log says {ck.get('step')}"]
    seq = int(meta.get("log_seq", "0") or 0)
    if not (0 < seq <= len(run.lines)) or line_hash(run.lines[seq - 1]) != meta.get("log_head"):
        return [f"--recompute: {name} was not written after this log's line {seq}: the log before it was rewritten"]

    import paddle

    paper = get_paper(run.paper)
    cfg = from_dict(paper.config_class, head["config"])
    for key, value in (local or {}).items():
        if key not in paper.free_keys:
            raise ReproError(f"--local {key}: not a local-path key of {paper.name} "
                             f"(those are: {', '.join(paper.free_keys) or 'none'})")
        set_key(cfg, key, value)
    try:
        mine = paper.provenance(cfg)
        differ = [f"{k}: logged {v!r}, here {mine.get(k)!r}" for k, v in (head.get("provenance") or {}).items()
                  if _identities(v) != _identities(mine.get(k))]
        if differ:
            return [f"--recompute: this machine's files are not the ones the run used ({'; '.join(differ)}); "
                    "point --local KEY=PATH at copies of them"]
        paddle.seed(0)
        model = paper.build_model(cfg)
        checkpoint.load_model(model, tensors, file)
        got, _ = evaluate(paper, model, cfg, paper.build_data(cfg))
    except ReproError as e:
        return [f"--recompute: cannot rebuild the run here: {e}"]
    logged = run.metrics or (run.events[-1].get("metrics") or {})
    exact = str(head.get("env", {}).get("device", "cpu")).startswith("cpu") and paddle.device.get_device() == "cpu"
    rtol = 0.0 if exact else RECOMPUTE_RTOL_ACCELERATOR
    bad = [f"{k} logged {logged.get(k)!r}, recomputed {got.get(k)!r}" for k in sorted(set(got) | set(logged))
           if not (isinstance(logged.get(k), (int, float)) and k in got
                   and abs(got[k] - logged[k]) <= rtol * max(1.0, abs(logged[k])))]
    if bad:
        return [f"--recompute: the checkpoint does not give the logged metrics ({'; '.join(bad)})"]
    return []


# ------------------------------------------------------------------ helpers

def _identities(text):
    """The sha256 digests in a provenance entry (its path part may differ between
    machines), or the whole text when it names no digest."""
    import re
    found = re.findall(r"sha256:([0-9a-f]{64})", str(text))
    return sorted(found) if found else str(text)


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(paper, exp, config):
    """Keys where a run's config departs from the registered experiment config."""
    registered = flatten(to_dict(load_config(paper.config_class, exp.config_path)))
    used = flatten(config) if isinstance(config, dict) else {}
    return [f"{k}={used.get(k, '<absent>')!r} (registered {registered.get(k, '<absent>')!r})"
            for k in sorted(set(registered) | set(used))
            if k not in FREE_KEYS and k not in paper.free_keys
            and registered.get(k, "<absent>") != used.get(k, "<absent>")]


def _diff_targets(logged, registered):
    if not isinstance(logged, list) or len(logged) != len(registered):
        return f"logged {logged!r}"
    out = []
    for got, want in zip(logged, registered):
        for k in want:
            if not isinstance(got, dict) or got.get(k) != want[k]:
                out.append(f"{want['metric']} {k} {got.get(k) if isinstance(got, dict) else got!r} "
                           f"(registered {want[k]!r})")
    return "; ".join(out)
