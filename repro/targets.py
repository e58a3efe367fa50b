"""Targets (a paper's numbers) and acceptance policies (when a set of runs counts).

A target lives with the paper's code, never in a run's config, so a run cannot
lower its own bar. ``judge`` is pure: it takes the achieved values of the runs
and returns a verdict with its reason. ``parse_seeds`` reads a --seeds list (or the seeds the
targets pin).
"""
import math
import re
from dataclasses import asdict, dataclass

from repro.errors import ReproError

DIRECTIONS = ("higher", "lower", "match")
POLICIES = ("single", "mean_of_n", "olympic")


@dataclass(frozen=True)
class Policy:
    """How many runs a target is judged on, and how they combine.

    single     exactly one run, and it must reach the target (the Paddle
               reproduction contest's rule). Several runs are refused rather
               than letting the best of many seeds be picked.
    mean_of_n  at least n runs with distinct seeds; their mean must reach the
               target. mean ± std, min and max are reported.
    olympic    as mean_of_n (n >= 3), but the best and the worst run are
               dropped before the mean, as MLPerf scores a set of runs.

    seeds      when given (n of them), exactly the runs with these training
               seeds are judged: a missing seed fails the target, and so does
               a run of any other seed (the submitter does not choose which
               seeds count, so the best 5 of 10 cannot be picked).
    audit      when > 0, every run must keep checkpoints at most this many
               steps apart (train.audit_every), so the replay audit can
               re-train any stretch of it (repro.verify --replay).
    verifiable when True, every run must be trained with train.verifiable
               (each update in float64, rounded back, the rounding logged), so
               its replay is bitwise on the verifier's machine, whatever it is.
    """
    name: str = "single"
    n: int = 1
    seeds: tuple = ()
    audit: int = 0
    verifiable: bool = False

    def __post_init__(self):
        if self.name not in POLICIES:
            raise ValueError(f"unknown policy {self.name!r}; known: {', '.join(POLICIES)}")
        if self.n < 1 or (self.name == "single" and self.n != 1) or (self.name == "olympic" and self.n < 3):
            raise ValueError(f"policy {self.name} cannot take n={self.n}")
        if self.seeds and (len(set(self.seeds)) != self.n or len(self.seeds) != self.n
                           or not all(type(s) is int for s in self.seeds)):
            raise ValueError(f"policy {self.name} with n={self.n} needs {self.n} distinct integer seeds, "
                             f"got {self.seeds}")
        if self.audit < 0:
            raise ValueError(f"audit must be >= 0, got {self.audit}")
        if type(self.verifiable) is not bool:
            raise ValueError(f"verifiable must be true or false, got {self.verifiable!r}")

    def __str__(self):
        text = {"single": "single", "mean_of_n": f"mean_of_{self.n}", "olympic": f"olympic_of_{self.n}"}[self.name]
        if self.seeds:
            text += f" (seeds {seed_text(self.seeds)})"
        if self.audit:
            text += f", audit <= {self.audit} steps"
        if self.verifiable:
            text += ", verifiable training"
        return text


def seed_text(seeds):
    """[0, 1, 2, 3, 4] -> '0-4'; otherwise a comma list."""
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


@dataclass(frozen=True)
class Target:
    """One number from the paper's results table.

    direction: higher  achieved >= paper_value - tolerance
               lower   achieved <= paper_value + tolerance
               match   |achieved - paper_value| <= tolerance (for a number that
                       is itself the claim, e.g. an accuracy that must *drop*)
    """
    metric: str
    paper_value: float
    direction: str
    tolerance: float
    source: str
    policy: Policy = Policy()
    # how its verdict's error rates are stated (repro.judge.rates), never what passes: delta, the
    # shortfall (points on the failing side of paper_value) whose false-accept rate is printed;
    # epsilon, the margin of the equivalence with the authors' code; reference_rule, the bar a
    # reference set sets (ReferenceRule), shown beside the registered one
    delta: float = None
    epsilon: float = None
    reference_rule: object = None

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r}; known: {', '.join(DIRECTIONS)}")
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        for name in ("delta", "epsilon"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number of points, got {value!r}")

    def reached(self, value):
        if not math.isfinite(value):
            return False
        if self.direction == "higher":
            return value >= self.paper_value - self.tolerance
        if self.direction == "lower":
            return value <= self.paper_value + self.tolerance
        return abs(value - self.paper_value) <= self.tolerance

    def bar(self):
        """The rule as text, e.g. '>= 92.00' or 'within 56.00 ± 3.00'."""
        if self.direction == "higher":
            return f">= {self.paper_value - self.tolerance:.2f}"
        if self.direction == "lower":
            return f"<= {self.paper_value + self.tolerance:.2f}"
        return f"within {self.paper_value:.2f} ± {self.tolerance:.2f}"

    def to_dict(self):
        """The target as a run's header records it: what decides a pass (the error-rate
        declarations, which decide none, are left out, so older logs keep matching)."""
        d = asdict(self)
        d["policy"] = str(self.policy)
        for name in ("delta", "epsilon", "reference_rule"):
            d.pop(name)
        return d

    def select(self, runs):
        """(runs to judge, reason they cannot be judged or None) under the policy's
        pinned seeds; runs are (seed, value) pairs."""
        seeds = self.policy.seeds
        if not seeds:
            return runs, None
        have = [s for s, _ in runs]
        extra = sorted({s for s in have if s not in seeds} | {s for s in have if have.count(s) > 1})
        missing = [s for s in seeds if s not in have]
        if extra:
            return runs, (f"the target judges exactly seeds {seed_text(seeds)}; runs of seed(s) "
                          f"{', '.join(map(str, extra))} are extra or repeated (remove them: "
                          f"verify does not pick among runs)")
        if missing:
            return runs, (f"the target judges exactly seeds {seed_text(seeds)}; seed(s) "
                          f"{', '.join(map(str, missing))} have no run that counts")
        return runs, None


@dataclass(frozen=True)
class ReferenceRule:
    """A target's second version: the bar its reference set alone sets so that an honest
    reproduction fails it with probability at most alpha (repro.judge.rates.alpha_bar),
    recorded with the reference set it came from before any judged run was looked at.
    low/high: the bounds on the mean (None: none on that side)."""
    alpha: float
    low: float = None
    high: float = None
    reference: str = ""  # the reference set, e.g. "logs/mnist1d_reference/cnn (20 runs, seeds 1000-1019)"
    decided: str = ""    # when, e.g. "2026-12-07, before the judged runs were looked at"

    def reached(self, value):
        return math.isfinite(value) and (self.low is None or value >= self.low) and \
            (self.high is None or value <= self.high)

    def bar(self):
        if self.high is None:
            return f">= {self.low:.2f}"
        if self.low is None:
            return f"<= {self.high:.2f}"
        return f"within [{self.low:.2f}, {self.high:.2f}]"


@dataclass
class Verdict:
    target: Target
    passed: bool
    achieved: str  # text: one value, or mean ± std [min, max]
    why: str
    values: tuple = ()


def summarize(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std, min(values), max(values)


def judge(target, runs):
    """runs: list of (seed, value) for one experiment. Returns a Verdict."""
    values = tuple(v for _, v in runs)
    seeds = [s for s, _ in runs]
    policy = target.policy
    if not runs:
        return Verdict(target, False, "-", "no run of this experiment counts", values)
    runs, refused = target.select(runs)
    if refused:
        summary = f"{len(runs)} runs" if len(runs) != 1 else f"{values[0]:.2f}"
        if len(runs) > 1:
            mean, std, lo, hi = summarize(values)
            summary = f"{mean:.2f} ± {std:.2f} [{lo:.2f}, {hi:.2f}]"
        return Verdict(target, False, summary, refused, values)
    if policy.name == "single":
        if len(runs) != 1:
            return Verdict(target, False, f"{len(runs)} runs", (
                f"policy single judges exactly one run, got {len(runs)}; "
                "submit the one run (picking the best of several seeds is not allowed)"), values)
        value = values[0]
        ok = target.reached(value)
        return Verdict(target, ok, f"{value:.2f}",
                       f"{value:.2f} {'meets' if ok else 'misses'} {target.bar()}", values)
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        return Verdict(target, False, f"{len(runs)} runs",
                       f"runs share seed(s) {', '.join(map(str, dup))}; mean_of_n needs distinct seeds", values)
    mean, std, lo, hi = summarize(values)
    achieved = f"{mean:.2f} ± {std:.2f} [{lo:.2f}, {hi:.2f}]"
    if len(runs) < policy.n:
        return Verdict(target, False, achieved,
                       f"policy {policy} needs {policy.n} runs with distinct seeds, got {len(runs)}", values)
    what = f"mean of {len(runs)} seeds"
    if policy.name == "olympic":
        mean = summarize(sorted(values)[1:-1])[0]
        what = f"mean of {len(runs)} seeds without the best and the worst"
    ok = target.reached(mean)
    return Verdict(target, ok, achieved,
                   f"{what} {mean:.2f} {'meets' if ok else 'misses'} {target.bar()}", values)


def parse_seeds(text, paper, exp):
    """'0-4', '0,2,7', '3'; None: the target's pinned seeds."""
    if text is None:
        pinned = sorted({s for t in exp.targets for s in t.policy.seeds})
        if not pinned:
            raise ReproError(f"{paper.name}/{exp.name}'s targets pin no seeds; give them, e.g. --seeds 0-4")
        return pinned
    seeds = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d{1,9})\s*(?:-\s*(\d{1,9})\s*)?", part)
        if not m:
            raise ReproError(f"--seeds {text!r}: give seeds as 0-4, 0,1,2 or 3")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo or hi - lo > 1000:
            raise ReproError(f"--seeds {text!r}: {part.strip()} is not a range of at most 1000 seeds")
        seeds += range(lo, hi + 1)
    if len(set(seeds)) != len(seeds):
        raise ReproError(f"--seeds {text!r} names a seed twice")
    return seeds
