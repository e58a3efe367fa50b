"""How often a verdict is wrong (issue 37): the statistics on numbers the tests make, and the
shipped reference sets' rates, reference rules and results files derived again from the runs."""
import json
import os

import numpy as np
import pytest
from conftest import REPO, cli

from repro import verify as verify_cmd
from repro.errors import ReproError
from repro.judge import rates, references
from repro.targets import Policy, ReferenceRule, Target

FIVE = Policy("mean_of_n", 5)
HIGHER = Target("acc", 94.0, "higher", 1.4, "t", FIVE, delta=3.0, epsilon=1.0)
MATCH = Target("acc", 56.0, "match", 2.0, "t", FIVE, delta=3.0, epsilon=1.0)
REFERENCE = os.path.join(REPO, "logs", "mnist1d_reference")


def honest_means(mu, sd, n, draws, seed=1):
    return np.random.default_rng(seed).normal(mu, sd, size=(draws, n)).mean(axis=1)


@pytest.mark.parametrize("target", [HIGHER, MATCH], ids=["higher", "match"])
def test_the_false_reject_rate_is_what_honest_reproductions_observe(target):
    mu, sd = target.paper_value - 0.8, 1.2
    reference = np.random.default_rng(7).normal(mu, sd, 4000)  # a large reference set: its rate is near the truth
    got = rates.error_rates(reference, target, target.delta)
    lo, hi = target.paper_value - target.tolerance, target.paper_value + target.tolerance
    means = honest_means(mu, sd, 5, 200_000)
    observed = float(np.mean(means < lo)) if target.direction == "higher" else float(np.mean((means < lo) | (means > hi)))
    assert abs(got["false_reject"] - observed) < 0.02, (got, observed)
    assert got["false_reject_interval"][0] <= observed <= got["false_reject_interval"][1]
    short = honest_means(target.paper_value - target.delta, sd, 5, 200_000)  # a reproduction delta points short
    accepted = float(np.mean(short >= lo)) if target.direction == "higher" else float(np.mean((short >= lo) & (short <= hi)))
    assert abs(got["false_accept"] - accepted) < 0.02, (got, accepted)


def test_a_small_reference_set_gives_a_wide_interval_and_a_constant_one_none():
    small = rates.error_rates([92.0, 93.5, 94.1, 92.7, 93.9], HIGHER, 3.0)
    large = rates.error_rates(np.random.default_rng(3).normal(93.2, 0.9, 200), HIGHER, 3.0)
    width = lambda r: r["false_reject_interval"][1] - r["false_reject_interval"][0]
    assert width(small) > 2 * width(large)
    constant = rates.error_rates([31.5] * 20, Target("acc", 32.0, "higher", 1.0, "t", FIVE), None)
    assert constant["false_reject"] == 0.0 and constant["false_accept"] is None
    with pytest.raises(ValueError):
        rates.error_rates([93.0], HIGHER, 3.0)


@pytest.mark.parametrize("target", [HIGHER, MATCH], ids=["higher", "match"])
def test_the_alpha_bar_rejects_alpha_of_honest_reproductions_over_reference_sets(target):
    from scipy import stats
    mu, sd, se = target.paper_value - 1.0, 1.0, 1.0 / np.sqrt(5)
    rng, rejected = np.random.default_rng(11), []
    for _ in range(400):  # many reference sets of 20: each gives a bar; honest 5-seed means fail it ...
        rule = ReferenceRule(0.05, *rates.alpha_bar(rng.normal(mu, sd, 20), target, 0.05))
        inside = (stats.norm.cdf((rule.high - mu) / se) if rule.high is not None else 1.0) - \
            (stats.norm.cdf((rule.low - mu) / se) if rule.low is not None else 0.0)
        rejected.append(1 - inside)
        assert (rule.high is None) == (target.direction == "higher")
    assert 0.035 <= float(np.mean(rejected)) <= 0.065, np.mean(rejected)  # ... alpha of the time, on average


def test_equivalence_says_equivalent_different_or_not_shown():
    rng = np.random.default_rng(2)
    same = rates.equivalence(rng.normal(93, 1, 20), rng.normal(93, 1, 20), 1.0)
    assert same["verdict"] == "equivalent", same
    apart = rates.equivalence(rng.normal(90, 0.5, 20), rng.normal(93, 0.5, 20), 1.0)
    assert apart["verdict"] == "different" and apart["interval"][1] < -1.0, apart
    few = rates.equivalence([92.0, 94.5], rng.normal(93, 1.5, 20), 1.0)
    assert few["verdict"] == "not shown", few
    assert rates.equivalence_text(few) == "not shown (too few seeds for a margin of 1)"
    assert rates.equivalence([93.0], [93.0, 92.0], 1.0)["verdict"] == "not shown"


def test_the_error_rate_declarations_are_not_part_of_the_bar_a_log_records():
    t = Target("acc", 94.0, "higher", 1.4, "t", FIVE, delta=3.0, epsilon=1.0,
               reference_rule=ReferenceRule(0.05, 92.7))
    assert t.to_dict() == Target("acc", 94.0, "higher", 1.4, "t", FIVE).to_dict()  # older logs keep matching
    with pytest.raises(ValueError, match="delta must be a positive number"):
        Target("acc", 94.0, "higher", 1.4, "t", FIVE, delta=-1.0)


def test_an_authors_reference_file_with_a_bad_line_is_one_line(tmp_path):
    (tmp_path / "authors_cnn.jsonl").write_text('{"seed": 1000, "test_acc": 93.1}\n{"seed": "x"}\n')
    with pytest.raises(ReproError, match="line 2: needs seed, test_acc as numbers"):
        references.authors_runs(str(tmp_path), "cnn")
    assert references.authors_runs(str(tmp_path), "gru") == []


# ------------------------------------------------------------------ the shipped reference sets

def shipped_cells():
    from repro.registry import get_paper
    paper = get_paper("mnist1d")
    return [(e.name, e.targets[0]) for e in paper.experiments]


@pytest.mark.skipif(not os.path.isdir(REFERENCE), reason="no shipped reference sets (logs/mnist1d_reference)")
def test_the_shipped_reference_runs_are_on_seeds_neither_judged_nor_calibration_and_the_rules_derive_from_them():
    from repro.papers import mnist1d
    for exp, target in shipped_cells():
        port = references.port_runs(REFERENCE, exp, "test_acc")
        if not port:
            continue
        seeds = {s for s, _, _ in port}
        assert not seeds & set(range(0, 5)) and not seeds & set(range(100, 105)), (exp, seeds)
        if exp in mnist1d.REFERENCE_RULE:  # the second version of the target: set from the reference runs alone
            assert len(port) >= rates.MIN_REFERENCE, exp
            assert tuple(mnist1d.REFERENCE_RULE[exp]) == rates.alpha_bar([v for _, v, _ in port], target, mnist1d.ALPHA)


@pytest.mark.skipif(not os.path.isdir(REFERENCE), reason="no shipped reference sets (logs/mnist1d_reference)")
def test_the_results_file_carries_the_rates_the_shipped_reference_sets_give():
    report = json.load(open(os.path.join(REPO, "logs", "mnist1d", "results.json")))
    cells = dict(shipped_cells())
    checked = 0
    for row in report["targets"]:
        got = references.cell_report(cells[row["exp"]], "mnist1d", row["exp"], row["values"], REFERENCE)
        assert row.get("error_rates") == (json.loads(json.dumps(got)) if got else None), row["exp"]
        checked += got is not None
    assert checked >= 3


@pytest.mark.skipif(not os.path.isdir(REFERENCE), reason="no shipped reference sets (logs/mnist1d_reference)")
def test_verify_prints_each_cells_error_rates_under_its_table(capsys):
    code, out, _ = cli(verify_cmd.main, [os.path.join(REPO, "logs", "mnist1d", "cnn")], capsys)
    assert code == 0, out
    assert "how often these verdicts are wrong" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("  mnist1d/cnn: false reject "))
    assert "false accept" in line and "3 points short of the paper" in line and "reference runs of the port" in line


def test_the_pooled_private_test_refuses_a_cell_whose_mean_gap_honest_runs_do_not_reach(tmp_path):
    rng = np.random.default_rng(4)
    with open(tmp_path / "private_cnn.jsonl", "w") as f:  # 20 honest runs: gaps around 0, spread 0.7
        for gap in rng.normal(0.0, 0.7, 20):
            f.write(json.dumps({"public": 93.0 + gap, "private": 93.0, "n": 4000, "agrees": True}) + "\n")
    honest = [{"public": 93.0 + g, "private": 93.0} for g in (0.4, -0.3, 0.6, 0.1, -0.2)]
    fitted = [{"public": r["public"] + 2.0, "private": r["private"]} for r in honest]  # 20 test answers memorised
    ok = references.pooled_private("p", "cnn", honest, 1000, str(tmp_path))
    caught = references.pooled_private("p", "cnn", fitted, 1000, str(tmp_path))
    assert not ok["refused"] and caught["refused"], (ok, caught)
    assert ok["honest_runs"] == 20 and 0.5 < caught["bound"] < 2.0
    # the per-run rule lets each of those runs through: 2 points is within 3.09 standard errors of one run
    power = rates.private_power([json.loads(ln) for ln in open(tmp_path / "private_cnn.jsonl")], 5, 1000, 3.09, 0.999)
    assert power["per_run_fit"] > 2.0 > power["pooled_fit"]
    assert references.pooled_private("p", "gru", honest, 1000, str(tmp_path)) is None  # no honest gaps to calibrate on
