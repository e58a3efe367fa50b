"""Decide whether runs reproduce their paper: python -m repro.verify RUN_DIR [RUN_DIR ...]

Each argument is a run directory or a folder holding run directories (searched
recursively). Runs are grouped by paper and experiment; every registered target
of each experiment is judged with its policy. Targets always come from the
registry (the paper's code), never from the run. A run counts only when it
finished with status success, is not a --lite smoke run, and followed the
experiment's registered config (only the seed and logging knobs may differ).
Exit status 0 only when every target of every experiment given is reached.
"""
import argparse
import json
import os
from dataclasses import dataclass, field

from repro.config import load_config, to_dict
from repro.errors import ReproError, run_cli
from repro.registry import get_paper
from repro.runlog import EVENTS, read_events
from repro.targets import judge

# Config keys a run may change without changing the experiment: they decide
# what is logged and when, not what is computed.
FREE_KEYS = {"train.seed", "train.log_every", "train.checkpoint_every", "train.visualdl"}


@dataclass
class Run:
    path: str
    paper: str
    exp: str
    seed: int
    metrics: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)


def find_runs(paths):
    runs = []
    for p in paths:
        if not os.path.isdir(p):
            raise ReproError(f"{p}: no such run directory")
        if os.path.isfile(os.path.join(p, EVENTS)):
            runs.append(p)
            continue
        found = sorted(root for root, _, files in os.walk(p) if EVENTS in files)
        if not found:
            raise ReproError(f"{p}: no runs found (no {EVENTS} in it or below it)")
        runs.extend(found)
    return list(dict.fromkeys(os.path.normpath(r) for r in runs))


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(paper, exp, config):
    """Keys where the run's config departs from the registered experiment config."""
    registered = _flatten(to_dict(load_config(paper.config_class, exp.config_path)))
    used = _flatten(config)
    diffs = []
    for key in sorted(set(registered) | set(used)):
        if key in FREE_KEYS:
            continue
        if registered.get(key, "<absent>") != used.get(key, "<absent>"):
            diffs.append(f"{key}={used.get(key, '<absent>')!r} (registered {registered.get(key, '<absent>')!r})")
    return diffs


def read_run(path):
    events = read_events(path)
    head = events[0]
    if head.get("kind") != "run_start":
        raise ReproError(f"{path}: {EVENTS} does not start with a run_start event")
    for key in ("paper", "exp", "seed", "config"):
        if key not in head:
            raise ReproError(f"{path}: run_start event has no {key!r}")
    run = Run(path, head["paper"], head["exp"], head["seed"])
    paper = get_paper(run.paper)
    exp = paper.experiment(run.exp)

    ends = [e for e in events if e["kind"] == "run_end"]
    last_kind = next((e["kind"] for e in reversed(events) if e["kind"] in ("run_end", "resume")), None)
    if last_kind != "run_end":
        run.problems.append("the run did not finish (no run_end after its last start or resume)")
    elif ends[-1].get("status") != "success":
        run.problems.append(f"the run ended with status {ends[-1].get('status')!r}")
    else:
        end = ends[-1]
        run.metrics = end.get("metrics") or {}
        evals = [e for e in events if e["kind"] == "eval"]
        if not evals or evals[-1].get("step") != end.get("step") or evals[-1].get("metrics") != run.metrics:
            run.problems.append("the final metrics are not those of the last evaluation at the final step")
    if head.get("lite"):
        run.problems.append("a --lite smoke run, not the experiment")
    diffs = config_differences(paper, exp, head["config"])
    if diffs:
        run.problems.append("config departs from the registered experiment: " + "; ".join(diffs))
    return run


def verify(paths):
    """Returns (rows, excluded, ok). rows: one dict per (experiment, target)."""
    runs = [read_run(p) for p in find_runs(paths)]
    groups = {}
    for run in runs:
        groups.setdefault((run.paper, run.exp), []).append(run)
    rows, excluded = [], []
    for (paper_name, exp_name), group in groups.items():
        paper = get_paper(paper_name)
        exp = paper.experiment(exp_name)
        good = [r for r in group if not r.problems]
        excluded += [r for r in group if r.problems]
        for target in exp.targets:
            values = []
            for r in good:
                if target.metric not in r.metrics:
                    raise ReproError(f"{r.path}: final metrics have no {target.metric!r} "
                                     f"(have {', '.join(r.metrics) or 'none'})")
                values.append((r.seed, float(r.metrics[target.metric])))
            verdict = judge(target, values)
            why = verdict.why
            if len(good) < len(group):
                why += f" ({len(group) - len(good)} run(s) excluded, see below)"
            rows.append({"paper": paper_name, "exp": exp_name, "metric": target.metric,
                         "paper_value": target.paper_value, "achieved": verdict.achieved,
                         "tolerance": target.tolerance, "direction": target.direction,
                         "policy": str(target.policy), "passed": verdict.passed, "why": why,
                         "seeds": sorted(r.seed for r in good), "values": list(verdict.values),
                         "source": target.source})
    ok = bool(rows) and all(r["passed"] for r in rows)
    return rows, excluded, ok


def print_table(rows, excluded, ok):
    header = ["paper/experiment", "metric", "paper", "achieved (mean ± std [min, max])", "tol", "dir",
              "policy", "runs", "verdict"]
    table = [[f"{r['paper']}/{r['exp']}", r["metric"], f"{r['paper_value']:.2f}", r["achieved"],
              f"{r['tolerance']:.2f}", r["direction"], r["policy"], str(len(r["seeds"])),
              "PASS" if r["passed"] else "FAIL"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *table)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    print(line(header))
    print(line(["-" * w for w in widths]))
    for cells in table:
        print(line(cells))
    print("\nwhy:")
    for r in rows:
        print(f"  {r['paper']}/{r['exp']} {r['metric']}: {'PASS' if r['passed'] else 'FAIL'}: {r['why']}")
    if excluded:
        print("\nexcluded runs (they do not count):")
        for run in excluded:
            print(f"  {run.path}: {'; '.join(run.problems)}")
    passed = sum(r["passed"] for r in rows)
    print(f"\n{passed} of {len(rows)} targets reached: "
          + ("REPRODUCED" if ok else "NOT REPRODUCED"))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.verify", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    args = ap.parse_args(argv)
    rows, excluded, ok = verify(args.runs)
    if args.json:
        print(json.dumps({"ok": ok, "targets": rows,
                          "excluded": [{"path": r.path, "problems": r.problems} for r in excluded]}, indent=1))
    else:
        print_table(rows, excluded, ok)
    return 0 if ok else 1


if __name__ == "__main__":
    run_cli(main)
