"""Compliance checks on one run, from its files alone, each failing with its own message.

load_run() reads a run directory and never raises: a run that cannot be read
is returned with the reason as its problem. check_run() lists every reason
the run cannot count against its protocol (repro/judge/protocol.py: the registered
experiment, or a contest's entry). What re-executes the run's code (recompute,
replay) is repro/judge/audit.py. The log format is described in docs/log-format.md.
"""
import math

from repro.config import config_hash, flatten
from repro.errors import ReproError
from repro.run import decisions, rundir
from repro.run.checkpoint import weights_sha256
from repro.run.runlog import GENESIS, line_hash
from repro.strict import short

LITE = "a --lite smoke run, not the experiment"
# a run without the checkpoints its target's replay audit needs (a reference run): it does not
# count, but --recompute still scores its final checkpoint (repro.judge.references)
NO_AUDIT = "the target requires the replay audit, with checkpoints kept at most"


def load_run(path):
    """A rundir.Run; an unreadable one carries the reason as its problem."""
    try:
        return rundir.read(path)
    except ReproError as e:
        return rundir.Run(path, [], [], problems=[f"unreadable: {e}"])


# ------------------------------------------------------------------ the checks

def check_chain(run):
    seqs = [e["seq"] for e in run.events]
    prev = GENESIS
    for i, (line, ev) in enumerate(zip(run.lines, run.events)):
        n, seq = i + 1, ev["seq"]
        if seq != i:
            if seq in seqs[:i]:
                return [f"line {n}: seq {seq} repeats line {seqs.index(seq) + 1} (a duplicated line)"]
            if i in seqs[i + 1:]:
                return [f"line {n}: seq {seq} where {i} was expected (lines reordered)"]
            return [f"line {n}: seq {seq} where {i} was expected (a line was removed)"]
        if ev["prev"] != prev:
            what = "is not the chain's start" if i == 0 else f"does not match line {n - 1}"
            return [f"line {n}: hash chain broken: its prev {what} (a line was edited, inserted or removed)"]
        prev = line_hash(line)
    return []


def check_events(run):
    problems = []
    kinds = [e["kind"] for e in run.events]
    if "run_start" in kinds[1:]:
        problems.append(f"line {kinds.index('run_start', 1) + 1}: a second run_start")
    for kind in ("eval", "checkpoint"):
        if kind not in kinds:
            problems.append(f"missing required event: no {kind}")
    if kinds[-1] != "run_end":
        problems.append("the run did not finish: the log does not end with run_end")
    elif run.events[-1]["status"] != "success":
        problems.append(f"the run ended with status {run.events[-1]['status']!r}")
    for i, kind in enumerate(kinds[:-1]):
        if kind == "run_end" and kinds[i + 1] != "resume":
            problems.append(f"line {i + 1}: run_end is not the last event and no resume follows it")
    return problems


def check_protocol(run, protocol):
    problems = []
    head = run.header
    if config_hash(head["config"]) != head["config_hash"]:
        problems.append("config_hash does not match the logged config")
    if head["lite"]:
        problems.append(LITE)
    try:
        run.cfg = protocol.parse_config(head["config"])
    except ReproError as e:
        problems.append(f"the logged config is not valid: {e}")
        return problems
    diffs = protocol.config_differences(head["config"], head["lite"])
    if diffs:
        problems.append(f"config departs from {protocol.source}: " + "; ".join(diffs))
    registered = [t.to_dict() for t in protocol.targets]
    if head["targets"] != registered:
        differ = _diff_targets(head["targets"], registered)
        if protocol.owns_header:
            problems.append("the log's targets differ from the registered ones: " + differ)
        else:  # a contest judges by its own targets, whatever the plugin declared
            run.warnings.append(f"the plugin's own targets are not {protocol.source}'s, which are the ones "
                                f"judged: {differ}")
    metrics = protocol.metric_definitions(run.cfg)
    logged = head["metrics"] if protocol.owns_header else {k: v for k, v in head["metrics"].items() if k in metrics}
    if logged != metrics:
        problems.append(f"metric definitions differ from the registered ones: logged {short(head['metrics'], 80)}, "
                        f"registered {metrics}")
    for split, (n, sha) in ({} if head["lite"] else protocol.eval_data).items():  # lite runs use smoke data
        got = head["data"].get(split)
        if got is None:
            problems.append(f"the log does not record its {split!r} evaluation data")
        elif got["n"] != n or (sha is not None and got["sha256"] != sha):  # sha None: count only
            problems.append(f"evaluation data {split!r} differ from the registered protocol: "
                            f"{got['n']} samples, sha256 {got['sha256'][:12]}… "
                            f"(registered {n} samples, sha256 {str(sha)[:12]}…)")
    if protocol.train_data is not None and not head["lite"]:
        got, (n, sha) = head["data"].get("train"), protocol.train_data
        if got is None or got["n"] != n or got["sha256"] != sha:
            problems.append("the training data differ from the pinned ones: "
                            + (f"{got['n']} samples, sha256 {got['sha256'][:12]}…" if got else "none logged")
                            + f" (pinned {n} samples, sha256 {sha[:12]}…)")
    try:
        rundir.check_config_file(run)
    except ReproError as e:
        problems.append(str(e))
    return problems


def check_models(run, protocol):
    """(problems, warnings) about what a full run used by path (its free keys): no
    built-in smoke model or data (random weights); a pinned model must be the pinned
    file; an unpinned one is named, so a maintainer can judge it."""
    head = run.header
    if head["lite"] or not protocol.path_keys:
        return [], []
    config = flatten(head["config"])
    provenance = head["provenance"]
    smoke = [f"{k}={config[k]}" for k in protocol.path_keys if str(config.get(k, "")).startswith("builtin:")]
    smoke += [f"{name}: {v}" for name, v in provenance.items() if "random-init" in str(v)]
    problems = ["built-in smoke-test models or data (random weights), on which no result can rest: "
                + "; ".join(smoke)] if smoke else []
    warnings = []
    for name, (key, pin) in protocol.pins.items():
        want, used = config.get(pin), provenance.get(name)
        if want and f"sha256:{want}" not in str(used):
            problems.append(f"{key}: the run used {used!r}, not the registered file ({pin} {str(want)[:12]}…)")
        elif not want:
            warnings.append(f"{key} is not pinned by the registered config ({pin} is empty): the result rests "
                            f"on the run's own choice, {used!r}")
    return problems, warnings


def check_order(run):
    """Time never goes back; steps of each kind strictly increase, except that a
    resume restarts them from a logged checkpoint (or from step 0: the initial
    state, rebuilt from the seed)."""
    problems = []
    last_time = -math.inf
    last = {"train": 0, "eval": 0, "checkpoint": 0}
    checkpoints = {0}
    total = run.cfg.train.steps
    for n, ev in enumerate(run.events, 1):
        if ev["time"] < last_time:
            problems.append(f"line {n}: time goes backwards ({ev['time']} after {last_time})")
            break
        last_time = ev["time"]
        kind, step = ev["kind"], ev.get("step")
        if kind == "resume":
            if step not in checkpoints:
                problems.append(f"line {n}: resume from step {step}, where no checkpoint was logged")
            checkpoints = {s for s in checkpoints if s <= step}
            last = dict.fromkeys(last, step)
        elif kind in last:
            if step <= last[kind]:
                problems.append(f"line {n}: {kind} at step {step} after step {last[kind]} (steps go backwards or repeat)")
                break
            if step > total:
                problems.append(f"line {n}: {kind} at step {step}, beyond the configured {total} steps")
            last[kind] = step
            if kind == "checkpoint":
                checkpoints.add(step)
    return problems


def check_results(run, protocol):
    """The final metrics must be the last evaluation's, at the final step, with a
    checkpoint there; every value must be one the metric can take on the registered data."""
    end, last_eval = run.events[-1], run.last("eval")
    if end["kind"] != "run_end" or end["status"] != "success" or last_eval is None:
        return []
    problems = []
    total = run.cfg.train.steps
    if end.get("metrics") != last_eval["metrics"]:
        problems.append(f"results contradict each other: the final metrics {short(end.get('metrics'), 80)} are not "
                        f"those of the last evaluation {short(last_eval['metrics'], 80)}")
    if not (end["step"] == last_eval["step"] == total):
        problems.append(f"the run ends at step {end['step']} with its last evaluation at step "
                        f"{last_eval['step']}, but the config trains {total} steps")
    if total not in run.checkpoints():
        problems.append("no checkpoint was logged at the final step")
    counts = {} if run.header["lite"] else {split: n for split, (n, _) in protocol.eval_data.items()}
    for split, n in last_eval["samples"].items():
        if split in counts and n != counts[split]:
            problems.append(f"the last evaluation counted {n} {split!r} samples, the registered split has {counts[split]}")
    problems += impossible_values(protocol.metric_types(run.cfg), counts, last_eval["metrics"], "logged")
    run.metrics = dict(end.get("metrics") or {})
    return problems


def impossible_values(classes, counts, metrics, what):
    """Values a metric cannot take on the registered data (an accuracy that is not
    k/N of the split), and non-finite ones. classes: {metric name: its class}."""
    problems = []
    for key, value in metrics.items():
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"the {what} {key} is {value!r}, not a finite number")
            continue
        split, _, name = key.partition("_")
        check = getattr(classes.get(name), "impossible", None)
        if check and split in counts:
            why = check(value, counts[split])
            if why:
                problems.append(f"the {what} {key} cannot be: {why}")
    return problems


def check_checkpoints(run, policy_audit=0):
    """The final checkpoint and those the audit keeps: present, regular files inside
    the run, with the logged sha256 and metadata naming this run and the log lines
    before them; the logged weights_sha256 is the final weights'. Sets
    run.final_weights. No code of the paper runs here."""
    problems = []
    total = run.cfg.train.steps
    for step in run.kept_steps():
        try:
            # file, sha256 and metadata against the log, and the weights themselves: verify
            # compares every kept checkpoint's weights across runs (a spliced run shares them)
            tensors, _, ev = rundir.read_checkpoint(run, step)
            weights = weights_sha256(tensors)
            run.kept_weights[step] = weights
            if step == total:
                run.final_weights = weights
            if weights != ev["weights_sha256"]:
                problems.append(f"{ev['path']}: its weights are not the ones the log names (weights_sha256)")
        except ReproError as e:
            problems.append(str(e))
    if policy_audit:
        steps = [0] + run.kept_steps()
        gaps = [b - a for a, b in zip(steps, steps[1:])]
        if not gaps or max(gaps) > policy_audit:
            problems.append(f"{NO_AUDIT} {policy_audit} steps "
                            f"apart (train.audit_every), but this run kept {_kept(steps)}")
    return problems


def check_verifiable(run, protocol):
    """A target that requires verifiable training needs train.verifiable; a verifiable run needs,
    beside every kept checkpoint, the record its log line names (decisions_sha256): the rounding
    decisions and state hashes of exactly the updates since the kept checkpoint before it."""
    on = bool(getattr(run.cfg.train, "verifiable", False))
    if not on:
        wanted = [t.metric for t in protocol.targets if getattr(t.policy, "verifiable", False)]
        return [f"the target for {', '.join(wanted)} requires verifiable training (train.verifiable: true), so "
                f"that the replay audit is bitwise on any machine; this run computed in float32"] if wanted else []
    problems = []
    steps = [0] + run.kept_steps()
    done = run.checkpoints()
    for a, b in zip(steps, steps[1:]):
        try:
            path = rundir.decisions_file(run, done[b])
            logged = decisions.read(path, rundir.decisions_name(b))
            if (logged.a, logged.b) != (a, b):
                problems.append(f"{rundir.decisions_name(b)} covers updates {logged.a + 1}..{logged.b}, not the "
                                f"segment's {a + 1}..{b}")
        except ReproError as e:
            problems.append(str(e))
    return problems


def _kept(steps):
    inner = steps[1:-1]
    return "only its last checkpoint" if not inner else f"checkpoints at steps {', '.join(map(str, inner[:8]))}" + (
        "..." if len(inner) > 8 else "")


def check_run(run, protocol_of):
    """Every reason this run cannot count (empty when it can); sets run.protocol and run.cfg.
    protocol_of(run) gives what the run is judged against (a ReproError: the reason it has none)."""
    if run.problems:  # unreadable
        return run
    try:
        run.protocol = protocol_of(run)
    except ReproError as e:
        run.problems.append(str(e))
        return run
    protocol = run.protocol
    run.problems += check_chain(run)
    run.problems += check_events(run)
    run.problems += check_protocol(run, protocol)
    if run.cfg is None:  # nothing below can be read without a valid config
        return run
    problems, warnings = check_models(run, protocol)
    run.problems += problems
    run.warnings += warnings
    run.problems += check_order(run)
    run.problems += check_results(run, protocol)
    audit = max((t.policy.audit for t in protocol.targets), default=0)
    run.problems += check_checkpoints(run, audit)
    run.problems += check_verifiable(run, protocol)
    try:
        rundir.read_artifact(run)  # present, with the logged sha256, when the header names one
    except ReproError as e:
        run.problems.append(str(e))
    code = run.header["code"]
    for part in ("paper", "harness"):
        if isinstance(code.get(part), dict) and code[part].get("git_dirty"):
            run.warnings.append(f"the {part}'s code had uncommitted changes when the run started")
    return run


# ------------------------------------------------------------------ helpers


def _diff_targets(logged, registered):
    if not isinstance(logged, list) or len(logged) != len(registered):
        return f"logged {short(logged, 80)}"
    out = []
    for got, want in zip(logged, registered):
        for k in want:
            if got.get(k) != want[k]:
                out.append(f"{want['metric']} {k} {short(got.get(k), 80)} (registered {want[k]!r})")
    return "; ".join(out)
