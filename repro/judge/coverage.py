"""Which segments of a run the replay audit re-trains (the coverage): every one (`all`); N
of them, always the first and the last, the rest drawn from a challenge the submitter
cannot predict; or the default: every segment when the registered recipe makes at most
FULL_REPLAY_SEGMENTS of them (the audit then costs the run's own training steps), else the
first, the last and a DEFAULT_SHARE of the middle ones, drawn. The default depends on the
registered recipe alone (its steps, and the audit interval a target, contest or registered
config requires), never on a number the submitter's log states (its training time, say).
Each run's coverage says the probability that one forged segment escapes the draw."""
import hashlib
import math
import random

# the default coverage: every segment of a run whose registered recipe has at most this many
# audit segments (steps / the required audit interval); longer ones: the first, the last and
# this share of the middle segments, drawn with the challenge
FULL_REPLAY_SEGMENTS = 10
DEFAULT_SHARE = 0.25


def segments(run):
    """[(a, b)] between the kept checkpoints, from 0 (the initial state) to the last step."""
    steps = [0] + run.kept_steps()
    return list(zip(steps, steps[1:]))


def registered_segments(run, segs):
    """How many audit segments the registered recipe makes of this run: its steps (which the
    registration fixes) over the audit interval a target's policy or the registered config
    requires; with neither, the segments the run has."""
    steps = int(run.cfg.train.steps)
    every = [t.policy.audit for t in run.protocol.targets if getattr(t.policy, "audit", 0)]
    if not every:
        registered = run.protocol.registered_config(bool(run.header.get("lite"))).get("train.audit_every")
        every = [registered] if type(registered) is int and registered > 0 else []
    return math.ceil(steps / min(every)) if every and steps > 0 else len(segs)


def count(run, coverage, segs=None, registered=None):
    """How many segments of this run the coverage replays (first and last included);
    registered: registered_segments(run, segs), which the default coverage reads."""
    segs = segs if segs is not None else segments(run)
    k = len(segs)
    if coverage == "all":
        return k
    if coverage == "default":
        registered = registered if registered is not None else registered_segments(run, segs)
        if registered <= FULL_REPLAY_SEGMENTS:
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
