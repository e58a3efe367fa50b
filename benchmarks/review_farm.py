"""What a review farm costs on one machine: `repro.review` of the example contest through the
local pool and through a local Ray (`--cluster local`), interleaved, in one run.

    python benchmarks/review_farm.py [--steps 200] [--repeats 3] [--jobs 2] [--keep DIR]

The example's four submissions are built once (python -m repro.example --steps N); each
repeat then reviews them with `--jobs` tasks in flight (and `--timeout 600`, so that two
workers' reservations fit the example's budget of 1800 s), once through each executor, in
alternating order. Prints each review's wall time and audit worker tasks (the review's
"N of M worker tasks done" lines), the tasks per minute of each, and the median ratio
Ray / local (issue 39's aim: at most 1.10). The Ray review's time includes starting the
embedded Ray, as a maintainer running `--cluster local` would see it. On one machine this
measures only the farm's overhead (shipping inputs and outputs as bytes, Ray's scheduling
and worker processes); no second machine is involved, so no speed-up is measured.
"""
import argparse
import json
import os
import re
import shlex
import shutil
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


def verdicts(out):
    data = json.load(open(os.path.join(out, "review.json"), encoding="utf-8"))
    return {s["team"]: (s["ok"], s["status"], s["problems"], [r["problems"] for r in s["runs"]])
            for s in data["submissions"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="the example's train.steps (default 200)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="tasks in flight in either executor (default 2)")
    ap.add_argument("--keep", metavar="DIR", help="build the example and write every review's folder in DIR "
                                                  "(review-R-local, review-R-ray), and keep them; by default a "
                                                  "temporary folder, removed at the end")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="farm-bench-")
    if args.keep and os.path.exists(root) and os.listdir(root):
        sys.exit(f"--keep {args.keep}: the folder exists and is not empty; give a new one")
    try:
        t0 = time.time()
        line = sh([sys.executable, "-m", "repro.example", os.path.join(root, "ex"), "--steps", str(args.steps)])
        print(f"built the example ({args.steps} steps) in {time.time() - t0:.1f} s")
        review = shlex.split(line.strip().splitlines()[-1])[1:]  # python -m repro.review CONTEST SUBS --out ...
        out_at = review.index("--out") + 1
        modes = (("local", []), ("ray", ["--cluster", "local"]))
        times, tasks, seen = {m: [] for m, _ in modes}, {m: [] for m, _ in modes}, {}
        for r in range(args.repeats):
            for name, flags in modes[r % 2:] + modes[:r % 2]:
                out = os.path.join(root, f"review-{r}-{name}")
                cmd = [sys.executable, *review[:out_at], out, *review[out_at + 1:], "--challenge", "bench",
                       "--jobs", str(args.jobs), "--timeout", "600", *flags]
                t = time.perf_counter()
                text = sh(cmd)
                times[name].append(time.perf_counter() - t)
                tasks[name].append(len(re.findall(r"audit: \d+ of \d+ worker tasks done", text)))
                got = verdicts(out)
                if seen.setdefault("verdicts", got) != got:
                    sys.exit(f"the {name} review's verdicts differ: {got} against {seen['verdicts']}")
            print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.1f} s ({tasks[k][-1]} tasks)" for k, v in times.items()))
        for name in times:
            rate = [60 * n / t for n, t in zip(tasks[name], times[name])]
            print(f"{name}: {statistics.median(rate):.1f} audit worker tasks per minute (median of "
                  f"{', '.join(f'{x:.1f}' for x in rate)})")
        print(ratio_line("review through a local Ray / through the local pool", times["ray"], times["local"],
                         "aim: at most 1.10") + "; verdicts identical: "
              + ", ".join(f"{k} {v[1]}" for k, v in seen["verdicts"].items()))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
