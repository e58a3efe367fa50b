"""Which segments of a run the replay audit re-trains (the coverage): every one (`all`); N
of them, always the first and the last, the rest drawn from a challenge the submitter
cannot predict; or the default: every segment of a run whose logged training took at
most FULL_REPLAY_SECONDS (the audit then costs at most the run's own training time),
else the first, the last and a DEFAULT_SHARE of the middle ones, drawn. Each run's
coverage says the probability that one forged segment escapes the draw."""
import hashlib
import math
import random

# the default coverage: every segment of a run that trained for at most this long (so the
# audit costs at most the run's own training time); longer runs: the first, the last and
# this share of the middle segments, drawn with the challenge
FULL_REPLAY_SECONDS = 900
DEFAULT_SHARE = 0.25


def segments(run):
    """[(a, b)] between the kept checkpoints, from 0 (the initial state) to the last step."""
    steps = [0] + run.kept_steps()
    return list(zip(steps, steps[1:]))


def count(run, coverage, segs=None):
    """How many segments of this run the coverage replays (first and last included)."""
    k = len(segs if segs is not None else segments(run))
    if coverage == "all":
        return k
    if coverage == "default":
        seconds = float(run.events[-1].get("seconds") or 0) if run.events else 0.0
        if seconds <= FULL_REPLAY_SECONDS:
            return k
        return min(k, 2 + math.ceil(DEFAULT_SHARE * max(0, k - 2)))
    return min(k, int(coverage))


def choose(segs, n, challenge, identity):
    """n of segs: always the first and the last, the rest drawn from (challenge, identity)."""
    if n >= len(segs):
        return list(segs)
    middle = list(range(1, len(segs) - 1))
    rng = random.Random(hashlib.sha256(f"{challenge}\0{identity}".encode()).digest())
    picked = {0, len(segs) - 1} | set(rng.sample(middle, max(0, n - 2)))
    return [segs[i] for i in sorted(picked)]


def escape(k, n):
    """The probability that one forged segment of k escapes a draw of n (first and last
    always replayed, the rest uniformly): the worst case is a middle segment."""
    if n >= k or k <= 2:
        return 0.0
    return 1.0 - (n - 2) / (k - 2)


def coverage_of(run, chosen, segs):
    total = run.cfg.train.steps
    steps = sum(b - a for a, b in chosen)
    return {"replayed": len(chosen), "segments": len(segs), "steps": steps, "total_steps": total,
            "escape": escape(len(segs), len(chosen))}


def describe_coverage(cov):
    """'replayed 3 of 8 segments, 38% of steps; one forged segment escapes with probability at most 62%'."""
    share = cov["steps"] / max(1, cov["total_steps"])
    text = f"replayed {cov['replayed']} of {cov['segments']} segments, {share:.0%} of steps"
    if cov["escape"] > 0:
        return text + f"; one forged segment escapes with probability at most {cov['escape']:.0%}"
    return text + "; every segment replayed"


# ------------------------------------------------------------------ the worker, as the judge sees it
