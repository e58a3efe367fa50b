"""Decide whether runs reproduce their paper: python -m repro.verify RUN_DIR [RUN_DIR ...]

Each argument is a run directory or a folder holding run directories (searched
recursively). Every run is checked from its files (repro/judge/compliance.py: hash
chain, required events, status, registered protocol and targets, order of
steps and time, consistent and possible results, its checkpoints). With
--recompute its final checkpoint is evaluated again, and with --replay N the
replay audit re-trains N segments of it (repro/judge/audit.py); both run the paper's
code in child processes, and the verdict then rests on the values verify
computed itself. Runs that count are grouped by paper and experiment and every
registered target is judged with its policy. Targets always come from the
registry (the paper's code), never from the run. Exit status 0 only when every
target of every experiment given is reached.
"""
import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

from repro.boundary import identity, task
from repro.boundary.sandbox import Sandbox, readable_by_workers
from repro.config import flatten
from repro.datasets.download import add_data_dir_option, use_data_dir
from repro.env import cpu, run_cpu
from repro.errors import ReproError, run_cli
from repro.judge import audit, coverage, private as private_eval
from repro.judge.compliance import LITE, check_run, load_run, registered
from repro.judge.contest import protocol_of as contest_protocol, read_contest
from repro.judge.protocol import OPT_IN_KEYS
from repro.registry import ENV, ONLY, add_papers_option, use_folders
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


class Options:
    """How far verify goes beyond the logs; every tolerance is verify's own choice.

    replay: 0 (none), "default" (the default coverage, repro.judge.audit), "all", or N segments a run.
    sandbox: "required" (bubblewrap or refuse), "auto" (bubblewrap where it works), "off".
    tree/plugin: a submitted repository and its plugin package folder: workers then see a
    read-only snapshot of the tree's identified files alone, and nothing they report is
    trusted beyond tensors."""

    def __init__(self, recompute=False, replay=0, challenge=None, cross_platform=False, local=None, jobs=1,
                 timeout=3600, progress=None, protocol_of=registered, sandbox="auto", tree=None, plugin=None,
                 private=None, threads=None, budget=None):
        replay = parse_replay(replay)
        # one submission's time over all its workers, and what failed in it (repro.boundary.task.Budget)
        self.budget = task.Budget(budget)
        self.last_words = []  # [(digest, text)] of failed workers: the maintainers' log, never a page
        # CPU threads of the workers (None: each run's own); a train.verifiable run replays bitwise with any
        self.threads = threads
        self.recompute, self.replay, self.cross_platform = recompute, replay, cross_platform
        self.challenge = challenge or (secrets.token_hex(8) if replay else None)
        self.local, self.jobs, self.timeout, self.progress = local or {}, jobs, timeout, progress
        self.protocol_of = protocol_of  # what each run is judged against (repro.judge.protocol)
        self.sandbox_mode, self.tree, self.plugin = sandbox, tree, plugin
        self.private = private or {}  # {(paper, exp): repro.judge.private.PrivateEval}: checked with --recompute
        self._sandbox, self._snapshot, self._snapshot_dir = None, None, None
        self._copies, self._copies_dir = None, None
        if not cross_platform and (recompute or replay) and _on_accelerator():
            self.cross_platform = True  # GPU kernels are not bitwise reproducible, not even run to run

    def sandbox(self):
        if self._sandbox is None:
            self._sandbox = Sandbox(self.sandbox_mode)
        return self._sandbox

    def snapshot(self):
        """A read-only copy of exactly the submitted tree's identified files (made once),
        which is all of the submission a worker sees."""
        if self._snapshot is None:
            files, problems = identity.scan(self.tree)
            if problems:
                raise ReproError(f"the submitted code cannot be run: {problems[0]}"
                                 + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
            self._snapshot_dir = tempfile.TemporaryDirectory(prefix="repro-snapshot-")
            self._snapshot = identity.snapshot(self.tree, files, os.path.join(self._snapshot_dir.name, "tree"))
        return self._snapshot

    def plugin_copies(self, folders):
        """Copies of the user's own plugin folders (made once) that the workers import: the
        worker is another user (uid 65534), who may not read a folder of the user's own, and it
        sees nothing beside the package (never the runs next to it)."""
        if self._copies is None:
            self._copies_dir = tempfile.TemporaryDirectory(prefix="repro-plugins-")
            self._copies = []
            for i, folder in enumerate(folders):
                dest = os.path.join(self._copies_dir.name, str(i), os.path.basename(os.path.abspath(folder)))
                shutil.copytree(folder, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                readable_by_workers(os.path.dirname(dest))
                self._copies.append(dest)
        return self._copies

    def sandbox_text(self):
        if not (self.recompute or self.replay):
            return "no code run"
        return self.sandbox().describe()

    def checks(self):
        """The checks verify makes of every run, in words (the page and review.json say them)."""
        parts = ["logs"]
        if self.tree:
            parts.append("code identity")
        if self.recompute:
            parts.append("recompute")
        if self.recompute and self.private:
            parts.append("private evaluation")
        if self.replay:
            parts.append("replay")
        return parts

    def assurance(self):
        parts = ["logs"]
        if self.tree:
            parts.append("code identity")
        if self.recompute:
            parts.append("recomputed metrics")
        if self.recompute and self.private:
            parts.append("private evaluation")
        if self.replay:
            what = {"default": "the default coverage", "all": "every segment"}.get(self.replay,
                                                                                 f"{self.replay} segments")
            parts.append(f"replay audit of {what} per run (challenge {self.challenge})")
        text = ", ".join(parts) + (" [cross-platform tolerances]" if self.cross_platform else "")
        if self.recompute or self.replay:
            text += f"; paper code ran with the sandbox {self.sandbox_text()}"
        return text


def parse_replay(value):
    """0, an int N >= 2, 'default' or 'all' (a ReproError otherwise)."""
    if value in (None, 0, False):
        return 0
    if value in ("default", "all"):
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if type(value) is not int or value < 2:
        raise ReproError(f"--replay {str(value)[:20]}: give N >= 2 (the first and the last segment are always "
                         f"replayed), 'all', or nothing for the default coverage")
    return value


def _on_accelerator():
    try:
        import paddle
    except ImportError:
        return False
    return paddle.device.get_device() != "cpu"


def verify(paths, options=None):
    """The Verdict on the runs under paths (rows, runs, ok = verify(...) unpacks it)."""
    options = options or Options()
    runs = [check_run(load_run(p), options.protocol_of) for p in find_runs(paths)]
    groups = {}
    for run in runs:
        if run.protocol is not None:
            groups.setdefault((run.protocol.paper, run.protocol.exp), []).append(run)
    _flag_copies(runs)
    for group in groups.values():
        for run in group:  # a run without a target's metric counts for none of them
            for target in run.protocol.targets:
                if not run.problems and target.metric not in run.metrics:
                    run.problems.append(f"final metrics have no {target.metric!r}")
    if options.recompute or options.replay:
        # a --lite run is audited too (it never counts, but its owner learns whether it would)
        _audit([r for r in runs if r.protocol is not None and all(p == LITE for p in r.problems)], options)
    rows = []
    for (paper_name, exp_name), group in groups.items():
        good = [r for r in group if not r.problems]
        for target in group[0].protocol.targets:
            values = [(r.seed, float(_value(r, target.metric))) for r in good]
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
                         "source": target.source, "recomputed": bool(options.recompute)})
    ok = bool(rows) and all(r["passed"] for r in rows) and not any(r.problems for r in runs)
    return Verdict(rows, runs, ok, options)


def _value(run, metric):
    """The value a verdict uses: verify's own recomputation when there is one."""
    return run.recomputed[metric] if run.recomputed is not None else run.metrics[metric]


def _flag_copies(runs):
    """Runs whose weights at any kept checkpoint (the final one included) are the same as another
    run's, in any cell verify sees: one run relabelled, or stretches of one spliced into another.
    Within a cell (one experiment), also the same initial weights: a seed relabelled (across cells
    the same seed legitimately gives the same initial weights to the same architecture)."""
    cells = {}
    for run in runs:
        if run.events:
            cells.setdefault((run.header.get("paper"), run.header.get("exp")), []).append(run)
    for group in cells.values():
        _same(group, "initial weights (as logged)", lambda r: [r.header.get("init_weights_sha256")])
    _same([r for r in runs if r.events], "weights", lambda r: [r.final_weights] + list(r.kept_weights.values()))


def _same(runs, what, keys):
    by = {}
    for run in runs:
        for key in dict.fromkeys(k for k in keys(run) if k):
            by.setdefault(key, []).append(run)
    flagged = set()
    for copies in by.values():
        for run in copies if len(copies) > 1 else ():
            if id(run) in flagged:
                continue
            flagged.add(id(run))
            others = ", ".join(r.path for r in copies if r is not run)
            where = what if what.startswith("initial") else \
                ("final weights" if run.final_weights in {r.final_weights for r in copies if r is not run}
                 else "weights at a kept checkpoint")
            run.problems.append(f"its {where} are identical to those of {others} (a copied or spliced run)")


def worker_for(options):
    """How the workers of this verify import the paper: a submission's snapshot (contest), or
    the plugin folders and built-in papers of this process (a user's own runs)."""
    sandbox = options.sandbox()
    if options.tree:
        snap = options.snapshot()
        rel = os.path.relpath(os.path.realpath(options.plugin), os.path.realpath(options.tree))
        return task.Worker(sandbox, env={ENV: os.path.join(snap, rel), ONLY: "1"},
                            readonly=[(snap, snap)] + local_mounts(options), trusted=False, budget=options.budget,
                            last_words=options.last_words)
    folders = options.plugin_copies([f for f in os.environ.get(ENV, "").split(os.pathsep) if f])
    parents = sorted({os.path.dirname(f) for f in folders})
    env = {ENV: os.pathsep.join(folders)} if folders else {}
    if os.environ.get(ONLY):
        env[ONLY] = os.environ[ONLY]
    return task.Worker(sandbox, env=env, readonly=[(p, p) for p in parents] + local_mounts(options), trusted=True,
                       budget=options.budget, last_words=options.last_words)


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


def _audit(runs, options):
    """Recompute and replay, through sandboxed workers; turn the judged results into problems and values."""
    plans = []
    worker = worker_for(options) if runs else None
    for run in runs:
        wrong = sorted(set(options.local) - set(run.protocol.path_keys))
        if wrong:
            raise ReproError(f"--local {wrong[0]}: not a local-path key of {run.protocol.paper} "
                             f"(those are: {', '.join(run.protocol.path_keys) or 'none'})")
        segs = coverage.segments(run) if options.replay else []
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
        private = None
        spec = options.private.get((run.protocol.paper, run.protocol.exp)) if options.recompute else None
        if spec is not None and not run.header["lite"]:
            try:
                private = spec.data(options.sandbox(), options.timeout)
            except ReproError as e:
                run.problems.append(f"private evaluation: {e}")
                continue
        plans.append(audit.Plan(run, options.recompute, segs, chosen, config_set, worker, options.cross_platform,
                                threads, private, None if run.header["lite"] else run.protocol.train_data))
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
        why = audit.judge_segment(seg, options.cross_platform)
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
    here, theirs = cpu(), run_cpu(env)
    if theirs != here:
        notes.append(f"the run was made on {theirs[0]} ({theirs[1] or 'no ISA recorded'}), this machine is "
                     f"{here[0]} ({here[1]}): results differ in the last bits across CPUs")
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
                print(f"  {r['paper']}/{r['exp']} {r['metric']}: {'PASS' if r['passed'] else 'FAIL'}: {r['why']}")
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
                          "checks": [c for c in checks if (c != "recompute" or r.recomputed is not None)
                                     and (c != "replay" or r.replayed)],
                          "private": r.private,
                          "final_weights": r.final_weights or None,
                          "kept_weights": sorted(set(r.kept_weights.values()))}
                         for r in runs]}


def parse_local(items):
    local = {}
    for text in items:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value:
            raise ReproError(f"--local {text!r} is not KEY=PATH")
        local[key.strip()] = os.path.abspath(os.path.expanduser(value)) if "builtin:" not in value else value
    return local


def add_arguments(ap):
    ap.add_argument("--recompute", action="store_true",
                    help="also re-evaluate each run's final checkpoint; the verdict then uses verify's own values")
    # argparse %-formats help, so the share's percent sign is doubled (%%)
    ap.add_argument("--replay", nargs="?", const="default", default=0, metavar="N|all",
                    help="replay audit: re-train segments of each run with the registered recipe and compare with "
                         "its kept checkpoints. With no value, the default coverage: every segment when the registered "
                         f"recipe makes at most {coverage.FULL_REPLAY_SEGMENTS} (steps / required audit interval), "
                         f"else the first, the last and {100 * coverage.DEFAULT_SHARE:.0f}%% of the others drawn from "
                         "the challenge; 'all': every segment; "
                         "N: N segments (the first and the last always)")
    ap.add_argument("--challenge", metavar="SECRET",
                    help="what chooses the replayed segments (default: fresh randomness, printed so the audit "
                         "can be repeated)")
    ap.add_argument("--cross-platform", action="store_true",
                    help="the runs were made on another platform (a GPU, another CPU or thread count): recomputed "
                         f"metrics within {audit.RECOMPUTE_RTOL:g} relative, and each replayed segment, trained "
                         f"twice here in different summation orders, within {audit.MARGIN:g} times their spread "
                         f"where that spread is at most {audit.CHAOS_LIMIT:g} (inconclusive where it is larger)")
    ap.add_argument("--jobs", type=int, default=1, help="audit processes at a time (default 1)")
    ap.add_argument("--threads", type=int, metavar="N",
                    help="CPU threads of the recompute and replay workers (default: each run's own, which a "
                         "bitwise replay needs; a train.verifiable run replays bitwise with any)")
    ap.add_argument("--no-sandbox", action="store_true",
                    help="run the paper code of recompute and replay without the bubblewrap sandbox (a contest "
                         "review refuses to run submitted code unconfined otherwise; every page then says so)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds one run's audit may take (default 3600)")
    ap.add_argument("--local", action="append", default=[], metavar="KEY=PATH",
                    help="with --recompute/--replay: where this machine keeps a file the run used by path, e.g. "
                         "model.pretrained=/models/sd-v1-5 (only a paper's local-path keys; the file must "
                         "have the sha256 the run logged)")
    add_data_dir_option(ap, "with --recompute/--replay: where this machine keeps the datasets")


def private_of(contest, seed):
    """{(paper, experiment): PrivateEval} of the contest's entries that name a private evaluation;
    the seed of a fresh one comes from the maintainers (--private-seed, $REPRO_PRIVATE_SEED)."""
    entries = [e for e in contest.papers if e.private_eval]
    seed = private_eval.seed_from(seed) if entries else None
    return {(e.plugin, e.experiment): private_eval.PrivateEval(e.private_eval, seed,
                                                               f"the contest's {e.plugin}/{e.experiment}")
            for e in entries}


def options_from(args, progress=None):
    use_data_dir(args)  # the audit's workers get it
    local = parse_local(args.local)
    protocol_of, tree, plugin, sandbox, private, budget = registered, None, None, "auto", {}, None
    runs_code = args.recompute or args.replay
    if getattr(args, "contest", None):
        tree = os.path.abspath(args.code) if args.code else None
        contest = read_contest(args.contest)
        protocol_of, budget = contest_protocol(contest, tree), contest.budget
        if args.recompute:
            private = private_of(contest, getattr(args, "private_seed", None))
        sandbox = "required"  # the submitted code is a stranger's
        if runs_code:
            folders = getattr(args, "papers", None) or []
            if tree is None or len(folders) != 1:
                raise ReproError("--contest with --recompute/--replay runs submitted code: give the submitted "
                                 "repository as --code TREE and its plugin package as --papers TREE/PACKAGE")
            plugin = os.path.abspath(folders[0])
            if os.path.commonpath([os.path.realpath(plugin), os.path.realpath(tree)]) != os.path.realpath(tree):
                raise ReproError(f"--papers {folders[0]}: the plugin must be inside the submitted tree --code {args.code}")
    elif getattr(args, "code", None):
        raise ReproError("--code only matters with --contest")
    elif getattr(args, "private_seed", None) is not None:
        raise ReproError("--private-seed only matters with --contest (whose entries name a private evaluation)")
    if getattr(args, "no_sandbox", False):
        sandbox = "off"
    if local and not runs_code:
        raise ReproError("--local only matters with --recompute or --replay")
    if args.jobs < 1 or args.timeout < 1:
        raise ReproError("--jobs and --timeout must be >= 1")
    if args.challenge is not None and not args.replay:
        raise ReproError("--challenge only matters with --replay")
    threads = getattr(args, "threads", None)
    if threads is not None and not 1 <= threads <= 1024:
        raise ReproError(f"--threads must be between 1 and 1024, got {threads}")
    options = Options(args.recompute, args.replay, args.challenge, args.cross_platform, local, args.jobs,
                      args.timeout, progress, protocol_of, sandbox=sandbox, tree=tree, plugin=plugin,
                      threads=threads, private=private, budget=budget)
    if runs_code:
        options.sandbox()  # refuse now, before reading anything, when the sandbox is required and missing
    return options


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m repro.verify", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    add_arguments(ap)
    ap.add_argument("--contest", metavar="FILE",
                    help="judge against a contest file's targets (configs/contests/), not the plugins' own")
    ap.add_argument("--private-seed", metavar="N",
                    help=f"with --contest: the maintainers' seed of the entries' fresh private splits (else "
                         f"${private_eval.SEED_ENV}; never written in the contest file)")
    ap.add_argument("--code", metavar="TREE",
                    help="with --contest: the submitted repository the runs' paper code must match, file by file")
    ap.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    add_papers_option(ap)
    args = ap.parse_args(argv)
    use_folders(args.papers)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)
    options = options_from(args, say)
    if options.replay:
        say(f"replay audit: challenge {options.challenge} (pass --challenge {options.challenge} to repeat it)")
    verdict = verify(args.runs, options)
    if args.json:
        print(json.dumps(verdict.json(), indent=1))
    else:
        verdict.print_table()
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    run_cli(main)
