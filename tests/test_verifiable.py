"""Verifiable training (train.verifiable, issue 24): each update in float64 from float32
state, rounded back with the near-boundary roundings logged, so that the replay audit
is bitwise whatever kernels the verifier's machine has; a replay that does not match
names the update and the tensor.

Runs are made here with the tiny MLP plugin (300 updates, a checkpoint kept every 100),
so everything is bitwise on any CPU."""
import json
import os
import re

import numpy as np
import plugin_tinycell
import pytest
from conftest import assert_same_checkpoints, cli, interrupt_train_step, own_plugin_folders
from test_tamper import forge, read

from repro import train, verify
from repro.errors import ReproError, run_cli
from repro.judge import verdict
from repro.run import checkpoint, decisions, rundir

STEPS, EVERY = 300, 100


def _train(out, seed=0, *over, threads=1):
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--paper", "tinycell", "--seed", str(seed), "--out", out, "--threads", str(threads),
                             "-o", "train.verifiable=true", "-o", f"train.audit_every={EVERY}",
                             "-o", f"train.checkpoint_every={EVERY}", *over])
    assert e.value.code == 0


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    root = tmp_path_factory.mktemp("verifiable")
    folder = plugin_tinycell.write(str(root / "tinycell"))
    with own_plugin_folders(folder):
        yield root


@pytest.fixture(scope="module")
def honest(plugin):
    """A verifiable run made with 1 thread."""
    out = str(plugin / "honest")
    _train(out)
    return out


def _verify(paths, **options):
    options = {"replay": "all", "challenge": "fixed", **options}
    _, runs, ok = verdict.verify(paths if isinstance(paths, list) else [paths], verdict.Options(**options))
    return runs


def _reseal(path, decisions_of=None):
    """Re-chain the log and reseal every checkpoint (tests/test_tamper.py's forge), with each
    decisions file's current sha256 in its checkpoint line."""
    events = read(path)
    for ev in events:
        if ev["kind"] == "checkpoint" and "decisions_sha256" in ev:
            ev["decisions_sha256"] = checkpoint.sha256_file(os.path.join(path, rundir.decisions_name(ev["step"])))
    forge(path, events, decisions_of)


def _rewrite_decisions(path, step, change):
    from safetensors import safe_open
    from safetensors.numpy import save_file
    file = os.path.join(path, rundir.decisions_name(step))
    with safe_open(file, framework="np") as f:
        meta, arrays = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    change(arrays)
    save_file(arrays, file, metadata=meta)


# ------------------------------------------------------------------ the arithmetic (no Paddle)

def test_rounding_logs_values_near_a_boundary_and_not_exact_ties():
    one = np.float32(1.0)
    spacing = float(np.spacing(one))
    mid = 1.0 + spacing / 2  # the boundary between 1 and the next float32
    eps = 4 * float(np.spacing(mid))  # 4 float64 steps: 7.5e-9 of a float32 spacing, deep inside the margin
    v = np.array([mid, mid + eps, mid - eps, 1.0 + spacing * 0.25, 1.0])
    r, near, up = decisions.record(v, decisions.MARGIN)
    assert r[0] == one  # a tie goes to the even neighbour and is not logged
    assert list(near) == [1, 2] and list(up) == [True, False]
    assert r[1] == np.nextafter(one, np.float32(2)) and r[2] == one and r[3] == one and r[4] == one
    # a replay whose values lie on the other side of the boundary takes the logged directions
    other = np.array([mid, mid - eps, mid + eps, 1.0 + spacing * 0.25, 1.0])
    got, info, problem = decisions.replay(other, near, up, decisions.MARGIN)
    assert problem is None and info.taken == 2 and np.array_equal(got, r)
    # and without them it fails, naming the element
    got, info, problem = decisions.replay(other, np.zeros(0, np.int64), np.zeros(0, bool), decisions.MARGIN)
    assert problem is not None and problem.startswith("element 1 lies") and "no decision" in problem


def test_the_hash_resolves_a_value_that_crossed_a_boundary_from_outside_the_margin():
    rng = np.random.default_rng(0)
    v = rng.normal(size=1000)
    r, _, _ = decisions.nearest(v)
    trainer = {"model/w": r.copy(), "model/b": np.zeros(3, np.float32)}
    spacing = np.abs(np.nextafter(r[7], np.float32(np.inf)) - r[7]).astype(np.float64)
    # the replay's value 7 lies 1e-3 of a spacing past the boundary the trainer's lay before
    mine = v.copy()
    mine[7] = (r[7].astype(np.float64) + spacing / 2) + spacing * 1e-3
    got, near, problem = decisions.replay(mine, np.zeros(0, np.int64), np.zeros(0, bool))
    assert problem is None and got[7] != r[7]
    named = {"model/w": got, "model/b": trainer["model/b"]}
    want, tags, groups = decisions.state_hash(trainer)
    found = decisions.resolve(named, {"model/w": near}, want, tags, groups)
    assert found is not None and [(n, i) for n, i, _ in found] == [("model/w", 7)]
    assert np.array_equal(named["model/w"], r)
    # something that is no rounding (a weight moved by 1e-3) is not found
    named["model/w"][3] += np.float32(1e-3)
    _, near, _ = decisions.replay(v, np.zeros(0, np.int64), np.zeros(0, bool))
    assert decisions.resolve(named, {"model/w": near}, want, tags, groups) is None


# ------------------------------------------------------------------ runs

@pytest.mark.slow
def test_a_verifiable_run_made_with_1_thread_replays_bitwise_on_2_threads_with_onednn(honest, monkeypatch):
    monkeypatch.setenv("FLAGS_use_mkldnn", "1")  # the sandbox passes FLAGS_* to the workers
    for cross in (False, True):
        (run,) = _verify(honest, recompute=True, threads=2, cross_platform=cross)
        assert run.problems == [], run.problems
        assert len(run.replayed) == STEPS // EVERY
        assert all(s["exact"] and s["verifiable"] and "spread" not in s and not s.get("decision_problem")
                   for s in run.replayed), run.replayed
    files = sorted(f for f in os.listdir(os.path.join(honest, "checkpoints")) if f.endswith(".decisions"))
    assert files == [os.path.basename(rundir.decisions_name(s)) for s in range(EVERY, STEPS + 1, EVERY)]
    logged = decisions.read(os.path.join(honest, rundir.decisions_name(EVERY)))
    assert (logged.a, logged.b) == (0, EVERY) and logged.hashes.shape == (EVERY,)
    assert logged.groups == ["0.bias", "0.weight", "2.bias", "2.weight"]


@pytest.mark.slow
def test_a_forged_update_fails_naming_the_update_and_the_parameter(plugin, monkeypatch):
    """A trainer that does something else at update 150 (here: moves one weight by 1e-3) logs the
    hashes of what it did; the replay names update 150 and the parameter."""
    import paddle

    from repro.run import verifiable
    real = verifiable.Exact.down

    def down(self, step):
        if step == 150:
            for name, t in self.tensors():
                if name == "model/2.weight":
                    a = t.numpy()
                    a.flat[5] += 1e-3
                    verifiable._share(t, paddle.to_tensor(a))
        return real(self, step)
    monkeypatch.setattr(verifiable.Exact, "down", down)
    out = str(plugin / "forged-update")
    _train(out)
    monkeypatch.setattr(verifiable.Exact, "down", real)
    (run,) = _verify(out, threads=2)
    bad = [p for p in run.problems if p.startswith("replay")]
    assert [p.split(":")[0] for p in bad] == ["replay 100->200"], run.problems
    assert "first departs from the logged hashes after update 150 in 2.weight" in bad[0], bad[0]
    assert "update 150, tensor 2.weight" in bad[0], bad[0]


@pytest.mark.slow
def test_a_checkpoint_moved_by_one_float32_step_is_rejected_and_the_next_segment_departs_at_its_first_update(
        honest, tmp_path):
    """Far below any --cross-platform spread: the checkpoint at 200 with one weight one float32
    step up. The segment ending there: every update reproduces, the file is not that state; the
    segment starting there departs at update 201."""
    import shutil
    forged = str(tmp_path / "one-step")
    shutil.copytree(honest, forged)
    tensors, _ = checkpoint.read(os.path.join(forged, rundir.checkpoint_name(200)), want_optimizer=True)
    w = tensors["model/0.weight"].copy()
    w.flat[0] = np.nextafter(w.flat[0], np.float32(np.inf))
    tensors["model/0.weight"] = w
    _reseal(forged, {200: tensors})
    (run,) = _verify(forged, threads=2, cross_platform=True)
    bad = {p.split(":")[0]: p for p in run.problems if p.startswith("replay")}
    assert set(bad) == {"replay 100->200", "replay 200->300"}, run.problems
    assert "every update's logged state hash matches the replay's" in bad["replay 100->200"]
    assert re.search(r"after update 201 in [^;]*\b0\.weight", bad["replay 200->300"]), bad["replay 200->300"]


@pytest.mark.slow
def test_a_turned_decision_fails_naming_the_update(plugin, tmp_path, monkeypatch):
    monkeypatch.setattr(decisions, "MARGIN", 2.0 ** -10)  # many decisions in a short run
    out = str(plugin / "turned")
    _train(out, 1)
    logged = decisions.read(os.path.join(out, rundir.decisions_name(EVERY)))
    assert logged.count() > 50 and logged.margin == 2.0 ** -10
    u, t2, i = (int(x) for x in logged.decisions[0])

    def turn(arrays):
        arrays["decisions"][0, 1] ^= 1
    _rewrite_decisions(out, EVERY, turn)
    _reseal(out)
    (run,) = _verify(out, threads=2)
    bad = [p for p in run.problems if p.startswith("replay")]
    assert [p.split(":")[0] for p in bad] == ["replay 0->100"], run.problems
    assert f"after update {u + 1} in {decisions.group_of(logged.names[t2 >> 1])}" in bad[0], bad[0]


@pytest.mark.slow
def test_a_missing_decision_fails_naming_the_update_and_the_tensor(plugin, monkeypatch):
    monkeypatch.setattr(decisions, "MARGIN", 2.0 ** -10)
    out = str(plugin / "missing")
    _train(out, 2)

    def drop(arrays):
        arrays["decisions"] = arrays["decisions"][:0]
    _rewrite_decisions(out, 2 * EVERY, drop)
    _reseal(out)
    (run,) = _verify(out, threads=2)
    bad = [p for p in run.problems if p.startswith("replay")]
    assert [p.split(":")[0] for p in bad] == ["replay 100->200"], run.problems
    assert re.search(r"update 1\d\d, tensor (model|optim)/\S+: element \d+ lies \S+ of a "
                     r"float32 spacing from a rounding boundary, inside the margin .* no decision", bad[0]), bad[0]


@pytest.mark.slow
def test_the_record_is_checked_from_the_files_and_a_target_can_require_the_mode(honest, plugin, tmp_path):
    import shutil

    from repro.judge.protocol import RegisteredProtocol
    from repro.targets import Policy, Target
    broken = str(tmp_path / "no-record")
    shutil.copytree(honest, broken)
    os.remove(os.path.join(broken, rundir.decisions_name(2 * EVERY)))
    (run,) = _verify(broken, replay=0)
    assert any("decisions file not found" in p for p in run.problems), run.problems

    class Requires(RegisteredProtocol):
        targets = (Target("test_acc", 10.0, "higher", 0.0, "test", Policy("single", verifiable=True)),)

    def requiring(r):
        base = verdict.registered(r)
        p = Requires(base.paper_obj, base.exp_obj)
        p.targets = Requires.targets
        return p
    plain = str(plugin / "float32")
    with pytest.raises(SystemExit):
        run_cli(train.main, ["--paper", "tinycell", "--out", plain, "-o", "train.steps=20",
                             "-o", "train.audit_every=10", "-o", "train.eval_every=10"])
    got = {r.path: r for r in verdict.verify([honest, plain], verdict.Options(protocol_of=requiring)).runs}
    assert any("requires verifiable training" in p for p in got[plain].problems), got[plain].problems
    assert not any("requires verifiable training" in p for p in got[honest].problems), got[honest].problems
    assert str(Policy("single", verifiable=True)) == "single, verifiable training"


def test_the_registered_config_may_require_the_mode_and_a_run_may_opt_in():
    from repro.judge.protocol import Protocol

    class P(Protocol):
        def __init__(self, on):
            self.on = on

        def registered_config(self, lite):
            return {"train.steps": 300, **({"train.verifiable": True} if self.on else {})}
    run_on = {"train": {"steps": 300, "verifiable": True}}
    run_off = {"train": {"steps": 300, "verifiable": False}}
    older = {"train": {"steps": 300}}  # a log from before the key existed
    assert P(False).config_differences(run_on) == [] and P(False).config_differences(older) == []
    assert P(True).config_differences(run_on) == []
    assert P(True).config_differences(run_off) and P(True).config_differences(older)


@pytest.mark.slow
def test_a_verifiable_run_resumed_mid_segment_is_the_uninterrupted_one(plugin, tmp_path, capsys, monkeypatch):
    from repro.registry import get_paper
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    over = ["-o", "train.checkpoint_every=50"]
    _train(whole, 3, *over)
    undo = interrupt_train_step(monkeypatch, get_paper("tinycell"), 170)
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--paper", "tinycell", "--seed", "3", "--out", parts, "-o", "train.verifiable=true",
                             "-o", f"train.audit_every={EVERY}", "-o", f"train.checkpoint_every={EVERY}", *over])
    assert e.value.code == 130
    undo()
    code, _, err = cli(train.main, ["--resume", parts], capsys)
    assert code == 0, err
    assert_same_checkpoints(whole, parts)
    for s in range(EVERY, STEPS + 1, EVERY):  # the records too: the one at 200 was continued from step 150's
        a, b = (decisions.read(os.path.join(r, rundir.decisions_name(s))) for r in (whole, parts))
        assert (a.a, a.b, a.margin, a.names, a.groups) == (b.a, b.b, b.margin, b.names, b.groups), s
        for x, y in ((a.hashes, b.hashes), (a.tags, b.tags), (a.decisions, b.decisions)):
            assert np.array_equal(x, y), s
    assert not os.path.exists(os.path.join(parts, rundir.decisions_name(150)))
    (run,) = _verify(parts, threads=2)
    assert run.problems == [], run.problems


def test_verifiable_cannot_be_combined_with_amp(plugin, tmp_path):
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, ["--paper", "tinycell", "--out", str(tmp_path / "x"), "-o", "train.verifiable=true",
                             "-o", "train.amp.enabled=true"])
    assert e.value.code == 2


def test_a_contest_entry_can_require_verifiable_runs(tmp_path):
    from conftest import REPO

    from repro.judge.contest import read_contest
    text = open(os.path.join(REPO, "configs", "contests", "mnist1d.yaml"), encoding="utf-8").read()
    path = tmp_path / "c.yaml"
    path.write_text(text.replace("    replay: default\n", "    replay: default\n    verifiable: true\n", 1))
    first, second = read_contest(str(path)).papers
    assert first.verifiable and not second.verifiable
    assert first.target().policy.verifiable and "verifiable training" in str(first.target().policy)
    path.write_text(text.replace("    replay: default\n", "    replay: default\n    verifiable: 1\n", 1))
    with pytest.raises(ReproError, match="verifiable must be bool"):
        read_contest(str(path))


@pytest.mark.slow
def test_the_shipped_verifiable_cnn_cell_replays_bitwise_here_with_2_threads_and_onednn(capsys, monkeypatch):
    """logs/mnist1d_verifiable/cnn: the registered CNN cell trained with train.verifiable, 1 thread,
    on an AVX-512 machine (benchmarks/verifiable.py --parts cell). Its replay is bitwise on any
    machine: here the first and last segments of seed 4 on 2 threads with oneDNN (the benchmark
    replays all 40); in a session on the other kind of CPU, this is the cross-CPU check."""
    from conftest import REPO
    monkeypatch.setenv("FLAGS_use_mkldnn", "1")
    runs = [os.path.join(REPO, "logs", "mnist1d_verifiable", "cnn", "seed4")]
    code, out, err = cli(verify.main, runs + ["--json", "--replay", "2", "--threads", "2", "--jobs", "2"], capsys)
    report = json.loads(out)
    assert [r["problems"] for r in report["runs"]] == [[]], report["runs"]
    segs = [s for r in report["runs"] for s in r["replay"]]
    assert len(segs) == 2 and all(s["exact"] and s["verifiable"] and not s.get("decision_problem") for s in segs), segs
