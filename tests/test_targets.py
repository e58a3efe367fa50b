import math

import pytest

from repro.targets import Policy, Target, judge, summarize


def t(direction="higher", tol=1.0, policy=Policy()):
    return Target("acc", 90.0, direction, tol, "Table 1", policy)


def test_directions():
    assert t("higher").reached(89.0) and not t("higher").reached(88.99)
    assert t("higher").reached(99.0)
    assert t("lower").reached(91.0) and not t("lower").reached(91.01) and t("lower").reached(10.0)
    assert t("match").reached(89.0) and t("match").reached(91.0)
    assert not t("match").reached(91.5) and not t("match").reached(88.5)
    assert not t("higher").reached(math.nan) and not t("lower").reached(math.inf)


def test_single_policy_judges_exactly_one_run():
    assert judge(t(), [(0, 89.5)]).passed
    v = judge(t(), [(0, 88.0)])
    assert not v.passed and "88.00 misses >= 89.00" in v.why
    v = judge(t(), [(0, 80.0), (1, 95.0)])
    assert not v.passed and "exactly one run, got 2" in v.why


def test_mean_of_n():
    policy = Policy("mean_of_n", 3)
    v = judge(t(policy=policy), [(0, 88.0), (1, 90.0), (2, 92.0)])
    assert v.passed and v.achieved == "90.00 ± 2.00 [88.00, 92.00]"
    v = judge(t(policy=policy), [(0, 87.0), (1, 88.0), (2, 89.0)])
    assert not v.passed and "mean of 3 seeds 88.00 misses >= 89.00" in v.why
    v = judge(t(policy=policy), [(0, 95.0), (1, 95.0)])
    assert not v.passed and "needs 3 runs with distinct seeds, got 2" in v.why
    v = judge(t(policy=policy), [(0, 95.0), (0, 95.0), (1, 95.0)])
    assert not v.passed and "share seed(s) 0" in v.why
    assert not judge(t(policy=policy), []).passed


def test_summarize_uses_sample_std():
    mean, std, lo, hi = summarize([1.0, 2.0, 3.0, 4.0])
    assert (mean, lo, hi) == (2.5, 1.0, 4.0)
    assert std == pytest.approx(1.2909944, rel=1e-6)


def test_bad_target_definitions():
    with pytest.raises(ValueError):
        Target("acc", 1.0, "up", 0.1, "x")
    with pytest.raises(ValueError):
        Target("acc", 1.0, "higher", -1, "x")
    with pytest.raises(ValueError):
        Policy("best_of_n", 3)
    with pytest.raises(ValueError):
        Policy("single", 3)
