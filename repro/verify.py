"""Decide whether runs reproduce their paper: python -m repro.verify RUN_DIR [RUN_DIR ...]

Each argument is a run directory or a folder holding run directories (searched
recursively). Every run is checked for compliance (repro/compliance.py: hash
chain, required events, status, registered protocol and targets, order of steps
and time, consistent results; with --recompute, the checkpoint is re-evaluated
too). Runs that pass are grouped by paper and experiment and every registered
target is judged with its policy. Targets always come from the registry (the
paper's code), never from the run. Exit status 0 only when every target of every
experiment given is reached.
"""
import argparse
import json
import os
import sys

from repro.compliance import check_run, load_run, recompute
from repro.errors import ReproError, run_cli
from repro.registry import get_paper
from repro.runlog import EVENTS
from repro.targets import judge

BUNDLE_MANIFEST = "submission.json"  # written by repro.submit at a bundle's root


def find_runs(paths):
    runs = []
    for p in paths:
        if not os.path.isdir(p):
            raise ReproError(f"{p}: no such run directory")
        if os.path.isfile(os.path.join(p, EVENTS)):
            runs.append(p)
            continue
        found = []
        for root, dirs, files in os.walk(p):
            if root != p and BUNDLE_MANIFEST in files:
                dirs[:] = []  # a repro.submit bundle: its logs/ copies a run found elsewhere; name it to check it
            elif EVENTS in files:
                found.append(root)
        found.sort()
        if not found:
            raise ReproError(f"{p}: no runs found (no {EVENTS} in it or below it)")
        runs.extend(found)
    return list(dict.fromkeys(os.path.normpath(r) for r in runs))


def verify(paths, with_recompute=False, progress=None, local=None):
    """Returns (rows, runs, ok). rows: one dict per (experiment, target).
    local: {free config key: path here} for --recompute (see compliance.recompute)."""
    runs = []
    paths = find_runs(paths)
    for i, path in enumerate(paths, 1):
        run = check_run(load_run(path))
        if with_recompute and not run.problems:
            if progress:
                progress(f"[{i}/{len(paths)}] recomputing {path}")
            run.problems += recompute(run, local)
        runs.append(run)
    groups = {}
    for run in runs:
        groups.setdefault((run.paper, run.exp), []).append(run)
    rows = []
    for (paper_name, exp_name), group in groups.items():
        try:
            exp = get_paper(paper_name).experiment(exp_name)
        except ReproError:
            continue  # the runs carry the reason
        _flag_copies(group)
        good = [r for r in group if not r.problems]
        for target in exp.targets:
            values = []
            for r in good:
                if target.metric not in r.metrics:
                    r.problems.append(f"final metrics have no {target.metric!r}")
                else:
                    values.append((r.seed, float(r.metrics[target.metric])))
            verdict = judge(target, values)
            why = verdict.why
            excluded = len(group) - len(values)
            if excluded:
                why += f" ({excluded} run(s) excluded, see below)"
            rows.append({"paper": paper_name, "exp": exp_name, "metric": target.metric,
                         "paper_value": target.paper_value, "achieved": verdict.achieved,
                         "tolerance": target.tolerance, "direction": target.direction, "bar": target.bar(),
                         "policy": str(target.policy), "passed": verdict.passed, "why": why,
                         "seeds": [s for s, _ in values], "values": list(verdict.values),
                         "source": target.source})
    ok = bool(rows) and all(r["passed"] for r in rows) and not any(r.problems for r in runs)
    return rows, runs, ok


def _flag_copies(group):
    """Runs of one set that end in the same checkpoint are one run relabelled."""
    by_sha = {}
    for run in group:
        ck = run.last("checkpoint")
        if ck and ck.get("sha256"):
            by_sha.setdefault(ck["sha256"], []).append(run)
    for copies in by_sha.values():
        if len(copies) > 1:
            for run in copies:
                others = ", ".join(r.path for r in copies if r is not run)
                run.problems.append(f"its final checkpoint is identical to that of {others} (a copied run)")


def print_table(rows, runs, ok):
    header = ["paper/experiment", "metric", "paper", "achieved (mean ± std [min, max])", "tol", "dir",
              "policy", "runs", "verdict"]
    table = [[f"{r['paper']}/{r['exp']}", r["metric"], f"{r['paper_value']:.2f}", r["achieved"],
              f"{r['tolerance']:.2f}", r["direction"], r["policy"], str(len(r["seeds"])),
              "PASS" if r["passed"] else "FAIL"] for r in rows]
    if table:
        widths = [max(len(x) for x in col) for col in zip(header, *table)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        print(line(header))
        print(line(["-" * w for w in widths]))
        for cells in table:
            print(line(cells))
        print("\nwhy:")
        for r in rows:
            print(f"  {r['paper']}/{r['exp']} {r['metric']}: {'PASS' if r['passed'] else 'FAIL'}: {r['why']}")
    excluded = [r for r in runs if r.problems]
    if excluded:
        print("\nexcluded runs (they do not count):")
        for run in excluded:
            print(f"  {run.path}:")
            for p in run.problems:
                print(f"    - {p}")
    warned = [r for r in runs if r.warnings]
    if warned:
        print("\nwarnings:")
        for run in warned:
            print(f"  {run.path}: {'; '.join(run.warnings)}")
    passed = sum(r["passed"] for r in rows)
    print(f"\n{passed} of {len(rows)} targets reached, {len(runs) - len(excluded)} of {len(runs)} runs count: "
          + ("REPRODUCED" if ok else "NOT REPRODUCED"))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.verify", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--recompute", action="store_true",
                    help="also re-evaluate each run's logged checkpoint and compare with its logged metrics")
    ap.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    ap.add_argument("--local", action="append", default=[], metavar="KEY=PATH",
                    help="with --recompute: where this machine keeps a file the run used by path, e.g. "
                         "model.pretrained=/models/sd-v1-5 (only a paper's local-path keys; the file must "
                         "have the sha256 the run logged)")
    args = ap.parse_args(argv)
    local = {}
    for text in args.local:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value:
            raise ReproError(f"--local {text!r} is not KEY=PATH")
        local[key.strip()] = os.path.abspath(os.path.expanduser(value)) if "builtin:" not in value else value
    if local and not args.recompute:
        raise ReproError("--local only matters with --recompute")
    progress = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.recompute else None
    rows, runs, ok = verify(args.runs, args.recompute, progress, local)
    if args.json:
        print(json.dumps({"ok": ok, "targets": rows,
                          "runs": [{"path": r.path, "exp": r.exp, "seed": r.seed, "problems": r.problems,
                                    "warnings": r.warnings} for r in runs]}, indent=1))
    else:
        print_table(rows, runs, ok)
    return 0 if ok else 1


if __name__ == "__main__":
    run_cli(main)
