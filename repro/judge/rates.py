"""How often a verdict is wrong, from reference sets (issue 37): honest runs of a cell
made with its registered recipe (the port's) and with the authors' own code.

For a target with a mean_of_n (or single) policy, a direction and a tolerance:
- false reject: the probability that an honest reproduction (its n runs drawn from the
  port's reference set) fails the bar;
- false accept at delta: the probability that a reproduction whose true mean is `delta`
  points on the wrong side of the paper's number (below it for higher, above for lower,
  below for match) passes, with the reference set's spread.
Each rate is computed under a normal model of one run's value (the reference set's mean
and standard deviation), and given with a bootstrap interval over the reference runs
(LEVEL, BOOT resamples, a fixed seed: the same numbers every time).

alpha_bar: the bar a policy sets from the port's reference set alone so that the
false-reject rate is at most alpha, the reference set's own uncertainty included (a
prediction bound for the mean of n new runs).

equivalence: two one-sided tests (Welch) between the port's runs and the authors' runs at
a declared margin epsilon: "equivalent" when the (1 - 2 * TOST_ALPHA) interval of the
difference lies within +-epsilon, "different" when it lies wholly outside, otherwise "not
shown" (too few seeds for that margin). It does not look at the paper's number.

Everything here is pure: lists of numbers in, numbers out.
"""
import math

import numpy as np
from scipy import stats

BOOT = 4000        # bootstrap resamples of a reference set
LEVEL = 0.90       # the interval given with every rate
TOST_ALPHA = 0.05  # each one-sided test of the equivalence
MIN_REFERENCE = 20 # a reference set smaller than this gives rates marked as provisional
SEED = 20261207    # the bootstrap's fixed seed
# the private check's level (repro.judge.private's per-run rule, and the pooled test here)
PRIVATE_CONFIDENCE = 0.999
PRIVATE_Z = 3.090232306167813  # the standard normal's 99.9% quantile


def _bounds(target):
    """(lowest, highest) mean that meets the target's bar."""
    v, tol = target.paper_value, target.tolerance
    if target.direction == "higher":
        return v - tol, math.inf
    if target.direction == "lower":
        return -math.inf, v + tol
    return v - tol, v + tol


def pass_probability(mu, sd, n, target):
    """P(the mean of n runs, each ~ Normal(mu, sd), meets the bar): a float, or an array of them
    where mu or sd is an array (the bootstrap's resamples in one call, not thousands)."""
    lo, hi = _bounds(target)
    mu, se = np.asarray(mu, dtype=np.float64), np.asarray(sd, dtype=np.float64) / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):  # se 0: the mean is mu itself, taken below
        p = stats.norm.cdf((hi - mu) / se) - stats.norm.cdf((lo - mu) / se)
    p = np.where(se == 0, ((lo <= mu) & (mu <= hi)).astype(np.float64), p)
    return float(p) if p.ndim == 0 else p


def wrong_side(target, delta):
    """The true mean of a reproduction `delta` points on the failing side of the paper's number."""
    return target.paper_value + delta if target.direction == "lower" else target.paper_value - delta


def _n(target):
    return target.policy.n


def _resamples(values):
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(SEED)
    picks = values[rng.integers(0, len(values), size=(BOOT, len(values)))]
    return picks.mean(axis=1), picks.std(axis=1, ddof=1)


def _interval(samples):
    lo, hi = np.quantile(samples, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return float(lo), float(hi)


def error_rates(values, target, delta):
    """{"n_reference", "mean", "sd", "false_reject", "false_reject_interval", "delta",
    "false_accept", "false_accept_interval"} for a target from the port's reference values."""
    if len(values) < 2:
        raise ValueError("a reference set needs at least 2 runs")
    n = _n(target)
    mu, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    mus, sds = _resamples(values)
    fr = 1 - pass_probability(mu, sd, n, target)
    frs = 1 - pass_probability(mus, sds, n, target)
    out = {"n_reference": len(values), "mean": round(mu, 4), "sd": round(sd, 4),
           "false_reject": round(fr, 4), "false_reject_interval": [round(x, 4) for x in _interval(frs)],
           "delta": delta, "false_accept": None, "false_accept_interval": None}
    if delta is not None:
        bad = wrong_side(target, delta)
        fa = pass_probability(bad, sd, n, target)
        fas = pass_probability(bad, sds, n, target)
        out.update(false_accept=round(fa, 4), false_accept_interval=[round(x, 4) for x in _interval(fas)])
    return out


def alpha_bar(values, target, alpha):
    """(low, high): the bounds an honest reproduction's n-run mean stays within with probability
    1 - alpha, from the port's reference values alone: the normal prediction bound for the mean of
    n new runs given R reference runs, x - t(1 - alpha; R - 1) * s * sqrt(1/n + 1/R) (two-sided
    with alpha/2 a side for match), exact on average over reference sets where a run's value is
    normal. None: no bound on that side (the target's direction). Rounded outwards to 0.01."""
    values = np.asarray(values, dtype=np.float64)
    r, n = len(values), _n(target)
    if r < 2:
        raise ValueError("a reference set needs at least 2 runs")
    spread = float(values.std(ddof=1)) * math.sqrt(1 / n + 1 / r)
    centre = float(values.mean())
    t = lambda a: float(stats.t.ppf(1 - a, r - 1))
    low = lambda a: math.floor(100 * (centre - t(a) * spread) + 1e-9) / 100
    high = lambda a: math.ceil(100 * (centre + t(a) * spread) - 1e-9) / 100
    if target.direction == "higher":
        return low(alpha), None
    if target.direction == "lower":
        return None, high(alpha)
    return low(alpha / 2), high(alpha / 2)


def equivalence(port, authors, epsilon):
    """{"verdict": "equivalent"|"different"|"not shown", "difference", "interval", "epsilon",
    "n_port", "n_authors"}: the port's mean minus the authors', its (1 - 2 * TOST_ALPHA)
    Welch interval, and what two one-sided tests at +-epsilon conclude."""
    port, authors = np.asarray(port, dtype=np.float64), np.asarray(authors, dtype=np.float64)
    out = {"epsilon": epsilon, "n_port": len(port), "n_authors": len(authors), "difference": None,
           "interval": None, "verdict": "not shown"}
    if len(port) < 2 or len(authors) < 2:
        return out
    d = float(port.mean() - authors.mean())
    v1, v2 = port.var(ddof=1) / len(port), authors.var(ddof=1) / len(authors)
    se = math.sqrt(v1 + v2)
    if se == 0:
        lo = hi = d
    else:
        df = (v1 + v2) ** 2 / ((v1 ** 2 / (len(port) - 1) if v1 else 0) + (v2 ** 2 / (len(authors) - 1) if v2 else 0))
        t = float(stats.t.ppf(1 - TOST_ALPHA, df))
        lo, hi = d - t * se, d + t * se
    out.update(difference=round(d, 4), interval=[round(lo, 4), round(hi, 4)])
    if -epsilon < lo and hi < epsilon:
        out["verdict"] = "equivalent"
    elif lo >= epsilon or hi <= -epsilon:
        out["verdict"] = "different"
    return out


def equivalence_text(eq):
    if eq["verdict"] == "equivalent":
        return f"equivalent to the authors' code within {eq['epsilon']:g}"
    if eq["verdict"] == "different":
        return f"different from the authors' code (by more than {eq['epsilon']:g})"
    return "not shown (too few seeds)" if eq["difference"] is None else \
        f"not shown (too few seeds for a margin of {eq['epsilon']:g})"


def private_power(rows, n, n_public, z, confidence):
    """What the public/private check can settle, from honest reference runs' private evaluations
    (rows: [{"public", "private", "n", "agrees"}], accuracies in percent). Returns
    {"runs", "refused", "gap_mean", "gap_sd", "per_run_fit", "pooled_bound", "pooled_fit"}:
    - refused: honest runs the per-run rule refused (its false rejects, observed);
    - per_run_fit: the median, over the honest runs, of the points a run could add to its public
      accuracy by fitting the test split and still pass the per-run rule (z at most `z`);
    - pooled_bound: the most a cell's mean public-minus-private gap over n runs may be, from the
      honest gaps alone (a one-sided `confidence` prediction bound: an honest cell exceeds it with
      probability 1 - confidence); pooled_fit: how far above the honest mean gap that is, the
      largest fit to the test split the pooled test lets through."""
    gaps = np.asarray([r["public"] - r["private"] for r in rows], dtype=np.float64)
    if len(gaps) < 2:
        raise ValueError("the private power needs at least 2 honest runs")
    fits = []
    for r in rows:
        p1, p2, n2 = r["public"] / 100, r["private"] / 100, r["n"]
        pooled = (p1 * n_public + p2 * n2) / (n_public + n2)
        se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n_public + 1 / n2))
        fits.append(100 * (z * se) - (r["public"] - r["private"]))
    mean, sd = float(gaps.mean()), float(gaps.std(ddof=1))
    fit = float(stats.t.ppf(confidence, len(gaps) - 1)) * sd * math.sqrt(1 / n + 1 / len(gaps))
    return {"runs": len(rows), "refused": sum(not r["agrees"] for r in rows), "gap_mean": round(mean, 3),
            "gap_sd": round(sd, 3), "per_run_fit": round(float(np.median(fits)), 2),
            "pooled_bound": round(mean + fit, 2), "pooled_fit": round(fit, 2)}
