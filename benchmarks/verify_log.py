"""How long repro.verify takes on a 100,000-event log.

    python benchmarks/verify_log.py [--events 100000]

Writes a run whose log has a real header (taken from a --lite run made here,
with train.steps raised to cover the events) and 100,000 genuinely chained
train/eval events, then times `python -m repro.verify` on it as a user runs it
(a fresh process, imports included), and the checks alone in-process. The run
is excluded by verify (its config departs from the registered one); every check
still reads every line.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from repro.config import config_hash  # noqa: E402
from repro.judge.compliance import check_run, load_run  # noqa: E402
from repro.judge.verdict import registered  # noqa: E402
from repro.run import rundir  # noqa: E402
from repro.run.runlog import RunLog  # noqa: E402


def make_log(run_dir, n_events):
    lite = os.path.join(run_dir, "lite")
    subprocess.run([sys.executable, "-m", "repro.train", "--paper", "mnist1d", "--exp", "logreg", "--lite",
                    "--out", lite, "-o", "train.visualdl=false"], cwd=REPO, check=True, capture_output=True)
    head = load_run(lite).header
    steps = n_events
    head["config"]["train"]["steps"] = steps
    head["config_hash"] = config_hash(head["config"])
    head["lite"] = False
    run = os.path.join(run_dir, "big")
    os.makedirs(run)
    log = RunLog(os.path.join(run, rundir.EVENTS), os.path.join(run, rundir.TEXT), echo=None)
    log.event("run_start", **{k: v for k, v in head.items() if k not in ("seq", "time", "kind", "prev")})
    metrics = {"test_loss": 1.5, "test_acc": 31.5}
    samples = {"test": 1000}
    for step in range(1, n_events - 3):
        if step % 10 == 0:
            log.event("eval", step=step, metrics=metrics, samples=samples)
        else:
            log.event("train", step=step, steps=steps, epoch=1, loss=1.5, lr=0.01, reader_cost=1e-5,
                      batch_cost=1e-3, ips=1e5, eta="0:00:00")
    log.event("eval", step=steps, metrics=metrics, samples=samples)
    log.event("checkpoint", step=steps, path=rundir.checkpoint_name(steps), sha256="0" * 64, weights_sha256="0" * 64)
    log.event("run_end", status="success", step=steps, metrics=metrics)
    log.close()
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = make_log(tmp, args.events)
        n = sum(1 for _ in open(os.path.join(run, rundir.EVENTS)))
        size = os.path.getsize(os.path.join(run, rundir.EVENTS)) / 1e6
        t0 = time.perf_counter()
        r = check_run(load_run(run), registered)
        t_checks = time.perf_counter() - t0
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "repro.verify", run], cwd=REPO, capture_output=True, text=True)
        t_cli = time.perf_counter() - t0
        assert p.returncode == 1 and "config departs" in p.stdout, p.stdout + p.stderr
        # only what this synthetic run lacks (its config departs, it has no files beside the log, no
        # audit checkpoints): the chain, the schema and the order of every line are intact
        expected = ("config departs", "config not found", "checkpoint not found", "the target requires the replay")
        assert r.problems and all(p.startswith(expected) for p in r.problems), r.problems
        print(f"{n} events ({size:.1f} MB): checks {t_checks:.2f} s in-process; "
              f"`python -m repro.verify` {t_cli:.2f} s wall, fresh process")


if __name__ == "__main__":
    main()
