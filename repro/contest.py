"""Contest files: the maintainers' bar for each paper of a reproduction contest.

    name: MNIST-1D reproduction (example)
    deadline: "2027-03-31T23:59:59+08:00"
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
        audit: 1000                  # checkpoints kept at most this far apart; the review replays ...
        replay: 2                    # ... this many segments of every run
        eval_data: {test: {n: 1000, sha256: 5b45...}}   # the registered evaluation data
        protocol: {train.steps: 8000, train.lr: 0.01}    # logged config values every run must have
        path_keys: []                # config keys that may hold a machine's local paths
        source: "Greydanus & Kobak 2024, results table"

The schema is in code (ContestPaper); a contest file is read strictly, and
every problem is one line naming the file and the key. Judging against a
contest uses the contest's targets and nothing the submitted plugin declares
(repro.protocol.ContestProtocol below): a submission cannot lower the bar.
"""
import math
import os
from dataclasses import dataclass, field
from datetime import datetime

from repro import strict
from repro.errors import ReproError
from repro.protocol import Protocol, parse_train_only
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
    replay: int = 2
    eval_data: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)
    path_keys: tuple = ()
    source: str = ""

    def target(self):
        return Target(self.metric, self.value, self.direction, self.tolerance, self.source,
                      Policy(self.policy, self.n, tuple(self.seeds), self.audit))


@dataclass(frozen=True)
class Contest:
    name: str
    deadline: datetime
    papers: tuple
    path: str = ""

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


FIELDS = {  # key: (type, required)
    "plugin": (str, True), "experiment": (str, True), "metric": (str, True), "measure": (str, True),
    "value": (float, True), "direction": (str, False), "tolerance": (float, False), "policy": (str, False),
    "n": (int, False), "seeds": (list, False), "audit": (int, False), "replay": (int, False),
    "eval_data": (dict, False), "protocol": (dict, False), "path_keys": (list, False), "source": (str, False),
}


def read_contest(path):
    data = strict.read_yaml(path, "contest file")
    where = f"contest file {path}"
    if not isinstance(data, dict):
        raise ReproError(f"{where}: the top level must be a mapping")
    unknown = sorted(set(data) - {"name", "deadline", "papers"})
    if unknown:
        raise ReproError(f"{where}: unknown key {unknown[0]!r} (known: name, deadline, papers)")
    name = _typed(data, "name", str, where, required=True)
    deadline = parse_time(_typed(data, "deadline", str, where, required=True), f"{where}: deadline")
    papers = data.get("papers")
    if not isinstance(papers, list) or not papers:
        raise ReproError(f"{where}: papers must be a non-empty list")
    entries = tuple(_entry(p, f"{where}: papers[{i}]") for i, p in enumerate(papers))
    names = [(e.plugin, e.experiment) for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ReproError(f"{where}: {dup[0][0]}/{dup[0][1]} is listed twice")
    return Contest(name, deadline, entries, os.path.abspath(path))


def _typed(data, key, tp, where, required=False):
    if key not in data:
        if required:
            raise ReproError(f"{where}: {key} is required")
        return None
    value = data[key]
    ok = isinstance(value, tp) and not isinstance(value, bool) if tp in (int, float, str, list, dict) else False
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ReproError(f"{where}: {key} must be {tp.__name__}, got {type(value).__name__} {str(value)[:40]!r}")
    if tp is float and not math.isfinite(value):
        raise ReproError(f"{where}: {key} must be a finite number")
    return value


def _entry(data, where):
    if not isinstance(data, dict):
        raise ReproError(f"{where} must be a mapping")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ReproError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(FIELDS)})")
    values = {k: _typed(data, k, tp, where, required) for k, (tp, required) in FIELDS.items()}
    values = {k: v for k, v in values.items() if v is not None}
    for key in ("plugin", "experiment"):
        if not values[key].isidentifier():
            raise ReproError(f"{where}: {key} {values[key]!r} is not a valid name")
    from repro.metrics import METRICS
    if values["measure"] not in METRICS:
        raise ReproError(f"{where}: measure {values['measure']!r} is not a harness metric "
                         f"(known: {', '.join(METRICS.names())})")
    if values.get("direction", "higher") not in DIRECTIONS:
        raise ReproError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}")
    if values.get("policy", "single") not in POLICIES:
        raise ReproError(f"{where}: policy must be one of {', '.join(POLICIES)}")
    seeds = values.get("seeds", [])
    if not all(type(s) is int for s in seeds):
        raise ReproError(f"{where}: seeds must be integers")
    values["seeds"] = tuple(seeds)
    values["path_keys"] = tuple(str(k) for k in values.get("path_keys", []))
    eval_data = {}
    for split, d in values.get("eval_data", {}).items():
        if not isinstance(d, dict) or set(d) - {"n", "sha256"} or type(d.get("n")) is not int:
            raise ReproError(f"{where}: eval_data.{split} must be {{n: int, sha256: hex or null}}")
        eval_data[str(split)] = (d["n"], d.get("sha256"))
    values["eval_data"] = eval_data
    values["protocol"] = {str(k): v for k, v in values.get("protocol", {}).items()}
    if values.get("replay", 2) < 2:
        raise ReproError(f"{where}: replay must be >= 2 (the first and the last segment are always replayed)")
    if not values["metric"].startswith(tuple(f"{s}_" for s in eval_data)) and eval_data:
        raise ReproError(f"{where}: metric {values['metric']!r} is not <split>_<name> for a split in eval_data")
    entry = ContestPaper(**values)
    try:
        entry.target()
    except ValueError as e:
        raise ReproError(f"{where}: {e}") from None
    return entry


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
        from repro.config import flatten
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
        from repro.metrics import METRICS
        cls = METRICS.get(self.entry.measure)
        return {self._name(): f"{cls.__module__}.{cls.__qualname__}"}

    def metric_types(self, cfg):
        from repro.metrics import METRICS
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
    repository identity must be exactly the tree's (repro.identity.check_tree)."""
    from repro.identity import check_tree
    return check_tree(header, tree)
