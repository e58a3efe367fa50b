"""The wall (issue 33): a worker is nobody, holds no answer, and the judge reads only what it
asked for. Hostile plugins act inside workers only (as a cheater's would during a review);
each reports what it found by failing with a PROBE line (the runs are the user's own here, so
a crashed worker's words are shown), or breaks the rules and must be refused with one line."""
import io
import json
import os
import stat
import tempfile
import time

import numpy as np
import pytest
from test_sandbox import _verify, needs_bwrap

from repro import strict, worker
from repro.boundary import exchange, sandbox, task
from repro.errors import ReproError
from repro.judge import audit, grouping, segments, verdict

PROBE = """
import ctypes, errno, os, pwd, repro
libc = ctypes.CDLL(None, use_errno=True)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
def call(f, *a):
    r = f(*a)
    return f"{r}/{errno.errorcode.get(ctypes.get_errno(), 0)}"
found = ["cap=" + status["CapEff"].strip(), "uid=" + status["Uid"].split()[0], "user=" + pwd.getpwuid(os.getuid()).pw_name,
         "remount=" + call(libc.mount, None, os.path.dirname(repro.__file__).encode(), None, 32 | 4096, None),
         "ptrace=" + call(libc.ptrace, 16, 1, None, None),
         "userns=" + call(libc.unshare, 0x10000000)]
try:
    open(repro.__file__, "a").write("#"); found.append("harness=written")
except OSError:
    found.append("harness=read-only")
raise RuntimeError("PROBE " + " ".join(found))
"""


def _probe_line(run):
    return next(p for p in run.problems if "PROBE" in p)


@pytest.mark.slow
@needs_bwrap
def test_a_worker_is_nobody_without_capabilities_and_cannot_remount_trace_or_nest(runs, hostile):
    got, ok = _verify(hostile(PROBE)[:1], replay=0)
    line = _probe_line(got[0])
    assert "cap=0000000000000000" in line and f"uid={sandbox.WORKER_ID}" in line and "user=nobody" in line, line
    assert "remount=-1/EPERM" in line and "ptrace=-1/EPERM" in line and "userns=-1/EPERM" in line, line
    assert "harness=read-only" in line and not ok


@needs_bwrap
def test_a_worker_reads_its_own_etc_and_leaves_nothing_in_the_judges_temporary_folder(tmp_path, monkeypatch):
    """Its /etc/passwd and /etc/group name it (bwrap copies them in from unnamed files: a judge
    killed mid-review leaves no folder behind), and the host's /etc is not there."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = sandbox.Sandbox("required").run(
        ["/bin/sh", "-c", "whoami; id -gn; cat /etc/passwd /etc/group; ls /etc"], receive=lambda s: s.read(),
        timeout=60)
    assert ended.code == 0, ended.stderr
    lines = ended.received.decode().splitlines()
    assert lines[:2] == ["nobody", "nogroup"] and lines[2] == sandbox.PASSWD.strip() \
        and lines[3] == sandbox.GROUP.strip(), lines
    allowed = {"passwd", "group"} | {os.path.basename(f) for f in sandbox.ETC}
    assert {"passwd", "group"} <= set(lines[4:]) <= allowed, lines  # none of the host's other /etc files
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
@needs_bwrap
def test_no_setuid_file_a_worker_makes_reaches_the_host(runs, hostile):
    payload = """
import os
for folder in (os.getcwd(), "/tmp"):
    path = os.path.join(folder, "suid")
    open(path, "w").write("#!/bin/sh\\nid\\n")
    os.chmod(path, 0o4755)
"""
    before = _setuid_files(tempfile.gettempdir())
    got, ok = _verify(hostile(payload)[:1], replay=2)
    assert not ok
    # the extra file in its output folder is one the judge did not ask for: every worker's run refused
    assert any("a file the judge did not ask for" in p for p in got[0].problems), got[0].problems
    assert _setuid_files(tempfile.gettempdir()) == before


def _setuid_files(top):
    found = set()
    for folder, dirs, files in os.walk(top):
        for name in files:
            try:
                if os.lstat(os.path.join(folder, name)).st_mode & (stat.S_ISUID | stat.S_ISGID):
                    found.add(os.path.join(folder, name))
            except OSError:
                pass
    return found


@pytest.mark.slow
def test_no_worker_holds_a_checkpoint_where_one_of_its_segments_ends(runs, hostile):
    payload = """
import json, os, sys
req = json.load(open(os.path.join(sys.argv[1], "request.json")))
if req["task"] == "model":
    names = os.listdir(sys.argv[1])
    held = sorted(int(n[6:-12]) for n in names if n.startswith("start-"))
    ends = sorted(s["b"] for s in req.get("segments") or [])
    finals = sum(n.startswith("final") for n in names)
    raise RuntimeError(f"PROBE held={held} ends={ends} finals={finals} runs={len(req.get('runs') or [])}")
"""
    got, _ = _verify(hostile(payload))  # both runs: one recompute worker for the cell, two replay workers a run
    for run in got:
        lines = sorted({p[p.index("PROBE"):] for p in run.problems if "PROBE" in p})  # a line per segment
        # the cell's recompute holds both runs' final weights and replays nothing; each replay worker
        # holds the starts of its own run's segments, never an end of one of them nor a final weight
        assert lines == ["PROBE held=[100, 200] ends=[50, 150, 250] finals=0 runs=0",
                         "PROBE held=[50, 150, 250] ends=[100, 200, 300] finals=0 runs=0",
                         "PROBE held=[] ends=[] finals=2 runs=2"], run.problems


def test_a_cells_runs_share_one_recompute_worker_and_each_run_has_its_own_replay_workers():
    class Plan:
        def __init__(self, worker, seed, paper="p", recompute=True, cpu=("c", "avx2"), memory=None, mkl="avx2"):
            self.worker, self.threads, self.recompute, self.path = worker, 1, recompute, f"{paper}/{seed}"
            self.mkl = mkl
            self.run = type("Run", (), {"header": {"paper": paper, "exp": "e", "lite": False}})()
            self.segments = [(0, 50), (50, 100), (100, 150)]
            self.chosen = list(self.segments)
            self.needs = task.Needs(cpu=cpu, memory=memory)
    one, other = object(), object()  # two submissions' workers
    plans = [Plan(one, 0, memory=5), Plan(one, 1, memory=7), Plan(other, 0), Plan(one, 2, paper="q"),
             Plan(one, 3, recompute=False), Plan(one, 4, cpu=("d", "avx512f")),  # seed 4 made on another CPU
             Plan(one, 5, mkl=None)]  # seed 5 on MKL's own path: its worker must start MKL on that one
    tasks = grouping.worker_tasks(plans)
    assert [(k, [p.path for p in ps]) for k, ps, _ in tasks if k == "recompute"] == \
        [("recompute", ["p/0", "p/1"]), ("recompute", ["p/0"]), ("recompute", ["q/2"]), ("recompute", ["p/4"]),
         ("recompute", ["p/5"])]
    assert grouping.cell_needs(plans[:2]) == task.Needs(cpu=("c", "avx2"), memory=7)  # the most of the cell's runs
    replays = [(ps, g) for k, ps, g in tasks if k == "replay"]
    assert len(replays) == 14 and all(len(ps) == 1 for ps, _ in replays)  # never two runs' segments together
    assert [g for ps, g in replays if ps[0] is plans[0]] == [[(0, 50), (100, 150)], [(50, 100)]]


def test_the_worker_refuses_a_request_that_mixes_recompute_and_replay_or_names_unstaged_files():
    job = {"set": {"train.seed": 0}, "artifact": None, "weights": "final-0.safetensors", "inputs": None, "chunks": [4]}
    base = {"task": "model", "staged": ["final-0.safetensors"]}
    assert worker._resolve({**base, "runs": [job]}, "/in")["runs"][0]["weights"] == "/in/final-0.safetensors"
    for bad in ({**base, "runs": [job], "segments": [{"a": 0, "b": 50}]},
                {**base, "runs": [{**job, "weights": "start-50.safetensors"}]},
                {**base, "runs": [{**job, "extra": 1}]},
                {**base, "runs": [{**job, "chunks": [-1]}]},
                {**base, "runs": [job], "set": {"train.seed": 1}},
                {**base, "runs": []}, base):
        with pytest.raises(ValueError):
            worker._resolve(bad, "/in")


@pytest.mark.slow
@needs_bwrap
@pytest.mark.parametrize("kind, reason", [
    ("link", "not a regular file with one link"),
    ("fifo", "not a regular file with one link"),
    ("hardlink", "not a regular file with one link"),
    ("oversize", "wrote too much output"),
])
def test_link_fifo_hardlink_and_oversize_outputs_are_refused_with_one_line(runs, hostile, kind, reason):
    act = {"link": "os.remove(path); os.symlink('/proc/self/cwd/../in/request.json', path)",
           "fifo": "os.remove(path); os.mkfifo(path)",
           "hardlink": "os.link(path, path.replace('seg-', 'jitter-'))",
           "oversize": "open(path, 'ab').write(b'0' * (300 << 20))"}[kind]
    payload = f"""
import os, repro.boundary.exchange as x
real = x.write_arrays
def write(path, arrays, metadata=None):
    real(path, arrays, metadata)
    if os.path.basename(path).startswith("seg-"):
        {act}
x.write_arrays = write
"""
    got, ok = _verify(hostile(payload)[:1], replay=2)
    bad = [p for p in got[0].problems if p.startswith("replay ")]
    assert not ok and bad and all(reason in p and "\n" not in p for p in bad), got[0].problems


@pytest.mark.slow
@needs_bwrap
def test_a_worker_flooding_its_standard_error_is_stopped_at_the_cap_and_verify_goes_on(runs, hostile):
    payload = """
import os
chunk = b"x" * (1 << 20)
for _ in range(200):
    os.write(2, chunk)
"""
    t0 = time.perf_counter()
    got, ok = _verify(hostile(payload), replay=2)
    assert not ok and time.perf_counter() - t0 < 300
    for run in got:  # both runs judged, each refused with one line
        assert any("wrote too much output" in p for p in run.problems), run.problems


@pytest.mark.slow
def test_a_sleeping_data_worker_is_charged_once_for_the_whole_submission(runs, hostile):
    payload = """
import json, os, sys, time
if json.load(open(os.path.join(sys.argv[1], "request.json")))["task"] == "data":
    time.sleep(600)  # the data worker sleeps (at the plugin's import, whichever task function runs it)
"""
    t0 = time.perf_counter()
    result = verdict.verify(hostile(payload), verdict.Options(recompute=True, replay=2, challenge="c", timeout=5))
    took = time.perf_counter() - t0
    problems = [p for run in result.runs for p in run.problems]
    assert sum("timed out" in p and "earlier" not in p for p in problems) == 1, problems
    assert any("not started" in p for p in problems), problems
    assert took < 60, took  # one 5-second timeout, not one per run and task


def test_the_budget_shares_one_submissions_time_and_remembers_a_timeout():
    b = task.Budget(100)
    assert b.start(300) == 100
    with pytest.raises(ReproError, match="ran out of the submission's time budget"):
        b.start(10)
    b.finish(100, 30.0, timed_out=False)
    assert b.start(300) == pytest.approx(70)
    b.finish(70, 70.0, timed_out=True)
    with pytest.raises(ReproError, match="not started: a worker timed out earlier in this submission"):
        b.start(1)
    assert task.Budget(None).start(12345) == 12345


def test_workers_in_flight_together_share_the_budget_and_none_is_refused_for_anothers_reservation():
    b = task.Budget(1800, parallel=2)  # --jobs 2 under a contest's budget below the --timeout
    first = b.start(3600)
    second = b.start(3600)
    assert first == second == 900 and first + second <= 1800
    b.finish(first, 10.0, timed_out=False)  # the first ended early: what it did not use is free again
    third = b.start(3600)
    assert third == pytest.approx(1800 - 10 - 900)
    with pytest.raises(ReproError, match="ran out of the submission's time budget"):
        b.start(5)  # two in flight hold everything that is left


# ------------------------------------------------------------------ what the judge reads (fast)

def _stream(*entries, end=True):
    out = io.BytesIO()
    out.write(exchange.MAGIC)
    for head, body in entries:
        out.write((json.dumps(head) + "\n").encode() + body)
    if end:
        out.write(b'{"end": true}\n')
    out.seek(0)
    return out


@pytest.mark.parametrize("entries, end, why", [
    ([({"name": "other.bin", "size": 1}, b"x")], True, "did not ask for"),
    ([({"name": "../x", "size": 1}, b"x")], True, "did not ask for"),
    ([({"name": "seg.safetensors", "invalid": "a link"}, b"")], True, "not a regular file"),
    ([({"name": "seg.safetensors", "size": 10}, b"xx")], False, "ends before its size"),
    ([({"name": "seg.safetensors", "size": 1 << 40}, b"")], True, "over the"),
    ([({"name": "seg.safetensors", "size": 1}, b"x"), ({"name": "seg.safetensors", "size": 1}, b"x")], True,
     "did not ask for"),
    ([({"name": "seg.safetensors", "size": 1}, b"x")], False, "before their end mark"),
])
def test_the_judge_takes_only_what_it_asked_for_within_the_cap(tmp_path, entries, end, why):
    with pytest.raises(exchange.OutputError, match=why):
        exchange.receive_outputs(_stream(*entries, end=end), str(tmp_path), {"seg.safetensors"}, 1 << 20)


def test_outputs_come_back_as_sent(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    exchange.write_arrays(str(src / "a.safetensors"), {"w": np.arange(6, dtype=np.float32)})
    r, w = os.pipe()
    exchange.send_outputs(w, str(src))
    with os.fdopen(r, "rb") as stream:
        assert exchange.receive_outputs(stream, str(dst), {"a.safetensors"}, 1 << 20) == ["a.safetensors"]
    arrays, _ = exchange.read_arrays(str(dst / "a.safetensors"), "a")
    assert arrays["w"].tolist() == list(range(6))


def test_files_are_read_without_following_links_and_must_be_one_regular_file(tmp_path):
    real = tmp_path / "real"
    real.write_bytes(b"12345")
    os.symlink(real, tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    os.link(real, tmp_path / "hard")
    for name, why in (("link", "a link"), ("fifo", "not a regular file"), ("hard", "2 links")):
        with pytest.raises(ReproError, match=why):
            strict.read_regular(str(tmp_path / name), name, 100)
    os.remove(tmp_path / "hard")
    with pytest.raises(ReproError, match="over the 4 such a file may have"):
        strict.read_regular(str(real), "real", 4)
    assert strict.read_regular(str(real), "real", 5) == b"12345"


def test_the_worker_gets_every_split_as_shuffled_batches_and_the_judge_puts_them_back():
    bs = 7
    splits = {"test": (np.arange(30, dtype=np.float32).reshape(15, 2), np.zeros(15, np.int64)),
              audit.PRIVATE: (np.arange(100, 122, dtype=np.float32).reshape(11, 2), np.zeros(11, np.int64))}
    rows, chunks, order = segments.shuffled_batches(splits, bs)
    assert sum(chunks) == 26 and len(rows) == 26 and all(n <= bs for n in chunks)
    logits = np.repeat(rows[:, :1], 3, axis=1)  # a model whose scores are its input's first value
    back = segments.unshuffled(logits, order, {s: y for s, (x, y) in splits.items()}, bs)
    for s, (x, _) in splits.items():
        assert np.array_equal(back[s][:, 0], x[:, 0])
    with pytest.raises(ReproError, match="not 26 rows"):
        segments.unshuffled(logits[:-1], order, {s: y for s, (x, y) in splits.items()}, bs)
