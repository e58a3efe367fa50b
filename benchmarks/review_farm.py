"""What a review farm costs on one machine: `repro.review` of the example contest through the
local pool, through a running Ray cluster and through an embedded Ray, interleaved, in one run.

    python benchmarks/review_farm.py [--steps 200] [--repeats 5] [--jobs 2] [--modes ...] [--keep DIR]
                                     [--example DIR --private-seed N] [--no-wait]

The example's four submissions are built once (python -m repro.example --steps N; or
--example names one built already, reviewed with the private seed its build printed); each
repeat then reviews them with `--jobs` tasks in flight (and `--timeout 600`, so that two
workers' reservations fit the example's budget of 1800 s), once in each mode, in rotating
order:
  local        the local pool (no --cluster)
  ray-running  `--cluster auto` into a Ray cluster of --jobs CPUs that this benchmark starts
               (`ray start --head --block`) before the review and stops after it, as a farm's
               cluster runs between reviews: its start is printed, not timed in the review
  ray          `--cluster local`: Ray started and stopped by the review itself, as a
               maintainer trying the farm on one machine sees it
Before each review the benchmark waits for the machine to be quiet (under 10% of its CPUs busy
over a second, as /proc/stat counts them; at most a minute): a Ray just started, or one just
stopped by the review before, still uses the CPUs for a few seconds, which a farm's reviews do
not meet (--no-wait: no waiting, where the timings do not matter). Prints each review's wall
time and audit worker tasks (the review's "N of M worker tasks done" lines), the tasks per
minute of each, and, where local is the first of --modes, each repeat's ratio of each Ray mode
to the local pool and their median (issue 39's aim: at most 1.10). On one
machine this measures only the farm's overhead (shipping inputs and outputs as bytes, Ray's
scheduling and worker processes); no second machine is involved, so no speed-up is measured.
"""
import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks._timing import ratio_line  # noqa: E402


def sh(args, timeout=3600):
    p = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p.stdout


def busy_jiffies():
    """(busy, total) CPU time of the whole machine so far, in jiffies (/proc/stat's first line)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


def wait_quiet(level=0.10, longest=60):
    """Seconds waited until a second went by with under `level` of the CPUs busy (None if
    `longest` seconds went by first)."""
    t0 = time.perf_counter()
    before = busy_jiffies()
    while time.perf_counter() - t0 < longest:
        time.sleep(1)
        now = busy_jiffies()
        if (now[0] - before[0]) < level * max(1, now[1] - before[1]):
            return time.perf_counter() - t0
        before = now
    return None


def verdicts(out):
    data = json.load(open(os.path.join(out, "review.json"), encoding="utf-8"))
    return {s["team"]: (s["ok"], s["status"], s["problems"], [r["problems"] for r in s["runs"]])
            for s in data["submissions"]}


MODES = {"local": [], "ray-running": ["--cluster", "auto"], "ray": ["--cluster", "local"]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningRay:
    """A Ray head of `cpus` CPUs on a free port (its Ray Client server on another, not Ray's
    10001, which another Ray here may hold), started and left running (`ray start --head
    --block`), then stopped: the cluster a farm's reviews join with --cluster auto."""

    def __init__(self, cpus):
        self.port, self.client_port = free_port(), free_port()  # the head's and its Ray Client server's
        ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
        t = time.perf_counter()
        self.proc = subprocess.Popen(
            [ray_cli, "start", "--head", "--block", "--port", str(self.port), "--num-cpus", str(cpus),
             "--ray-client-server-port", str(self.client_port),
             "--include-dashboard=false", "--disable-usage-stats"], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
        said = []
        for line in self.proc.stdout:
            said.append(line)
            if "Ray runtime started" in line:
                break
        else:
            sys.exit("ray start --head failed:\n" + "".join(said)[-2000:])
        self.started_in = time.perf_counter() - t

    def stop(self):
        """`ray start --block` stops what it started when told to and exits; whatever of its
        session's group is left 15 s later is killed. (Its own exit is waited for first: until
        then it is a zombie, which still counts as the group's member.)"""
        self.proc.terminate()
        deadline = time.time() + 15
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            while time.time() < deadline:
                os.killpg(self.proc.pid, 0)  # ProcessLookupError once the whole group has ended
                time.sleep(0.2)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="the example's train.steps (default 200)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2, help="tasks in flight in either executor, and the running "
                                                        "cluster's CPUs (default 2)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"which reviews, comma-separated (default {','.join(MODES)}); the ratios need local")
    ap.add_argument("--example", metavar="DIR", help="review an example built already (python -m repro.example "
                                                     "DIR) instead of building one; needs --private-seed")
    ap.add_argument("--private-seed", help="with --example: the private seed its build printed")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine before each review "
                                                              "(where the timings do not matter: beside other work)")
    ap.add_argument("--keep", metavar="DIR", help="build the example and write every review's folder in DIR "
                                                  "(review-R-MODE), and keep them; by default a temporary "
                                                  "folder, removed at the end")
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    if len(set(modes)) != len(modes) or not set(modes) <= set(MODES):
        sys.exit(f"--modes {args.modes}: give some of {', '.join(MODES)}, each once")
    if bool(args.example) != bool(args.private_seed):
        sys.exit("--example and --private-seed go together")
    if set(modes) - {"local"} and importlib.util.find_spec("ray") is None:
        sys.exit(f"--modes {args.modes}: the Ray modes need Ray, which is not installed here: "
                 'pip install "repro-paddle[cluster]"')
    root = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="farm-bench-")
    if args.keep and os.path.exists(root) and os.listdir(root):
        sys.exit(f"--keep {args.keep}: the folder exists and is not empty; give a new one")
    try:
        if args.example:
            ex = os.path.abspath(args.example)
            review = ["-m", "repro.review", os.path.join(ex, "contest.yaml"), os.path.join(ex, "submissions.yaml"),
                      "--out", "-", "--private-seed", args.private_seed]
        else:
            t0 = time.time()
            line = sh([sys.executable, "-m", "repro.example", os.path.join(root, "ex"), "--steps", str(args.steps)])
            print(f"built the example ({args.steps} steps) in {time.time() - t0:.1f} s")
            review = shlex.split(line.strip().splitlines()[-1])[1:]  # python -m repro.review CONTEST SUBS --out ...
        out_at = review.index("--out") + 1
        times, tasks, seen = {m: [] for m in modes}, {m: [] for m in modes}, {}
        for r in range(args.repeats):
            for name in modes[r % len(modes):] + modes[:r % len(modes)]:
                out = os.path.join(root, f"review-{r}-{name}")
                cmd = [sys.executable, *review[:out_at], out, *review[out_at + 1:], "--challenge", "bench",
                       "--jobs", str(args.jobs), "--timeout", "600", *MODES[name]]
                cluster = RunningRay(args.jobs) if name == "ray-running" else None
                if not args.no_wait and wait_quiet() is None:
                    print(f"repeat {r}: the machine was not quiet within a minute before the {name} review")
                try:
                    t = time.perf_counter()
                    text = sh(cmd)  # --cluster auto: the cluster this machine started last
                    times[name].append(time.perf_counter() - t)
                finally:
                    if cluster:
                        cluster.stop()
                if cluster:
                    print(f"repeat {r}: started the running cluster in {cluster.started_in:.1f} s (not in its review's time)")
                tasks[name].append(len(re.findall(r"audit: \d+ of \d+ worker tasks done", text)))
                got = verdicts(out)
                if seen.setdefault("verdicts", got) != got:
                    sys.exit(f"the {name} review's verdicts differ: {got} against {seen['verdicts']}")
            print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.1f} s ({tasks[k][-1]} tasks)" for k, v in times.items()))
        for name in modes:
            rate = [60 * n / t for n, t in zip(tasks[name], times[name])]
            print(f"{name}: {statistics.median(rate):.1f} audit worker tasks per minute (median of "
                  f"{', '.join(f'{x:.1f}' for x in rate)})")
        for name in modes[1:] if modes[0] == "local" else ():
            print(ratio_line(f"review through {name} / through the local pool", times[name], times["local"],
                             "aim: at most 1.10"))
        print("verdicts identical: " + ", ".join(f"{k} {v[1]}" for k, v in seen["verdicts"].items()))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
