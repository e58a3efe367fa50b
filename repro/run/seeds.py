"""Several seeds of one experiment: python -m repro.train --paper P [--exp E] --seeds [0-4] [--jobs N]

Each seed trains in its own process (`python -m repro.train ... --seed S`, N at
a time, --threads each, 1 by default) into PARENT/seed<S>; one progress line
per seed and an overall ETA are read from the runs' own logs. A seed that
fails does not stop the others. At the end the set is verified (--recompute:
every checkpoint evaluated again) and the verdict table printed.

Given a PARENT that already holds some of the seeds (an earlier invocation
that was interrupted), finished seeds are kept and interrupted ones resumed.
Exit status: 0 when every seed trained and the target is reached, 1 when they
trained and it is not, 2 when a seed failed (its error is in PARENT/seed<S>.err).
"""
import os
import subprocess
import sys
import time

from repro import hints
from repro.errors import ReproError
from repro.run import rundir
from repro.run.progress import fmt_eta
from repro.targets import parse_seeds


class _Seed:
    def __init__(self, seed, run_dir):
        self.seed, self.dir = seed, run_dir
        self.proc, self.err, self.state, self.started = None, None, "waiting", None
        self.rate = None  # seconds per step while it ran
        self.step, self.steps, self.acc = 0, 0, None

    def poll_log(self):
        """Progress from the run's own log (the last train and eval lines)."""
        path = os.path.join(self.dir, rundir.EVENTS)
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 8192))
                tail = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return
        import json
        train = evaluated = False  # the newest of each in the tail
        for line in reversed(tail):
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("kind") == "train" and not train:
                self.step, self.steps, train = ev.get("step", 0), ev.get("steps", 0), True
            if ev.get("kind") == "eval" and not evaluated:
                acc = next((v for k, v in (ev.get("metrics") or {}).items() if k.endswith("acc")), None)
                if acc is not None:
                    self.acc, evaluated = acc, True
            if train and evaluated:
                break


def run_seeds(args, paper, exp, seeds, parent, say=print):
    """Train the seeds into parent/seed<S>, `args.jobs` at a time; returns the seeds that failed."""
    os.makedirs(parent, exist_ok=True)
    todo = []
    for seed in seeds:
        d = os.path.join(parent, f"seed{seed}")
        job = _Seed(seed, d)
        if rundir.is_run(d):
            try:
                end = rundir.read(d, allow_partial_tail=True).events[-1]
            except ReproError as e:  # this seed cannot go on; the others can
                with open(os.path.join(parent, f"seed{seed}.err"), "w") as f:
                    f.write(f"error: {e}\n")
                job.state = "failed"
                todo.append(job)
                continue
            if end["kind"] == "run_end" and end["status"] == "success":
                job.state = "done"
                say(f"seed {seed}: already trained in {d}")
                todo.append(job)
                continue
            job.state = "resume"
        elif os.path.exists(d) and os.listdir(d):
            raise ReproError(f"{d} exists and holds no run; move it away or give another --out")
        todo.append(job)
    base = [sys.executable, "-m", "repro.train"]
    common = ["--threads", str(args.threads)] + (["--mkl", args.mkl] if args.mkl else []) + \
             [x for o in args.override for x in ("-o", o)] + \
             (["--lite"] if args.lite else []) + [x for p in args.papers for x in ("--papers", p)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.time()
    tty = sys.stdout.isatty()
    last_print, shown = 0.0, 0
    said = {}  # without a terminal: what each seed's last line said
    while True:
        running = [j for j in todo if j.state == "running"]
        for j in todo:
            if j.state in ("waiting", "resume") and len(running) < args.jobs:
                cmd = base + (["--resume", j.dir] if j.state == "resume" else
                              ["--paper", paper.name, "--exp", exp.name, "--seed", str(j.seed), "--out", j.dir, *common])
                if j.state == "resume":
                    cmd += [x for p in args.papers for x in ("--papers", p)]
                j.err = open(os.path.join(parent, f"seed{j.seed}.err"), "w")
                j.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=j.err, env=env)
                j.state, j.started = "running", time.time()
                running.append(j)
        for j in running:
            j.poll_log()
            code = j.proc.poll()
            if code is not None:
                j.poll_log()  # the run's last lines, written after the poll above
                j.err.close()
                j.state = "done" if code == 0 else "failed"
                if code == 0:
                    os.remove(j.err.name)
                    j.step = j.steps or j.step
        now = time.time()
        finished = all(j.state in ("done", "failed") for j in todo)
        if tty and (now - last_print >= 0.5 or finished):  # the table, redrawn in place
            lines = _status(todo, t0, now)
            if shown:
                sys.stdout.write(f"\033[{shown}F")
            for line in lines:
                sys.stdout.write("\033[K" + line + "\n")
            sys.stdout.flush()
            shown, last_print = len(lines), now
        elif not tty:  # a file or a pipe (CI, nohup): one line per change, nothing redrawn
            _changes(todo, said, t0, now, finished)
        if finished:
            break
        time.sleep(0.2)
    failed = [j for j in todo if j.state == "failed"]
    for j in failed:
        msg = open(os.path.join(parent, f"seed{j.seed}.err"), encoding="utf-8", errors="replace").read().strip()
        say(f"seed {j.seed} failed: {msg.splitlines()[-1] if msg else 'no message'} "
            f"(all of it in {os.path.join(parent, f'seed{j.seed}.err')})")
    return [j.seed for j in failed]


def train_and_verify(args, paper, exp, parent):
    """The --seeds command: train, then verify the set with --recompute; the exit status."""
    seeds = parse_seeds(None if args.seeds == PINNED else args.seeds, paper, exp)
    print(f"training {paper.name}/{exp.name}{' (lite)' if args.lite else ''}: {len(seeds)} seed"
          f"{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))}), {args.jobs} process"
          f"{'es' if args.jobs != 1 else ''} at a time, {args.threads} thread(s) each -> {parent}", flush=True)
    t0 = time.time()
    failed = run_seeds(args, paper, exp, seeds, parent)
    trained = time.time() - t0
    runs = [os.path.join(parent, f"seed{s}") for s in seeds if s not in failed]
    if not runs:
        return 2
    print(f"\ntrained in {fmt_eta(trained)}; verifying (each final checkpoint evaluated again, and the replay "
          f"audit's default coverage trained again)", flush=True)
    print(flush=True)
    # verify in a process of its own, as a user would run it (plugin folders and --data-dir reach it
    # through REPRO_PAPERS and REPRO_DATA_DIR): training never imports the judge
    code = subprocess.call([sys.executable, "-m", "repro.verify", *runs, "--recompute", "--replay",
                            "--jobs", str(args.jobs)])
    print(f"\nthe runs are in {parent}; to verify them again: "
          f"{hints.command('repro.verify', parent, '--recompute', '--replay', paper=paper.name, data=True)}")
    return 2 if failed or code not in (0, 1) else code


PINNED = "pinned"  # --seeds with no value: the target's pinned seeds


def _changes(jobs, said, t0, now, finished):
    """Without a terminal: a line for each seed whose state, step or accuracy changed
    since its last line (with the overall count and ETA), and when all are finished
    the summary line once."""
    lines = _status(jobs, t0, now)
    for j, line in zip(jobs, lines):
        key = (j.state, j.step, j.steps, j.acc)
        if j.state == "waiting" or said.get(j.seed) == key:
            continue
        said[j.seed] = key
        print(f"{line.strip()}  ({lines[-1].strip()})" if not finished else line.strip(), flush=True)
    if finished:
        failed = sum(j.state == "failed" for j in jobs)
        print(f"{sum(j.state == 'done' for j in jobs)} of {len(jobs)} seeds done"
              f"{f', {failed} failed,' if failed else ''} in {fmt_eta(now - t0)}", flush=True)


VERIFY_SHARE = 1.0  # the closing verify replays every segment by default: about the training's own time


def _status(jobs, t0, now):
    """A line per seed and the overall line, whose ETA covers the training left and the verify
    that follows it (recompute and the default replay: about the training's own step time)."""
    lines = []
    for j in jobs:
        if j.state == "running" and j.steps and j.step:
            j.rate = (now - j.started) / j.step  # kept once the seed is done
    rates = [j.rate for j in jobs if j.rate]
    per_step = sum(rates) / len(rates) if rates else None
    parallel = max(1, min(len(jobs), max(sum(j.state == "running" for j in jobs), 1)))
    left, total = 0.0, 0
    for j in jobs:
        frac = f"{j.step}/{j.steps}" if j.steps else "-"
        acc = f"  acc {j.acc:.1f}" if isinstance(j.acc, (int, float)) else ""
        lines.append(f"  seed {j.seed:<4} {j.state:<8} {frac:>11}{acc}")
        steps = j.steps or (jobs[0].steps or 0)
        total += steps if j.state != "failed" else 0
        if j.state in ("waiting", "resume", "running"):
            left += steps - (j.step if j.state == "running" else 0)
    eta = "?" if per_step is None else \
        fmt_eta((left * per_step + VERIFY_SHARE * total * per_step) / parallel)
    lines.append(f"  {sum(j.state == 'done' for j in jobs)} of {len(jobs)} seeds done, {fmt_eta(now - t0)} so far, "
                 f"about {eta} left with the verify")
    return lines
