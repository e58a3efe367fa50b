"""The verdict on runs: find them, check each from its files (repro.judge.compliance), flag
copies, recompute and replay them through sandboxed workers (repro.judge.audit plans and runs
them) and set what their results mean for each run (its problems, recomputed metrics, replayed
segments and private evaluation), then judge every registered target of each experiment with
its policy. Verdict is the one object the table, the JSON and the pages render."""
import os
import time
from dataclasses import dataclass

from repro.boundary import task
from repro.config import flatten
from repro.machine import check_mkl_path, run_cpu
from repro.errors import ReproError
from repro.judge import audit, copies, coverage, private as private_eval, references, segments
from repro.judge.checks import excluded_note, ran, refusals
from repro.judge.compliance import LITE, NO_AUDIT, check_run, load_run
from repro.judge.options import Options
from repro.judge.protocol import OPT_IN_KEYS, RegisteredProtocol
from repro.registry import ENV, ONLY, get_paper
from repro.run import rundir
from repro.run.progress import fmt_eta
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


def registered(run):
    """The protocol a run is judged against by default: its paper's own registration."""
    paper = get_paper(run.header["paper"])
    return RegisteredProtocol(paper, paper.experiment(run.header["exp"]))


def registered_eval_data(paper, exp):
    """{split: (n, sha256)} a registered experiment of this harness evaluates on (a contest's
    fresh private source must draw from the split its entry judges: repro.judge.contest)."""
    return get_paper(paper).experiment(exp).eval_data


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
        # so is a run without its audit checkpoints (a reference run): recomputed, never replayed
        audit_runs([r for r in runs if r.protocol is not None and all(p == LITE or p.startswith(NO_AUDIT)
                                                                      for p in r.problems)], options)
    rows = []
    for (paper_name, exp_name), group in groups.items():
        good = [r for r in group if not r.problems]
        for target in group[0].protocol.targets:
            values = [(r.seed, float(_value(r, target.metric))) for r in good]
            verdict = judge(target, values)
            passed, why = verdict.passed, verdict.why
            pooled = _pooled_private(group[0], paper_name, exp_name, target, good, options)
            if pooled is not None and pooled["refused"]:
                passed, why = False, (f"{why}; but pooled over its {len(good)} runs, the public {target.metric} exceeds "
                                      f"the private by {pooled['mean_gap']:.2f} points on average, above the "
                                      f"{pooled['bound']:.2f} that {pooled['honest_runs']} honest reference runs allow "
                                      f"(99.9%): fitted to the test split")
            if options.refused:
                passed, why = False, f"not reached: the submission is refused: {refusals(options.refused)}"
            rows.append({"paper": paper_name, "exp": exp_name, "metric": target.metric,
                         "paper_value": target.paper_value, "achieved": verdict.achieved,
                         "tolerance": target.tolerance, "direction": target.direction, "bar": target.bar(),
                         "policy": str(target.policy), "passed": passed, "why": why,
                         "excluded": len(group) - len(values), "refused": bool(options.refused),
                         "seeds": [s for s, _ in values], "values": list(verdict.values),
                         "source": target.source, "recomputed": bool(options.recompute), "private_pooled": pooled,
                         # how often this verdict is wrong, from the cell's reference sets (None: none)
                         "error_rates": references.cell_report(target, *_reference_cell(group[0], paper_name, exp_name),
                                                               [v for _, v in values], options.references)})
    ok = bool(rows) and all(r["passed"] for r in rows) and not any(r.problems for r in runs)
    return Verdict(rows, runs, ok, options)


def _reference_cell(run, paper, exp):
    """(paper, experiment) whose reference sets state a cell's error rates: a contest entry's
    `reference`, else the cell itself."""
    entry = getattr(run.protocol, "entry", None)
    ref = getattr(entry, "reference", None)
    return tuple(ref.split("/")) if ref else (paper, exp)


def _pooled_private(run, paper, exp, target, good, options):
    """The pooled private test of a cell whose every counted run has a private result
    (repro.judge.references.pooled_private), or None."""
    private = [r.private for r in good if r.private and "public" in r.private]
    if not good or len(private) != len(good):
        return None
    split = target.metric.partition("_")[0]
    n_public = (run.protocol.eval_data.get(split) or (None,))[0]
    return references.pooled_private(*_reference_cell(run, paper, exp), private, n_public, options.references)


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
            rated = [ln for r in rows for ln in references.lines(r)]
            if rated:
                print("\nhow often these verdicts are wrong (from reference sets: honest runs on other seeds; "
                      "90% intervals):")
                print("\n".join(rated))
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
        for title, lines in (("excluded runs (they do not count)",
                              [f"  {r.path}:" + "".join(f"\n    - {p}" for p in r.problems) for r in excluded]),
                             ("warnings", [f"  {r.path}: {'; '.join(r.warnings)}" for r in runs if r.warnings])):
            if lines:
                print(f"\n{title}:\n" + "\n".join(lines))
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


# recompute and replay through the workers, and what their results mean for each run

def worker_for(options):
    """How the workers of this verify import the paper: a submission's snapshot (contest), or
    the plugin folders and built-in papers of this process (a user's own runs)."""
    sandbox = options.sandbox()
    if options.tree:
        snap = options.snapshot()
        rel = os.path.relpath(os.path.realpath(options.plugin), os.path.realpath(options.tree))
        return task.Worker(sandbox, env={ENV: os.path.join(snap, rel), ONLY: "1"},
                            readonly=[(snap, snap)] + local_mounts(options), trusted=False, budget=options.budget,
                            last_words=options.last_words, executor=options.executor, carry=[snap])
    folders = options.plugin_copies([f for f in os.environ.get(ENV, "").split(os.pathsep) if f])
    parents = sorted({os.path.dirname(f) for f in folders})
    env = {ENV: os.pathsep.join(folders)} if folders else {}
    if os.environ.get(ONLY):
        env[ONLY] = os.environ[ONLY]
    return task.Worker(sandbox, env=env, readonly=[(p, p) for p in parents] + local_mounts(options), trusted=True,
                       budget=options.budget, last_words=options.last_words, executor=options.executor, carry=parents)


def local_mounts(options):
    """This machine's files named by --local (a pretrained model's folder), read-only for the workers,
    who under a root judge are another user: a folder they could not read is one line, with the fix."""
    paths = [p for p in sorted(set(options.local.values())) if isinstance(p, str) and os.path.exists(p)]
    if os.geteuid() == 0 and options.sandbox().enabled:
        for p in paths:
            want = 0o005 if os.path.isdir(p) else 0o004
            if os.stat(p).st_mode & want != want:
                raise ReproError(f"--local {p}: the sandboxed worker (another user) cannot read it; "
                                 f"make it readable: chmod -R a+rX {p}")
    return [(p, p) for p in paths]


def audit_runs(runs, options):
    """Recompute and replay, through sandboxed workers; turn the judged results into problems and values."""
    plans = []
    worker = worker_for(options) if runs else None
    for run in runs:
        wrong = sorted(set(options.local) - set(run.protocol.path_keys))
        if wrong:
            raise ReproError(f"--local {wrong[0]}: not a local-path key of {run.protocol.paper} "
                             f"(those are: {', '.join(run.protocol.path_keys) or 'none'})")
        unaudited = any(p.startswith(NO_AUDIT) for p in run.problems)
        segs = coverage.segments(run) if options.replay and not unaudited else []
        n = coverage.count(run, options.replay, segs, coverage.registered_segments(run, segs)) if segs else 0
        chosen = coverage.choose(segs, n, options.challenge, run.final_weights) if segs else []
        if segs:
            run.coverage = coverage.coverage_of(run, chosen, segs)
            if isinstance(options.replay, int) and len(segs) > 2 and n == 2:
                run.warnings.append(f"--replay 2 of {len(segs)} segments never replays a middle one: a forgery "
                                    f"there always escapes (use --replay with no count, or 'all')")
        own = flatten(run.header["config"])
        config_set = {k: own[k] for k in sorted(run.protocol.free_keys() | OPT_IN_KEYS) if k in own}
        entry = getattr(run.protocol, "entry", None)  # a contest's protocol values are enforced, not trusted
        config_set.update(entry.protocol if entry is not None else {})
        config_set.update(options.local)
        threads = run.header["env"].get("threads", 1)
        threads = threads if type(threads) is int and 1 <= threads <= 1024 else 1
        threads = options.threads or threads
        try:  # the run's MKL path, which its replay must take (absent: made before it was recorded, MKL's own)
            mkl = check_mkl_path(run.header["env"].get("mkl_path"), "the header's env.mkl_path")
        except ReproError as e:
            run.problems.append(str(e))
            continue
        private = None
        spec = options.private.get((run.protocol.paper, run.protocol.exp)) if options.recompute else None
        if spec is not None and not run.header["lite"]:
            try:
                private = spec.data(options.sandbox(), options.timeout)
            except ReproError as e:
                run.problems.append(f"private evaluation: {e}")
                continue
        plans.append(audit.Plan(run, options.recompute, segs, chosen, config_set, worker, options.cross_platform,
                                threads, private, None if run.header["lite"] else run.protocol.train_data, mkl))
    done = {"n": 0}

    def progress(path, result):
        done["n"] += 1
        if options.progress:
            options.progress(f"[{done['n']}/{len(runs)}] {path}: {_summary(result)}")

    t0 = time.perf_counter()

    def tasks_done(step, total, path, what):
        if options.progress:
            took = time.perf_counter() - t0
            left = f", about {fmt_eta(took / step * (total - step))} left" if step < total else ""
            options.progress(f"audit: {step} of {total} worker tasks done ({path}: {what}), "
                             f"{fmt_eta(took)} so far{left}")

    results = audit.run_audits(plans, options.jobs, options.timeout, progress, tasks_done)
    for run in runs:
        _judge_audit(run, results.get(run.path, {"error": "no result"}), options)


def _summary(result):
    if "error" in result:
        return f"error: {result['error']}"
    parts = []
    rec = result.get("recompute")
    if rec:
        parts.append("recompute " + ("error" if "error" in rec else "done"))
    for seg in result.get("replay", []):
        tag = "error" if "error" in seg else ("exact" if seg["exact"] else f"distance {seg['distance']:.1e}")
        parts.append(f"{seg['a']}->{seg['b']} {tag}" + (f" ({seg['seconds']:.1f} s)" if "seconds" in seg else ""))
    return "; ".join(parts) or "nothing to do"


def _judge_audit(run, result, options):
    if "error" in result:
        run.problems.append(f"audit: {result['error']}")
        return
    rec = result.get("recompute")
    if rec is not None:
        run.problems += _judge_recompute(run, rec, options)
    for seg in result.get("replay", []):
        run.replayed.append(seg)
        where = f"replay {seg['a']}->{seg['b']}"
        if "error" in seg:
            run.problems.append(f"{where}: {seg['error']}")
            continue
        if seg["a"] == 0 and seg.get("init_weights_sha256") != run.header["init_weights_sha256"]:
            run.problems.append(f"{where}: the initial weights its seed gives are not the ones the log names "
                                "(a cloned or relabelled run)")
        why = segments.judge_segment(seg, options.cross_platform)
        if why is None and not seg["exact"]:
            run.warnings.append(f"{where}: not bitwise equal but consistent across platforms: distance "
                                f"{seg['distance']:.2e}, rounding here {seg['spread']:.2e}")
        elif why is not None:  # a verifiable run's segment must match on any platform: none is an excuse
            excuse = "" if options.cross_platform or seg.get("verifiable") else _platform(run, options)
            run.problems.append(f"{where}: {why}{excuse}")


def _platform(run, options):
    """Why bitwise equality may not hold here: another CPU, or several processes."""
    if options.cross_platform:
        return ""
    env, notes = run.header["env"], []
    if env.get("world_size") not in (None, 1):
        notes.append(f"the run trained on {env.get('world_size')} processes, verify replays on one")
    other = options.executor.unmatched(run_cpu(env))  # this machine's CPU, or no cluster node's, is another
    if other:
        notes.append(other)
    return f"; {'; '.join(notes)}" if notes else ""


def _judge_recompute(run, rec, options):
    if "error" in rec:
        return [f"--recompute: {rec['error']}"]
    problems = []
    for split, (n, sha) in ({} if run.header["lite"] else run.protocol.eval_data).items():
        got = rec["data"].get(split)
        if got is None or got["n"] != n or (sha is not None and got["sha256"] != sha):
            problems.append(f"--recompute: the evaluation data built here for {split!r} are not the registered ones")
    pin, built = run.protocol.train_data, rec.get("train_data")
    if pin is not None and built is not None and (built["n"], built["sha256"]) != tuple(pin):
        problems.append(f"--recompute: the training split the plugin builds here is not the pinned one "
                        f"({built['n']} samples, sha256 {built['sha256'][:12]}…; pinned {pin[0]}, {pin[1][:12]}…)")
    if rec.get("artifact_refit") is False:
        problems.append(f"--recompute: {rundir.ARTIFACT} is not what the registered config fits on the training "
                        f"split (fitted again here, its sha256 differs)")
    got, logged = rec["metrics"], run.metrics
    rtol = audit.RECOMPUTE_RTOL if options.cross_platform else 0.0
    # every metric the judge computed (the protocol's, from the labels it holds) must be the
    # logged one; a loss is the paper's own function and is not recomputed by the judge
    bad = [f"{k} logged {logged.get(k)!r}, recomputed {got.get(k)!r}" for k in sorted(got)
           if not (isinstance(logged.get(k), (int, float)) and not isinstance(logged.get(k), bool)
                   and abs(got[k] - logged[k]) <= rtol * max(1.0, abs(logged[k])))]
    if not got:
        bad.append("nothing was recomputed")
    if bad:
        problems.append(f"--recompute: the checkpoint does not give the logged metrics ({'; '.join(bad)})"
                        f"{_platform(run, options)}")
    missing = [t.metric for t in run.protocol.targets if t.metric not in got]
    if missing and not run.header["lite"]:
        problems.append(f"--recompute: the judge cannot compute {', '.join(missing)} (not a harness metric of "
                        f"{run.protocol.source}), so it is not taken from the log")
    run.recomputed = got
    if rec.get("private"):
        problems += _judge_private(run, rec)
    return problems


def _judge_private(run, rec):
    """Each target's metric on the private split must agree with the public one (repro.judge.private)."""
    problems, private = [], rec["private"]
    run.private = {"n": private["n"], "metrics": private["metrics"], "agrees": True}
    for target in run.protocol.targets:
        split, _, name = target.metric.partition("_")
        mine, public = private["metrics"].get(name), run.recomputed.get(target.metric)
        n_public = rec.get("samples", {}).get(split)
        if mine is None or public is None or not n_public:
            problems.append(f"private evaluation: {target.metric} could not be compared on the private split")
            run.private["agrees"] = False
            continue
        agrees, z = private_eval.agreement(public, n_public, mine, private["n"])
        run.private.update({"public": public, "private": mine, "z": z})
        if not agrees:
            run.private["agrees"] = False
            problems.append("private evaluation: " + private_eval.why_not(target.metric, public, n_public, mine,
                                                                            private["n"], z))
    return problems
