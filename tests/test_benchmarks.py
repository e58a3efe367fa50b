"""Every benchmark runs end to end at its smallest size, so none rots between
measurements (their numbers are in the README, measured at full size)."""
import os

import pytest

from conftest import REPO, subprocess_cli

SMOKE = [
    ("train_loop.py", "--steps", "20", "--repeats", "1"),
    ("nlp_loop.py", "--paper", "kim_cnn", "--synthetic", "--steps", "4", "--repeats", "1"),
    ("nlp_loop.py", "--paper", "chnsenticorp_rnn", "--exp", "bow", "--synthetic", "--steps", "4", "--repeats", "1"),
    ("verify_log.py", "--events", "2000"),
    ("kernels.py", "--steps", "3", "--repeats", "1", "--models", "cnn"),
    ("resnet_throughput.py", "--steps", "4", "--batch", "8", "--threads", "1"),
    ("diffusion_throughput.py", "--steps", "2", "--repeats", "1", "--size", "64", "--only", "train"),
    ("main_job.py", "--seeds", "0", "--jobs", "1", "--steps", "30"),
    ("sandbox_overhead.py", "--steps", "40", "--repeats", "1", "--seeds", "1"),
    ("verifiable.py", "--models", "logreg", "--steps", "20", "--every", "10", "--capture", "3",
     "--time-steps", "5", "--configs", "2 threads, oneDNN"),
]


def test_every_benchmark_has_a_smoke_run():
    scripts = {f for f in os.listdir(os.path.join(REPO, "benchmarks")) if f.endswith(".py") and not f.startswith("_")}
    # replay_audit.py measures shipped runs with audit checkpoints: tests/test_shipped_logs.py runs it;
    # review_farm.py reviews the example contest on Ray: tests/test_example.py runs it and reads its reviews
    assert scripts - {"replay_audit.py", "review_farm.py"} == {s[0] for s in SMOKE}


def smoke(script, args):
    code, out, err = subprocess_cli(os.path.join("benchmarks", script), *args, timeout=900)
    assert code == 0, (out[-2000:], err[-2000:])
    assert out.strip(), "a benchmark prints its measurements"


def half(i):
    """Every other smoke run: the suite's workers take a module, or a class, at a time
    (--dist loadscope), so two classes let both workers run the smoke runs (10 minutes in all)."""
    runs = SMOKE[i::2]
    return pytest.mark.parametrize("script, args", [(s[0], s[1:]) for s in runs], ids=[" ".join(s) for s in runs])


@pytest.mark.slow
class TestBenchmarkRuns:
    @half(0)
    def test_benchmark_runs(self, script, args):
        smoke(script, args)


@pytest.mark.slow
class TestMoreBenchmarkRuns:
    @half(1)
    def test_benchmark_runs(self, script, args):
        smoke(script, args)
