"""Untrusted code, trusted judge: hostile paper code in the workers of recompute and
replay (repro/worker.py, run in repro/boundary/sandbox.py) is contained, and nothing it says
is believed (repro/judge/audit.py judges tensors).

Runs are made with an honest plugin; then its code is swapped for a hostile one
that behaves only inside a worker (as a cheater's would during a review), and
verify --recompute --replay audits them. Each hostile plugin ends its worker
with its findings (the only channel it has is failing), so the run's problem
shows what it could and could not reach."""
import os
import socket
import sys

import pytest

from repro import registry
from repro.boundary import sandbox
from repro.errors import ReproError
from repro.judge import coverage, options as judge_options, verdict
from repro.registry import get_paper
from repro.run import rundir

needs_bwrap = pytest.mark.skipif(not sandbox.available(), reason="bubblewrap (bwrap) is not installed or usable here: "
                                 "apt-get install bubblewrap")

def _verify(paths, **options):
    options = {"recompute": True, "replay": "all", "challenge": "fixed", **options}
    rows, runs, ok = verdict.verify(paths, verdict.Options(**options))
    return runs, ok


@pytest.mark.slow
def test_honest_runs_pass_with_every_segment_replayed_in_the_sandbox(runs, plugin_env):
    _, plugin, out = runs
    registry.use_folders([plugin])
    got, _ = _verify(out)
    for run in got:
        assert run.problems == [], run.problems
        assert len(run.replayed) == 6 and all(s["exact"] for s in run.replayed)
        assert run.coverage == {"replayed": 6, "segments": 6, "steps": 300, "total_steps": 300, "escape": 0.0}
        assert run.recomputed and set(run.recomputed) == {"test_acc"} and run.recomputed["test_acc"] == run.metrics["test_acc"]


@pytest.mark.slow  # its hostile worker's audit takes about 6 s
@needs_bwrap
def test_a_worker_sees_no_secret_no_network_no_home_and_cannot_write_outside(runs, hostile, tmp_path, monkeypatch):
    root, plugin, out = runs
    monkeypatch.setenv("REPRO_TEST_SECRET", "token-123")
    secret = tmp_path / "maintainer-secret.txt"
    secret.write_text("secret")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    other_log = os.path.join(out[1], "events.jsonl")
    before = open(other_log, "rb").read()
    payload = f"""
import os, socket
found = []
found.append("env=" + str(os.environ.get("REPRO_TEST_SECRET")))
home = {os.path.expanduser('~')!r}
found.append("home=" + (",".join(sorted(os.listdir(home))) if os.path.isdir(home) else "absent"))
try:
    open({str(secret)!r}).read(); found.append("secret=read")
except OSError:
    found.append("secret=unreachable")
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2); found.append("net=connected")
except OSError:
    found.append("net=refused")
try:
    open({other_log!r}, "a").write("forged\\n"); found.append("other=written")
except OSError:
    found.append("other=unwritable")
try:
    open(os.path.join(os.path.dirname(__file__), "x.py"), "w").write("1"); found.append("own=written")
except OSError:
    found.append("own=read-only")
raise RuntimeError("PROBE " + " ".join(found))
"""
    try:
        got, ok = _verify(hostile(payload)[:1], replay=2)
    finally:
        server.close()
    (run,) = got
    probe = next(p for p in run.problems if "PROBE" in p)
    # of the maintainer's home, at most the folders the Python installation itself lives in
    home = probe.split("home=")[1].split()[0]
    allowed = {os.path.relpath(sys.base_prefix, os.path.expanduser("~")).split(os.sep)[0]}
    if os.path.isdir(os.path.expanduser("~/.cache/repro")):
        allowed.add(".cache")  # the datasets' default folder, mounted read-only (repro.boundary.task.Worker)
    assert home == "absent" or set(home.split(",")) <= allowed, home
    assert "env=None" in probe and "secret=unreachable" in probe, probe
    assert "net=refused" in probe and "other=unwritable" in probe and "own=read-only" in probe, probe
    assert not ok and open(other_log, "rb").read() == before
    assert not os.path.exists(os.path.join(plugin, "x.py"))


@pytest.mark.slow
def test_a_plugin_that_patches_the_worker_or_writes_its_own_results_is_not_believed(runs, hostile):
    payload = """
import json, os, repro.boundary.exchange as x
def fake(path, arrays, metadata=None):
    for fd in range(3, 20):
        try:
            os.write(fd, b'{"path": "x", "recompute": {"metrics": {"test_acc": 99.0}}, "verdict": "REPRODUCED"}\\n')
        except OSError:
            pass
    print(json.dumps({"ok": True, "metrics": {"test_acc": 99.0}, "exact": True}))
x.write_arrays = fake
"""
    got, ok = _verify(hostile(payload)[:1])
    (run,) = got
    assert not ok
    # what it wrote on every descriptor broke its own output stream: malformed, nothing believed
    assert any(p.startswith("--recompute: the worker wrote malformed output") for p in run.problems), run.problems
    assert any("replay 0->50" in p and "malformed output" in p for p in run.problems), run.problems
    assert run.recomputed is None or "test_acc" not in (run.recomputed or {})


@pytest.mark.slow
def test_a_worker_that_returns_the_start_state_or_malformed_outputs_fails_that_run_only(runs, hostile):
    payload = """
import sys, numpy as np
w = sys.modules["__main__"]  # the running worker
w._segment = lambda paper, cfg, artifact, seg, jitter, built=None: (lambda s: (s, s, None))(
    {k: v for k, v in __import__("repro.run.checkpoint", fromlist=["x"]).read(seg["start"], want_optimizer=True)[0].items()}
    if seg["a"] else {"model/0.weight": np.zeros((40, 32), np.float32)})
w._outputs = lambda paper, cfg, artifact, weights, rows, chunks: np.full((3, 10), np.nan, np.float32)
"""
    out = hostile(payload)
    got, ok = _verify(out[:1])
    (run,) = got
    assert any("outputs are not 1000 rows of class scores" in p for p in run.problems), run.problems
    bad = [p for p in run.problems if p.startswith("replay ")]
    # every segment fails (0->50 twice: other initial weights, and not the logged checkpoint)
    assert {p.split(":")[0] for p in bad} == {f"replay {a}->{a + 50}" for a in range(0, 300, 50)}, bad
    assert all("does not give the logged checkpoint" in p or "initial weights" in p for p in bad), bad


def test_a_worker_over_its_time_is_killed_with_one_line(runs, hostile):
    result = verdict.verify(hostile("import time\ntime.sleep(600)")[:1], verdict.Options(recompute=True, timeout=2))
    (run,) = result.runs
    assert not result.ok
    assert any("the worker timed out (after 2 s)" in p for p in run.problems), run.problems


def test_the_required_sandbox_refuses_without_bwrap_and_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox, "_PROBED", {})
    with pytest.raises(ReproError, match="apt-get install bubblewrap.*--no-sandbox"):
        sandbox.Sandbox("required")
    assert sandbox.Sandbox("off").describe() == "off (--no-sandbox)"
    assert sandbox.Sandbox("auto").describe() == "off (bubblewrap not available)"


# ------------------------------------------------------------------ the replay coverage (issue 29)

def test_the_printed_escape_probability_is_the_draws(monkeypatch):
    """For k segments and n replayed, the chance that one forged middle segment is never drawn,
    measured over many challenges, is the probability verify prints."""
    for k, n in ((8, 2), (8, 3), (8, 5), (12, 4), (3, 2), (6, 6)):
        segs = [(i, i + 1) for i in range(k)]
        p = coverage.escape(k, n)
        for forged in range(k):
            trials = 3000
            missed = sum(segs[forged] not in coverage.choose(segs, n, f"c{t}", "run") for t in range(trials))
            rate = missed / trials
            want = 0.0 if forged in (0, k - 1) else p
            assert abs(rate - want) < 0.04, (k, n, forged, rate, want)
        text = coverage.describe_coverage({"replayed": n, "segments": k, "steps": n, "total_steps": k, "escape": p})
        assert (f"at most {p:.0%}" in text) if p else ("every segment replayed" in text)


def test_the_default_coverage_follows_the_registered_recipe_never_the_logged_time(runs, plugin_env):
    """A registered recipe of few segments (300 steps; the runs kept six): every one replayed, whatever the
    log's last line says the training took; more than FULL_REPLAY_SEGMENTS: a drawn share."""
    _, plugin, out = runs
    registry.use_folders([plugin])
    run = rundir.open_run(get_paper, out[0])
    run.protocol = verdict.registered(run)
    segs = coverage.segments(run)
    registered = coverage.registered_segments(run, segs)
    assert len(segs) == 6 and registered <= coverage.FULL_REPLAY_SEGMENTS
    before = coverage.count(run, "default", segs, registered)
    run.events[-1]["seconds"] = 10 ** 9  # the submitter's own number: nothing hashes it after it
    assert coverage.count(run, "default", segs, coverage.registered_segments(run, segs)) == before == 6
    many = [(i, i + 1) for i in range(40)]
    assert coverage.count(run, "default", many, coverage.FULL_REPLAY_SEGMENTS + 1) == 2 + 10
    assert coverage.count(run, "all", many, 100) == 40
    assert coverage.count(run, 3, many, 100) == 3


@pytest.mark.slow  # it trains or audits for more than a few seconds
def test_replay_2_warns_that_no_middle_segment_can_be_drawn(runs, plugin_env):
    _, plugin, out = runs
    registry.use_folders([plugin])
    got = verdict.verify(out[:1], verdict.Options(replay=2, challenge="x")).runs
    assert any("never replays a middle one" in w for w in got[0].warnings), got[0].warnings
    assert got[0].coverage["escape"] == 1.0


def test_replay_counts_are_checked(capsys):
    for bad in ("1", "0x", "-3", "some"):
        with pytest.raises(ReproError, match="--replay"):
            judge_options.parse_replay(bad)
    assert judge_options.parse_replay(None) == 0 and judge_options.parse_replay("all") == "all" and judge_options.parse_replay("4") == 4
