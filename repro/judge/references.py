"""Reference sets (issue 37): honest runs of a registered cell, made only to measure how often
its verdict is wrong, on seeds that are neither judged nor calibration seeds.

    logs/<paper>_reference/<exp>/seed<N>/       the port's runs: the registered recipe,
        python -m repro.train --paper P --exp E --seeds 1000-1019 -o train.audit_every=0
        (the log and the final weights; verify --recompute checks them again)
    logs/<paper>_reference/authors_<exp>.jsonl  the authors' own code on the same seeds, one
        JSON object per seed ({"seed", "test_acc", ...}: papers/<paper>/authors_procedure.py --json)
    logs/<paper>_reference/private_<exp>.jsonl  the port's runs' public and private accuracies
        ({"public", "private", "n", "agrees", ...}: papers/<paper>/private_calibration.py --json):
        the honest gaps the pooled private test is calibrated on

The folder is found beside the verified runs' logs folder (the checkout's logs/), or named
(--references). What a cell's verdict then carries (cell_report): the false-reject and
false-accept rates with their intervals and the reference set's size and CPU kinds; the
reference rule's verdict (the target's second version) where it differs from the
registered one; and the equivalence of the judged runs with the authors' code.
Only logs and JSON are read here: no paper code is imported.
"""
import os

from repro import strict
from repro.errors import ReproError
from repro.judge import rates
from repro.run import rundir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout's top
MAX_BYTES, MAX_LINE = 64 << 20, 1 << 20  # a reference file of JSON lines (the authors' carry a curve a seed)


def folder_of(paper, given=None):
    """The reference folder of a paper: `given`, else logs/<paper>_reference in the working
    directory or in the checkout the harness runs from; None where there is none."""
    if given:
        return given
    for top in (os.getcwd(), ROOT):
        path = os.path.join(top, "logs", f"{paper}_reference")
        if os.path.isdir(path):
            return path
    return None


def isa_kind(isa):
    """'AVX-512' or 'no AVX-512': the CPU kinds whose float32 bits differ."""
    return "AVX-512" if "avx512f" in str(isa or "").split(",") else "no AVX-512"


def port_runs(folder, exp, metric):
    """[(seed, value, CPU kind)] of the port's reference runs that ended successfully."""
    top = os.path.join(folder, exp)
    if not os.path.isdir(top):
        return []
    out = []
    for name in sorted(os.listdir(top)):
        path = os.path.join(top, name)
        if not (name.startswith("seed") and rundir.is_run(path)):
            continue
        try:
            run = rundir.read(path)
        except ReproError:
            continue  # an unreadable reference run is left out; the test of the shipped sets counts them
        end = run.last("run_end")
        value = ((end or {}).get("metrics") or {}).get(metric)
        if end is None or end.get("status") != "success" or not isinstance(value, (int, float)) or run.seed is None:
            continue
        out.append((run.seed, float(value), isa_kind(run.header.get("env", {}).get("cpu_isa"))))
    return out


def authors_runs(folder, exp):
    """[(seed, test_acc)] of the authors' code on the reference seeds (one JSON line a seed)."""
    path = os.path.join(folder, f"authors_{exp}.jsonl")
    if not os.path.isfile(path):
        return []
    rows = _rows(path, ("seed", "test_acc"))
    if any(type(r["seed"]) is not int for r in rows):
        raise ReproError(f"{path}: a seed is not an integer")
    return [(r["seed"], float(r["test_acc"])) for r in rows]


def _rows(path, keys):
    """The JSON lines of a reference file (read strictly: repro.strict), each a mapping with
    number `keys`; a ReproError with one line."""
    out = []
    for i, line, _ in strict.lines(path, MAX_LINE, MAX_BYTES):
        if not line.strip():
            continue
        row = strict.loads_json(strict.utf8(line, f"{path} line {i}"), f"{path} line {i}")
        row = row if isinstance(row, dict) else {}
        if not all(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool) for k in keys):
            raise ReproError(f"{path} line {i}: needs {', '.join(keys)} as numbers")
        out.append(row)
    return out


def pooled_private(paper, exp, runs_private, n_public, folder=None):
    """The pooled private test of one cell (None: no honest gaps to calibrate it, or not every run
    has a private result): its runs' mean public-minus-private gap against the bound the honest
    reference gaps set (repro.judge.rates.private_power). runs_private: each run's
    {"public", "private"}; n_public: the public split's samples."""
    folder = folder_of(paper, folder)
    path = os.path.join(folder, f"private_{exp}.jsonl") if folder else None
    if not path or not os.path.isfile(path) or not runs_private or n_public is None:
        return None
    if any(not isinstance(r, dict) or "public" not in r or "private" not in r for r in runs_private):
        return None
    honest = _rows(path, ("public", "private", "n"))
    power = rates.private_power(honest, len(runs_private), n_public, rates.PRIVATE_Z, rates.PRIVATE_CONFIDENCE)
    gap = sum(r["public"] - r["private"] for r in runs_private) / len(runs_private)
    return {"mean_gap": round(gap, 3), "bound": power["pooled_bound"], "honest_runs": power["runs"],
            "refused": gap > power["pooled_bound"]}


def cell_report(target, paper, exp, judged, folder=None):
    """What the verdict of one cell carries about its own error (None: no reference set):
    {"reference", "n_reference", "cpu", "provisional", "rates", "reference_rule", "equivalence"}.
    judged: the values of the runs the registered verdict judged."""
    folder = folder_of(paper, folder)
    port = port_runs(folder, exp, target.metric) if folder else []
    if len(port) < 2:
        return None
    values = [v for _, v, _ in port]
    out = {"reference": f"{os.path.basename(os.path.normpath(folder))}/{exp}", "n_reference": len(port),
           "seeds": [s for s, _, _ in port], "cpu": sorted({k for _, _, k in port}),
           "provisional": len(port) < rates.MIN_REFERENCE,
           "rates": rates.error_rates(values, target, target.delta), "reference_rule": None, "equivalence": None}
    rule = target.reference_rule
    if rule is not None and judged and len(judged) >= target.policy.n:
        mean = sum(judged) / len(judged)
        out["reference_rule"] = {"alpha": rule.alpha, "bar": rule.bar(), "passed": rule.reached(mean),
                                 "mean": round(mean, 4), "decided": rule.decided}
    authors = [v for _, v in authors_runs(folder, exp)]
    if authors and target.epsilon is not None:
        out["equivalence"] = rates.equivalence(judged, authors, target.epsilon)
    return out


def lines(row):
    """The report's lines under verify's table, for one row ([] without a reference set)."""
    rep = row.get("error_rates")
    if not rep:
        return []
    r, cell = rep["rates"], f"{row['paper']}/{row['exp']}"
    size = f"{rep['n_reference']} reference runs of the port ({', '.join(rep['cpu'])})" + \
        (", fewer than the 20 a rate needs: provisional" if rep["provisional"] else "")
    fr = f"false reject {r['false_reject']:.1%} [{r['false_reject_interval'][0]:.1%}, {r['false_reject_interval'][1]:.1%}]"
    out = [f"  {cell}: {fr}"]
    if r["false_accept"] is not None:
        out[0] += (f"; false accept {r['false_accept']:.1%} [{r['false_accept_interval'][0]:.1%}, "
                   f"{r['false_accept_interval'][1]:.1%}] for a reproduction {r['delta']:g} points short of the paper")
    out[0] += f" ({size})"
    rule = rep["reference_rule"]
    if rule is not None and rule["passed"] != row["passed"]:
        out.append(f"    the reference rule (alpha {rule['alpha']:.0%}, set from the reference runs alone, "
                   f"{rule['decided']}) says {'PASS' if rule['passed'] else 'FAIL'}: mean {rule['mean']:.2f} "
                   f"{'meets' if rule['passed'] else 'misses'} {rule['bar']}; the registered rule decides")
    eq = rep["equivalence"]
    if eq is not None:
        detail = "" if eq["difference"] is None else (
            f": difference {eq['difference']:+.2f} [{eq['interval'][0]:+.2f}, {eq['interval'][1]:+.2f}]")
        out.append(f"    against the authors' code ({eq['n_port']} runs here, {eq['n_authors']} of theirs): "
                   f"{rates.equivalence_text(eq)}{detail}")
    return out
