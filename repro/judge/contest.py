"""Contest files: the maintainers' bar for each paper of a reproduction contest.

    name: MNIST-1D reproduction (example)
    deadline: "2027-03-31T23:59:59+08:00"
    budget: 14400                    # seconds one submission's workers may take in all (60..10**7; default 4 h)
    papers:                          # one entry per judged cell; a paper is reproduced when all its entries pass
      - plugin: mnist1d              # the paper name a submitted plugin registers
        experiment: cnn              # the experiment of the plugin that is judged
        metric: test_acc             # the logged metric ...
        measure: accuracy            # ... and the harness metric that must have computed it
        value: 94.0                  # the specified precision, and how it is judged:
        direction: higher
        tolerance: 1.4
        policy: mean_of_n
        n: 5
        seeds: [0, 1, 2, 3, 4]
        audit: 1000                  # checkpoints kept at most this far apart (1..10**7; 0: none)
        replay: default              # what the review replays of every run: "default" (the default
                                     # coverage, repro.judge.audit), "all", or N segments (2..10**4)
        verifiable: false            # true: every run trained with train.verifiable (each update in
                                     # float64, rounded back, the rounding logged), so its replay is
                                     # bitwise on the reviewer's machine, whatever CPU or GPU made it
        eval_data: {test: {n: 1000, sha256: 5b45...}}   # the registered evaluation data
        protocol: {train.steps: 8000, train.lr: 0.01}    # logged config values every run must have:
                                     # flat dotted keys under train., model., data., eval., optim. or
                                     # diffusion.; scalars only
        path_keys: []                # config keys that may hold a machine's local paths
        source: "Greydanus & Kobak 2024, results table"
        train_data: {n: 4000, sha256: 9c1e...}   # the split build_data must return; it does not pin
                                     # what train_step consumes (README: only private_eval answers
                                     # training on the test split)
        private_eval: {fresh: {n: 4000, source: mnist1d/cnn}}   # repro/judge/private.py; the source must
                                     # register the entry's eval_data split (checked when it is built)
        delta: 3.0                   # how its verdict's error rates are stated (repro/judge/rates.py):
        epsilon: 1.0                 # the shortfall a false accept is measured at, the equivalence margin,
        reference: mnist1d/cnn       # and the registered cell whose reference sets measure them

An entry with `kind: text_to_image` judges a submitted text-to-image bundle
instead of training runs: its schema is repro/judge/contest_t2i.py.

The schema is in code (ContestPaper); a contest file is read strictly, and
every problem is one line naming the file and the key. Judging against a
contest uses the contest's targets and nothing the submitted plugin declares
(repro.judge.protocol.ContestProtocol below): a submission cannot lower the bar.
"""
import math
import os
from dataclasses import dataclass, field
from datetime import datetime

from repro import strict
from repro.boundary.identity import check_tree
from repro.config import flatten
from repro.errors import ReproError
from repro.judge.contest_t2i import read_entry as t2i_entry
from repro.judge.protocol import Protocol, parse_train_only
from repro.metrics import METRICS
from repro.strict import SHA256, short as _short, typed as _typed
from repro.targets import DIRECTIONS, POLICIES, Policy, Target


@dataclass(frozen=True)
class ContestPaper:
    plugin: str
    experiment: str
    metric: str
    measure: str
    value: float
    direction: str = "higher"
    tolerance: float = 0.0
    policy: str = "single"
    n: int = 1
    seeds: tuple = ()
    audit: int = 0
    replay: object = "default"       # "default", "all" or an int N >= 2 (repro.judge.options.parse_replay)
    eval_data: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)
    path_keys: tuple = ()
    source: str = ""
    private_eval: dict = field(default_factory=dict)  # {"fresh": {n, source}} or {"file": {path, sha256}}
    train_data: tuple = None                          # (n, sha256): the training split every run must use
    verifiable: bool = False  # every run trained with train.verifiable: its replay is bitwise on the reviewer's machine
    # how its verdict's error rates are stated (repro.judge.rates): the shortfall whose false-accept
    # rate is printed, the margin of the equivalence with the authors' code, and the registered cell
    # (paper/experiment of this harness) whose reference sets measure them
    delta: float = None
    epsilon: float = None
    reference: str = None

    def target(self):
        return Target(self.metric, self.value, self.direction, self.tolerance, self.source,
                      Policy(self.policy, self.n, tuple(self.seeds), self.audit, self.verifiable),
                      delta=self.delta, epsilon=self.epsilon)


@dataclass(frozen=True)
class Contest:
    name: str
    deadline: datetime
    papers: tuple
    path: str = ""
    budget: int = 14400  # seconds over all of one submission's workers (repro.boundary.task.Budget)

    def entries(self, plugin):
        """The entries of one paper (a paper is reproduced when all of them pass)."""
        found = [p for p in self.papers if p.plugin == plugin]
        if not found:
            raise ReproError(f"paper {plugin!r} is not in the contest {self.name!r} "
                             f"(its papers: {', '.join(sorted({p.plugin for p in self.papers}))})")
        return found

    def entry(self, plugin, experiment):
        for p in self.entries(plugin):
            if p.experiment == experiment:
                return p
        raise ReproError(f"the contest judges {plugin}'s experiments "
                         f"{', '.join(p.experiment for p in self.entries(plugin))}, not {experiment!r}")


MAX_BUDGET = 10 ** 7

FIELDS = {  # key: (type, required)
    "plugin": (str, True), "experiment": (str, True), "metric": (str, True), "measure": (str, True),
    "value": (float, True), "direction": (str, False), "tolerance": (float, False), "policy": (str, False),
    "n": (int, False), "seeds": (list, False), "audit": (int, False), "replay": ((int, str), False),
    "eval_data": (dict, False), "protocol": (dict, False), "path_keys": (list, False), "source": (str, False),
    "private_eval": (dict, False), "train_data": (dict, False), "verifiable": (bool, False),
    "delta": (float, False), "epsilon": (float, False), "reference": (str, False),
}


def read_contest(path):
    data = strict.read_yaml(path, "contest file")
    where = f"contest file {path}"
    if not isinstance(data, dict):
        raise ReproError(f"{where}: the top level must be a mapping")
    unknown = sorted(set(data) - {"name", "deadline", "budget", "papers"})
    if unknown:
        raise ReproError(f"{where}: unknown key {unknown[0]!r} (known: name, deadline, budget, papers)")
    budget = _typed(data, "budget", int, where)
    if budget is not None and not 60 <= budget <= MAX_BUDGET:
        raise ReproError(f"{where}: budget must be 60 to {MAX_BUDGET:,} seconds, got {budget}")
    name = _typed(data, "name", str, where, required=True)
    deadline = parse_time(_typed(data, "deadline", str, where, required=True), f"{where}: deadline")
    papers = data.get("papers")
    if not isinstance(papers, list) or not papers:
        raise ReproError(f"{where}: papers must be a non-empty list")
    entries = tuple((t2i_entry if isinstance(p, dict) and "kind" in p else _entry)(p, f"{where}: papers[{i}]")
                    for i, p in enumerate(papers))
    names = [(e.plugin, e.experiment) for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ReproError(f"{where}: {dup[0][0]}/{dup[0][1]} is listed twice")
    t2i = [e.plugin for e in entries if getattr(e, "kind", "") == "text_to_image"]
    alone = next((n for n in t2i if [e.plugin for e in entries].count(n) > 1), None)
    if alone:
        raise ReproError(f"{where}: {alone} has a text_to_image entry and another entry: a text-to-image paper "
                         f"is judged on one bundle, by one entry")
    base = os.path.dirname(os.path.abspath(path))
    entries = tuple(_with_base(e, base) for e in entries)
    return Contest(name, deadline, entries, os.path.abspath(path), Contest.budget if budget is None else budget)


# bounds of a contest entry's numbers: anything outside is a typo or an attack on the reviewer
MAX_N = 1000                  # runs a policy may judge
MAX_SEED = 2**32 - 1
MAX_AUDIT = 10**7             # steps between kept checkpoints
MAX_REPLAY = 10**4            # segments replayed per run
MAX_EVAL_N = 10**9            # samples of an evaluation split
MAX_FRESH = 10**6             # samples of a fresh private split (generated at every review)
MAX_TEXT = 1000               # characters of a protocol string value
# the top sections of the harness's configs (configs/*/*.yaml): a protocol key names one of them
SECTIONS = ("train", "model", "data", "eval", "optim", "diffusion")
REPLAY_WORDS = ("default", "all")


def _bounded(values, key, lo, hi, where, what=""):
    v = values.get(key)
    if v is not None and not lo <= v <= hi:
        raise ReproError(f"{where}: {key} must be between {lo} and {hi:,}{what}, got {_short(v)}")


def _dotted(key, where, what):
    """A flat config key (train.lr): dotted identifiers under a known top section."""
    if not isinstance(key, str) or not 0 < len(key) <= 200:
        raise ReproError(f"{where}: {what} key {_short(key)} must be a dotted name such as train.lr")
    parts = key.split(".")
    if len(parts) < 2 or not all(p.isidentifier() and p.isascii() for p in parts):
        raise ReproError(f"{where}: {what} key {_short(key)} must be a dotted name such as train.lr")
    if parts[0] not in SECTIONS:
        raise ReproError(f"{where}: {what} key {key!r} is not under a known section "
                         f"({', '.join(s + '.' for s in SECTIONS)})")
    return key


def _scalar(key, value, where):
    """A protocol value: a flat scalar (a nested mapping or list would compare by its repr)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise ReproError(f"{where}: protocol.{key} {_short(value)} is out of range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ReproError(f"{where}: protocol.{key} must be a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT or not value.isprintable():
            raise ReproError(f"{where}: protocol.{key} must be printable text of at most {MAX_TEXT} characters")
        return value
    raise ReproError(f"{where}: protocol.{key} must be a scalar (number, string, true/false or null), "
                     f"got {type(value).__name__}: give nested keys flat, e.g. train.lr: 0.01")


def _replay(value, where):
    if value is None:
        return "default"
    if isinstance(value, str):
        if value not in REPLAY_WORDS:
            raise ReproError(f"{where}: replay must be 'default', 'all' or a number of segments, got {_short(value)}")
        return value
    if not 2 <= value <= MAX_REPLAY:
        raise ReproError(f"{where}: replay must be >= 2 and <= {MAX_REPLAY:,} segments (the first and the last "
                         f"segment are always replayed), or 'default' or 'all'; got {_short(value)}")
    return value


def _entry(data, where):
    values = {k: v for k, v in strict.fields_of(data, where, FIELDS).items() if v is not None}
    if values["measure"] not in METRICS:
        raise ReproError(f"{where}: measure {values['measure']!r} is not a harness metric "
                         f"(known: {', '.join(METRICS.names())})")
    if values.get("direction", "higher") not in DIRECTIONS:
        raise ReproError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}")
    if values.get("policy", "single") not in POLICIES:
        raise ReproError(f"{where}: policy must be one of {', '.join(POLICIES)}")
    if not values["metric"].isidentifier():
        raise ReproError(f"{where}: metric {values['metric']!r} is not a valid name")
    if values.get("tolerance", 0.0) < 0:
        raise ReproError(f"{where}: tolerance must be >= 0")
    _bounded(values, "n", 1, MAX_N, where)
    _bounded(values, "audit", 0, MAX_AUDIT, where, " steps (0: no audit)")
    seeds = values.get("seeds", [])
    if len(seeds) > MAX_N or not all(type(s) is int for s in seeds):
        raise ReproError(f"{where}: seeds must be at most {MAX_N} integers")
    bad = next((s for s in seeds if not 0 <= s <= MAX_SEED), None)
    if bad is not None:
        raise ReproError(f"{where}: seeds: {_short(bad)} is not between 0 and {MAX_SEED}")
    if len(set(seeds)) != len(seeds):
        raise ReproError(f"{where}: seeds: {sorted(s for s in seeds if seeds.count(s) > 1)[0]} is listed twice")
    values["seeds"] = tuple(seeds)
    path_keys = values.get("path_keys", [])
    values["path_keys"] = tuple(_dotted(k, where, "path_keys") for k in path_keys)
    eval_data = {}
    for split, d in values.get("eval_data", {}).items():
        if not isinstance(split, str) or not split.isidentifier() or not split.isascii() or len(split) > 64:
            raise ReproError(f"{where}: eval_data: split name {_short(split)} must be a name such as test or dev")
        at = f"eval_data.{split}"
        if not isinstance(d, dict) or set(d) - {"n", "sha256"} or "n" not in d:
            raise ReproError(f"{where}: {at} must be {{n: int, sha256: 64 hex digits or null}}")
        if type(d["n"]) is not int or not 1 <= d["n"] <= MAX_EVAL_N:
            raise ReproError(f"{where}: {at}.n must be an integer between 1 and {MAX_EVAL_N:,}, got {_short(d['n'])}")
        sha = d.get("sha256")
        if sha is not None and not (isinstance(sha, str) and SHA256.fullmatch(sha)):
            raise ReproError(f"{where}: {at}.sha256 must be 64 lowercase hex digits (a sha256) or null, "
                             f"got {type(sha).__name__} {_short(sha)}")
        eval_data[split] = (d["n"], sha)
    values["eval_data"] = eval_data
    protocol = {}
    for key, value in values.get("protocol", {}).items():
        key = _dotted(key, where, "protocol")
        protocol[key] = _scalar(key, value, where)
    values["protocol"] = protocol
    values["replay"] = _replay(values.get("replay"), where)
    if "private_eval" in values:
        values["private_eval"] = _private_eval(values["private_eval"], values, where)
    ref = values.get("reference")
    if ref is not None and (ref.count("/") != 1 or not all(p.isidentifier() and p.isascii() for p in ref.split("/"))):
        raise ReproError(f"{where}: reference must be paper/experiment of this harness (whose reference sets "
                         f"state the entry's error rates), got {_short(ref)}")
    if "train_data" in values:
        d = values["train_data"]
        if set(d) != {"n", "sha256"} or type(d["n"]) is not int or not 1 <= d["n"] <= MAX_EVAL_N \
                or not (isinstance(d["sha256"], str) and SHA256.fullmatch(d["sha256"])):
            raise ReproError(f"{where}: train_data must be {{n: int, sha256: 64 lowercase hex digits}}")
        values["train_data"] = (d["n"], d["sha256"])
    if not values["metric"].startswith(tuple(f"{s}_" for s in eval_data)) and eval_data:
        raise ReproError(f"{where}: metric {values['metric']!r} is not <split>_<name> for a split in eval_data")
    entry = ContestPaper(**values)
    try:
        entry.target()
    except ValueError as e:
        raise ReproError(f"{where}: {e}") from None
    return entry


def _with_base(entry, base):
    """A private file (a text-to-image entry's models and reference set) named relative to
    the contest file, made absolute."""
    if getattr(entry, "kind", "") == "text_to_image":
        return entry.with_base(base)
    body = entry.private_eval.get("file")
    if body is None or os.path.isabs(body["path"]):
        return entry
    import dataclasses
    return dataclasses.replace(entry, private_eval={"file": {**body, "path": os.path.join(base, body["path"])}})


def _private_eval(spec, values, where):
    """{"fresh": {n, source: paper/experiment}} or {"file": {path, sha256}} (repro/judge/private.py)."""
    at = f"{where}: private_eval"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("fresh", "file") \
            or not isinstance(next(iter(spec.values())), dict):
        raise ReproError(f"{at} must be {{fresh: {{n, source}}}} or {{file: {{path, sha256}}}}")
    if values["measure"] != "accuracy":
        raise ReproError(f"{at}: the agreement rule is for accuracy; this entry's measure is {values['measure']!r}")
    kind, body = next(iter(spec.items()))
    if kind == "fresh":
        source = body.get("source")
        if set(body) != {"n", "source"} or type(body["n"]) is not int or not 1 <= body["n"] <= MAX_FRESH \
                or not isinstance(source, str) or source.count("/") != 1 \
                or not all(part.isidentifier() for part in source.split("/")):
            raise ReproError(f"{at}.fresh must be {{n: 1..{MAX_FRESH:,}, source: paper/experiment}} (a paper "
                             f"of this harness that generates its data, e.g. mnist1d/cnn)")
        return {"fresh": {"n": body["n"], "source": source}}
    path, sha = body.get("path"), body.get("sha256")
    if set(body) != {"path", "sha256"} or not isinstance(path, str) or not path \
            or not (isinstance(sha, str) and SHA256.fullmatch(sha)):
        raise ReproError(f"{at}.file must be {{path: the maintainers' file, sha256: 64 lowercase hex digits}}")
    return {"file": {"path": path, "sha256": sha}}


def parse_time(text, where):
    """An ISO 8601 time with its time zone (the maintainers' clock, never a log's)."""
    try:
        t = datetime.fromisoformat(str(text))
    except ValueError:
        raise ReproError(f"{where}: {str(text)[:40]!r} is not an ISO 8601 time (2027-01-31T23:59:59+08:00)") from None
    if t.tzinfo is None:
        raise ReproError(f"{where}: {text!r} has no time zone (add +08:00 or Z)")
    return t


# ------------------------------------------------------------------ judging runs against it

class ContestProtocol(Protocol):
    """A contest entry as a run's protocol, read from the contest and the submitted
    files alone: the plugin's code is never imported here.

    tree: the submitted repository (a checkout); when given, the run's logged code
    identity must match the files there, and its config must follow the experiment
    YAML there (the file the run's header names)."""

    owns_header = False

    def __init__(self, contest, entry, header, tree=None):
        self.contest, self.entry, self.tree, self.header = contest, entry, tree, header
        self.paper, self.exp = entry.plugin, entry.experiment
        self.targets = (entry.target(),)
        self.eval_data = entry.eval_data
        self.train_data = entry.train_data
        self.path_keys, self.pins = entry.path_keys, {}
        self.source = f"the contest's entry {entry.plugin}/{entry.experiment}"

    def parse_config(self, config):
        return parse_train_only(config)

    def registered_config(self, lite):
        config = dict(self._plugin_yaml(lite))
        config.update(self.entry.protocol)
        return config

    def compared(self, registered, used):
        # without the plugin's schema, its defaults are unknown: only keys set somewhere are compared
        return set(registered)

    def _plugin_yaml(self, lite):
        code = self.header.get("code", {}).get("paper", {})
        name = code.get("config_file") if isinstance(code, dict) else None
        if self.tree is None or not isinstance(name, str):
            return {}
        path = os.path.join(self.tree, name)
        strict.inside(self.tree, path, "the experiment config")
        data = strict.read_yaml(path, "the submitted experiment config")
        if not isinstance(data, dict):
            return {}
        block = data.pop("lite", None) or {}
        config = flatten(data)
        if lite and isinstance(block, dict):
            config.update({str(k): v for k, v in block.items()})
        return config

    def metric_definitions(self, cfg):
        cls = METRICS.get(self.entry.measure)
        return {self._name(): f"{cls.__module__}.{cls.__qualname__}"}

    def metric_types(self, cfg):
        return {self._name(): METRICS.get(self.entry.measure)}

    def _name(self):
        split = next((s for s in self.eval_data if self.entry.metric.startswith(f"{s}_")), None)
        return self.entry.metric[len(split) + 1:] if split else self.entry.metric.partition("_")[2]


def protocol_of(contest, tree=None):
    """protocol_of(run) for verify: each run is judged by its paper's contest entry;
    a run of a paper or experiment the contest does not list has none."""
    def of(run):
        head = run.header
        protocol = ContestProtocol(contest, contest.entry(head["paper"], head["exp"]), head, tree)
        if tree is not None:
            run.problems.extend(check_code(head, tree))
        return protocol
    return of


def check_code(header, tree):
    """Whether the code the log names is the code in tree: the run's recorded
    repository identity must be exactly the tree's (repro.boundary.identity.check_tree)."""
    return check_tree(header, tree)
