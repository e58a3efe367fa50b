"""MKL's code path decides a run's bits like its thread count: the harness names the AVX2 path
where Paddle's MKL would take its generic one (a CPU that is not Intel's), records the path in
the run's header, and resume, recompute and replay take the run's own (repro/machine.py)."""
import json
import os
import sys

import pytest
from conftest import subprocess_cli

from repro import machine
from repro.errors import ReproError


@pytest.mark.parametrize("vendor, flags, path", [
    ("AuthenticAMD", {"avx2", "fma", "avx512f"}, "avx2"), ("AuthenticAMD", {"avx2", "fma"}, "avx2"),
    ("HygonGenuine", {"avx2", "fma"}, "avx2"), ("GenuineIntel", {"avx2", "fma", "avx512f"}, None),
    ("AuthenticAMD", {"avx"}, None), ("", set(), None)])
def test_a_new_run_names_the_avx2_path_only_off_intel_on_a_cpu_that_has_it(monkeypatch, vendor, flags, path):
    monkeypatch.setattr(machine, "_cpuinfo", lambda: ("cpu", vendor, flags))
    assert machine.mkl_path() == path


def test_the_path_sets_and_clears_mkls_variables_and_a_process_that_computed_cannot_switch(monkeypatch):
    monkeypatch.setattr(machine, "_cpuinfo", lambda: ("cpu", "AuthenticAMD", {"avx2", "fma"}))
    monkeypatch.setattr(machine, "_APPLIED", [])
    for key in machine.MKL_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delitem(sys.modules, "paddle", raising=False)
    machine.use_mkl_path("avx2")
    assert [os.environ.get(k) for k in machine.MKL_VARIABLES] == ["5", "AVX2,STRICT"]
    assert machine.mkl_path_in_effect() == "avx2"
    machine.use_mkl_path(None)  # Paddle not loaded yet: MKL has read nothing, so the process may still switch
    assert all(k not in os.environ for k in machine.MKL_VARIABLES) and machine.mkl_path_in_effect() is None
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "7")  # set by someone else: named, never hidden
    assert machine.mkl_path_in_effect() == "MKL_DEBUG_CPU_TYPE=7"
    monkeypatch.setitem(sys.modules, "paddle", object())
    with pytest.raises(ReproError, match="cannot switch to 'avx2': run it in a new process"):
        machine.use_mkl_path("avx2")
    machine.use_mkl_path(None)  # the same path again is no switch
    monkeypatch.setattr(machine, "_cpuinfo", lambda: ("cpu", "AuthenticAMD", {"avx"}))
    machine.use_mkl_path("avx2")  # a CPU without AVX2: left to MKL (another platform for the run anyway)
    assert "MKL_CBWR" not in os.environ


def test_a_path_the_harness_does_not_know_is_one_line():
    assert machine.check_mkl_path(None, "x") is None and machine.check_mkl_path("avx2", "x") == "avx2"
    for bad in ("avx512", 5, ["avx2"], "MKL_DEBUG_CPU_TYPE=5"):
        with pytest.raises(ReproError, match=r"^run/events.jsonl: MKL code path .* is not one this harness knows"):
            machine.check_mkl_path(bad, "run/events.jsonl")


def _header(run):
    with open(os.path.join(run, "events.jsonl"), encoding="utf-8") as f:
        return json.loads(f.readline())


@pytest.mark.slow  # two lite trainings and a verify of both with every segment replayed
@pytest.mark.skipif(machine.mkl_path() is None, reason="this CPU is Intel's or lacks AVX2: MKL's own path is the "
                                                       "only one a new run takes here, so there are not two to tell apart")
def test_each_run_is_replayed_on_its_own_path_and_the_two_paths_give_other_bits(tmp_path):
    runs = {}
    for mkl in ("own", "avx2"):
        runs[mkl] = str(tmp_path / mkl)
        code, out, err = subprocess_cli("-m", "repro.train", "--paper", "mnist1d", "--exp", "cnn", "--lite",
                                        "--mkl", mkl, "--out", runs[mkl])
        assert code == 0, err[-2000:]
    heads = {mkl: _header(run) for mkl, run in runs.items()}
    assert heads["own"]["env"]["mkl_path"] is None and heads["avx2"]["env"]["mkl_path"] == "avx2"
    # the same seed and recipe: the first update's products already round apart
    finals = {mkl: [e for e in map(json.loads, open(os.path.join(run, "events.jsonl"), encoding="utf-8"))
                    if e["kind"] == "checkpoint"][-1]["weights_sha256"] for mkl, run in runs.items()}
    assert finals["own"] != finals["avx2"]
    for run in runs.values():  # every segment of each run bitwise, on the path its header names (apart: the
        # two share their initial weights, which verify calls a copy)
        code, out, err = subprocess_cli("-m", "repro.verify", run, "--recompute", "--replay", "all")
        assert "Traceback" not in err, err[-2000:]
        line = next(x for x in out.splitlines() if x.strip().startswith(run + ": 0->"))
        assert line.count(" exact") == 3 and "distance" not in line, out
    code, out, err = subprocess_cli("-m", "repro.train", "--resume", runs["own"], "--mkl", "avx2")
    assert code == 2 and err.strip().splitlines() == [
        "error: --resume continues a run with its own config, threads and MKL path; drop -o/--seed/--lite/--mkl"]
