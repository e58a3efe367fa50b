"""The verdict on runs: find them, check each from its files (repro.judge.compliance), flag
copies, recompute and replay them (repro.judge.recheck), then judge every registered target of
each experiment with its policy. Verdict is the one object the table, the JSON and the pages
render."""
import os
from dataclasses import dataclass

from repro.errors import ReproError
from repro.judge import copies, coverage
from repro.judge.checks import excluded_note, ran, refusals
from repro.judge.compliance import LITE, check_run, load_run, registered
from repro.judge.options import Options
from repro.judge.recheck import audit_runs
from repro.run import rundir
from repro.targets import judge


def find_runs(paths):
    runs = []
    for p in paths:
        if not os.path.isdir(p):
            raise ReproError(f"{p}: no such run directory")
        if rundir.is_run(p):
            runs.append(p)
            continue
        found = []
        for root, dirs, files in os.walk(p):  # links to folders are not followed
            dirs.sort()
            if root != p and rundir.COPIES in files:
                dirs[:] = []  # e.g. a submission bundle: its logs/ copy a run found elsewhere; name it to check it
            elif rundir.EVENTS in files:
                found.append(root)
                dirs[:] = [d for d in dirs if d != rundir.CHECKPOINTS]
        if not found:
            raise ReproError(f"{p}: no runs found (no {rundir.EVENTS} in it or below it)")
        runs.extend(found)
    return list(dict.fromkeys(os.path.normpath(r) for r in runs))


def verify(paths, options=None):
    """The Verdict on the runs under paths (rows, runs, ok = verify(...) unpacks it)."""
    options = options or Options()
    runs = [check_run(load_run(p), options.protocol_of or registered) for p in find_runs(paths)]
    groups = {}
    for run in runs:
        if run.protocol is not None:
            groups.setdefault((run.protocol.paper, run.protocol.exp), []).append(run)
    copies.flag_copies(runs)
    copies.flag_earlier(runs, options.earlier)
    for group in groups.values():
        for run in group:  # a run without a target's metric counts for none of them
            for target in run.protocol.targets:
                if not run.problems and target.metric not in run.metrics:
                    run.problems.append(f"final metrics have no {target.metric!r}")
    if options.recompute or options.replay:
        # a --lite run is audited too (it never counts, but its owner learns whether it would)
        audit_runs([r for r in runs if r.protocol is not None and all(p == LITE for p in r.problems)], options)
    rows = []
    for (paper_name, exp_name), group in groups.items():
        good = [r for r in group if not r.problems]
        for target in group[0].protocol.targets:
            values = [(r.seed, float(_value(r, target.metric))) for r in good]
            verdict = judge(target, values)
            passed, why = verdict.passed, verdict.why
            if options.refused:
                passed, why = False, f"not reached: the submission is refused: {refusals(options.refused)}"
            rows.append({"paper": paper_name, "exp": exp_name, "metric": target.metric,
                         "paper_value": target.paper_value, "achieved": verdict.achieved,
                         "tolerance": target.tolerance, "direction": target.direction, "bar": target.bar(),
                         "policy": str(target.policy), "passed": passed, "why": why,
                         "excluded": len(group) - len(values), "refused": bool(options.refused),
                         "seeds": [s for s, _ in values], "values": list(verdict.values),
                         "source": target.source, "recomputed": bool(options.recompute)})
    ok = bool(rows) and all(r["passed"] for r in rows) and not any(r.problems for r in runs)
    return Verdict(rows, runs, ok, options)


def _value(run, metric):
    """The value a verdict uses: verify's own recomputation when there is one."""
    return run.recomputed[metric] if run.recomputed is not None else run.metrics[metric]


@dataclass
class Verdict:
    """What verify decided: one row per (experiment, target) with the achieved value, the bar
    and why; the runs judged (each with its problems, recompute and replay); ok, whether every
    target is reached and every run counts; and the options it was judged with."""
    rows: list
    runs: list
    ok: bool
    options: Options

    def __iter__(self):  # rows, runs, ok = verify(...)
        return iter((self.rows, self.runs, self.ok))

    def print_table(self):
        """The verdict as verify prints it: the targets' table and why, the replay audit, the runs
        that do not count, warnings, and the last line."""
        rows, runs, ok, options = self.rows, self.runs, self.ok, self.options
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
                print(f"  {r['paper']}/{r['exp']} {r['metric']}: {'PASS' if r['passed'] else 'FAIL'}: {r['why']}"
                      f"{excluded_note(r, 'see below')}")
        audited = [r for r in runs if r.replayed]
        if audited:
            steps = sum(s.get("steps", 0) for r in audited for s in r.replayed)
            total = sum(r.cfg.train.steps for r in audited)
            secs = sum(s.get("seconds", 0) for r in audited for s in r.replayed)
            trained = sum(float(r.events[-1].get("seconds") or 0) for r in audited)
            share = f" ({secs / trained:.0%} of their logged training time)" if trained else ""
            print(f"\nreplay audit: {sum(len(r.replayed) for r in audited)} segments of {len(audited)} runs, "
                  f"{steps:,} of their {total:,} steps ({steps / max(1, total):.0%}), {secs:.0f} s{share}")
            for run in audited:
                segs = ", ".join(f"{s['a']}->{s['b']} " + ("error" if "error" in s else "exact" if s["exact"]
                                                            else f"{s['distance']:.1e}") for s in run.replayed)
                cov = f" ({coverage.describe_coverage(run.coverage)})" if run.coverage else ""
                print(f"  {run.path}: {segs}{cov}")
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
        checked = f" (checked: {options.assurance()})" if options else ""
        print(f"\n{passed} of {len(rows)} targets reached, {len(runs) - len(excluded)} of {len(runs)} runs count"
              f"{checked}: " + ("REPRODUCED" if ok else "NOT REPRODUCED"))

    def json(self):
        """The verdict as verify --json prints it (a results file holds this: repro.results)."""
        rows, runs, ok, options = self.rows, self.runs, self.ok, self.options
        checks = options.checks()
        return {"ok": ok, "checked": options.assurance(), "checks": checks, "sandbox": options.sandbox_text(),
                "challenge": options.challenge, "targets": rows,
                "runs": [{"path": r.path, "exp": r.header.get("exp"), "seed": r.seed, "problems": r.problems,
                          "warnings": r.warnings, "metrics": r.metrics, "recomputed": r.recomputed,
                          "replay": r.replayed, "coverage": r.coverage,
                          "coverage_text": coverage.describe_coverage(r.coverage) if r.coverage else None,
                          "checks": ran(r, checks),
                          "private": r.private,
                          "final_weights": r.final_weights or None,
                          "kept_weights": sorted(set(r.kept_weights.values()))}
                         for r in runs]}
