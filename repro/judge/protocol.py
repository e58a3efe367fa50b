"""What a run is judged against: its experiment's registered protocol.

A Protocol answers, for one (paper, experiment), every question verify's log
checks ask: the targets, the evaluation data, the registered config, which
config keys a run may set to its own values, the metric definitions and what
values they can take. RegisteredProtocol asks the paper's own code (the
registry); repro.judge.contest's ContestProtocol answers from a maintainer's contest
file and the submitted files, without importing the submitted code.
"""
from dataclasses import dataclass, field

from repro.config import TrainConfig, flatten, from_dict, to_dict
from repro.errors import ReproError
from repro.strict import short

# Config keys a run may change without changing the experiment: they decide
# what is logged and kept, and when, not what is computed. (Since every
# update's random numbers are a function of (seed, step), how often a run
# checkpoints does not change its numbers.)
LOGGING_KEYS = {"train.seed", "train.log_every", "train.checkpoint_every", "train.audit_every", "train.visualdl",
                "train.amp.enabled", "train.amp.level", "train.amp.dtype"}
# Keys that change the arithmetic, not the experiment, and which a run may turn on where the
# registered config leaves them off (absent from an older log: off). Where the registered config,
# a target's policy (Policy.verifiable) or a contest entry turns one on, every run must have it on.
# train.verifiable: every update in float64 from float32 state, rounded back (repro/run/verifiable.py).
OPT_IN_KEYS = {"train.verifiable"}


class Protocol:
    paper = ""         # the paper's name
    exp = ""           # the experiment's name
    targets = ()
    eval_data = {}     # {split: (n, sha256 or None)}
    train_data = None  # (n, sha256) of the training split every run must use (a contest can pin it)
    path_keys = ()     # config keys naming local files (their content is in the provenance)
    pins = {}          # {provenance name: (path key, config key of its pinned sha256)}
    source = ""        # where the protocol comes from, for messages
    # True: the run's header must log exactly these targets and metric definitions (its
    # plugin is the registered one); False: the header's own are the plugin's, not judged
    owns_header = True

    def free_keys(self):
        """Keys a run may set to its own values: the logging knobs and the local paths."""
        return LOGGING_KEYS | set(self.path_keys)

    def parse_config(self, config):
        """The logged config as an object with at least .train (a TrainConfig); a ReproError if invalid."""
        raise NotImplementedError

    def registered_config(self, lite):
        """{dotted key: value} the run's config must have (but for the free keys)."""
        raise NotImplementedError

    def metric_definitions(self, cfg):
        """{metric name: 'module.Class'} the run must have logged."""
        raise NotImplementedError

    def metric_types(self, cfg):
        """{metric name: class}, whose impossible(value, n) says what a metric cannot be."""
        raise NotImplementedError

    def metric_objects(self, cfg):
        """{metric name: a fresh metric object} the judge computes a recompute with
        (harness metrics: update(outputs, labels) / compute())."""
        return {n: cls() for n, cls in self.metric_types(cfg).items()}

    def config_changes(self, config, lite=False):
        """[(key, run's value, registered value, permitted)] for every compared key where a run's
        config differs from the registered one ('<absent>' where a side lacks the key). permitted:
        a key a run may choose, or an opt-in key the registration leaves off."""
        registered = self.registered_config(lite)
        used = flatten(config)
        free = self.free_keys()
        out = []
        for k in sorted(set(registered) | set(used)):
            if k not in OPT_IN_KEYS and k not in self.compared(registered, used):
                continue
            ours, theirs = used.get(k, "<absent>"), registered.get(k, "<absent>")
            if k in OPT_IN_KEYS:  # on, or off where the registration leaves it off
                if (theirs is True) != (ours is True):
                    out.append((k, ours, theirs, theirs is not True))
            elif ours != theirs:
                out.append((k, ours, theirs, k in free))
        return out

    def config_differences(self, config, lite=False):
        """Keys where a run's config departs from the registered one: the changes a run may not make."""
        return [f"{k}={short(ours, 80)} (registered " + ("True: every run must have it on)" if k in OPT_IN_KEYS
                                                      else f"{theirs!r})")
                for k, ours, theirs, permitted in self.config_changes(config, lite) if not permitted]

    def compared(self, registered, used):
        """The keys config_differences compares."""
        return set(registered) | set(used)


class RegisteredProtocol(Protocol):
    """The protocol a registered paper declares for one of its experiments."""

    def __init__(self, paper, exp):
        self.paper_obj, self.exp_obj = paper, exp
        self.paper, self.exp = paper.name, exp.name
        self.targets, self.eval_data = exp.targets, exp.eval_data
        self.path_keys, self.pins = tuple(paper.path_keys), dict(paper.pins)
        self.source = f"the registered experiment {paper.name}/{exp.name}"

    def parse_config(self, config):
        return from_dict(self.paper_obj.config_class, config)

    def registered_config(self, lite):
        return flatten(to_dict(self.paper_obj.config(self.exp_obj, lite=lite)))

    def metric_definitions(self, cfg):
        return {n: f"{type(m).__module__}.{type(m).__qualname__}" for n, m in self.paper_obj.metrics(cfg).items()}

    def metric_types(self, cfg):
        return {n: type(m) for n, m in self.paper_obj.metrics(cfg).items()}

    def metric_objects(self, cfg):
        return self.paper_obj.metrics(cfg)


@dataclass
class TrainOnlyConfig:
    """A logged config read only where the harness owns its schema: the train section."""
    train: TrainConfig = field(default_factory=TrainConfig)


def parse_train_only(config):
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        raise ReproError("config: the logged config has no train section")
    return from_dict(TrainOnlyConfig, {"train": config["train"]})



