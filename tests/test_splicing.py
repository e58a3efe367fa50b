"""Forgeries in the middle of a run, which `--replay 2` (first and last segment only)
could never draw: with the default coverage (every segment of a short run) or the
copy check, each is refused at exactly the forged stretch (issue 29).

The runs are made here (a tiny MLP plugin, 300 steps, a checkpoint kept every 50),
so the test is bitwise on any CPU; the forger re-chains the log and reseals every
checkpoint with the project's own code (tests/test_tamper.py's forge())."""
import os
import shutil

import plugin_tinycell
import pytest
from conftest import own_plugin_folders
from test_tamper import evaluate, fine_tune_on_test, forge, read, set_metric

from repro import train
from repro.errors import run_cli
from repro.judge import verdict
from repro.registry import get_paper
from repro.run import checkpoint, recipe, rundir

pytestmark = pytest.mark.slow
STEPS, EVERY = 300, 50


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    root = tmp_path_factory.mktemp("splice")
    plugin = plugin_tinycell.write(str(root / "tinycell"))
    with own_plugin_folders(plugin):
        runs = []
        for seed in (0, 1):
            out = str(root / f"seed{seed}")
            with pytest.raises(SystemExit) as e:
                run_cli(train.main, ["--paper", "tinycell", "--seed", str(seed), "--out", out,
                                     "-o", f"train.audit_every={EVERY}", "-o", f"train.checkpoint_every={EVERY}"])
            assert e.value.code == 0
            runs.append(out)
        yield root, runs


def _state(path, step, load_from=None):
    """The training state of run `path` at `step` (weights and optimizer from load_from's checkpoint)."""
    run = rundir.open_run(get_paper, path)
    state = recipe.build(run.paper, run.cfg, init=False)
    rundir.load_trained(rundir.open_run(get_paper, load_from or path), step, into=state.net, optimizer=state.optimizer)
    return run, state


def _train_on(run, state, steps, keep):
    """Recipe updates `steps` (their numbers choose batches and seeds); {label: tensors} at keep {step: label}."""
    out = {}
    for s in steps:
        recipe.update(run.paper, state, run.cfg, s)
        if s in keep:
            final = keep[s] == STEPS
            out[keep[s]] = checkpoint.state_tensors(state.net, None if final else state.optimizer)
    return out


def _forged(src, dst, tensors, events=None):
    """A copy of src with new tensors at some steps, the final metrics the forged weights give, resealed."""
    shutil.copytree(src, dst)
    events = events or read(dst)
    final = tensors.get(STEPS)
    if final is not None:
        metrics = evaluate(dst, final)
        for key, value in metrics.items():
            set_metric(events, key, value)
    forge(dst, events, tensors)
    return dst


def _check(forged, honest, where, replay="default"):
    """verify --recompute --replay (the default, or 'all') on the forgery and the honest run."""
    rows, runs, ok = verdict.verify([forged, honest], verdict.Options(recompute=True, replay=replay,
                                                                    challenge="fixed"))
    bad = next(r for r in runs if os.path.normpath(r.path) == os.path.normpath(forged))
    assert not ok and any(p.startswith(where) for p in bad.problems), bad.problems
    if where.startswith("replay"):
        assert bad.coverage["replayed"] == STEPS // EVERY == bad.coverage["segments"]
    return bad, next(r for r in runs if r is not bad)


def _test_tuned_at_150(path):
    """{step: tensors} of the run at path fine-tuned on the test split at step 150, then trained
    honestly to the end."""
    run, state = _state(path, 150)
    fine_tune_on_test(run, state)
    tensors = {150: checkpoint.state_tensors(state.net, state.optimizer)}
    tensors.update(_train_on(run, state, range(151, STEPS + 1), {200: 200, 250: 250, 300: 300}))
    return tensors


@pytest.mark.parametrize("replay", ["default", "all"])
def test_test_split_fine_tuning_in_the_middle_is_caught_at_that_segment(cell, tmp_path, replay):
    _, (seed0, seed1) = cell
    tensors = _test_tuned_at_150(seed0)
    bad, honest = _check(_forged(seed0, str(tmp_path / "f"), tensors), seed1, "replay 100->150", replay)
    assert [p.split(":")[0] for p in bad.problems] == ["replay 100->150"], bad.problems
    assert honest.problems == []


def test_a_run_spliced_onto_another_runs_later_checkpoints_is_a_copy(cell, tmp_path):
    _, (seed0, seed1) = cell
    tensors = {s: checkpoint.read(os.path.join(seed1, rundir.checkpoint_name(s)), want_optimizer=True)[0]
               for s in range(100, STEPS + 1, EVERY)}
    forged = _forged(seed0, str(tmp_path / "f"), tensors)
    # beside the run it copies (in the cell, its calibration or another submission): a copy, from the files alone
    bad, other = _check(forged, seed1, "its final weights are identical to those of")
    assert any("identical to those of" in p for p in other.problems)  # the donor's files hold the same weights
    # alone: the replay audit finds the seam
    _, runs, _ = verdict.verify([forged], verdict.Options(recompute=True, replay="default", challenge="fixed"))
    assert [p.split(":")[0] for p in runs[0].problems] == ["replay 50->100"], runs[0].problems


def test_a_hijacked_resume_in_the_middle_is_caught_at_the_next_segment(cell, tmp_path):
    _, (seed0, seed1) = cell
    run, state = _state(seed0, 150, load_from=seed1)  # "resumed" from someone else's state
    tensors = _train_on(run, state, range(151, STEPS + 1), {200: 200, 250: 250, 300: 300})
    events = read(seed0)
    at = next(i for i, e in enumerate(events) if e["kind"] == "checkpoint" and e["step"] == 150)
    head = events[0]
    events.insert(at + 1, {"kind": "resume", "seq": 0, "prev": "", "time": events[at]["time"] + 1, "step": 150,
                           "env": head["env"], "code": head["code"]})
    for e in events[at + 2:]:
        e["time"] += 2
    forged = _forged(seed0, str(tmp_path / "f"), tensors, events)
    # on this model (sequential batches, constant lr, no dropout) the recipe from seed 1's state is seed 1's
    # run, whatever the seed: beside it, the copy check refuses the forgery from the files alone
    _check(forged, seed1, "its final weights are identical to those of")
    _, runs, _ = verdict.verify([forged], verdict.Options(recompute=True, replay="default", challenge="fixed"))
    assert [p.split(":")[0] for p in runs[0].problems] == ["replay 150->200"], runs[0].problems


def test_an_extra_hidden_segment_is_caught_at_the_stretch_that_hides_it(cell, tmp_path):
    _, (seed0, seed1) = cell
    run, state = _state(seed0, 100)
    hidden = _train_on(run, state, range(101, 201), {200: 150})  # 100 updates logged as 50
    tensors = {**hidden, **_train_on(run, state, range(151, STEPS + 1), {200: 200, 250: 250, 300: 300})}
    bad, honest = _check(_forged(seed0, str(tmp_path / "f"), tensors), seed1, "replay 100->150")
    assert [p.split(":")[0] for p in bad.problems] == ["replay 100->150"], bad.problems


def test_replay_2_lets_a_middle_forgery_through_and_says_so(cell, tmp_path):
    """Why the default changed: with the first and last segment alone the same forgery passes,
    and verify warns that the middle segments had no chance."""
    _, (seed0, seed1) = cell
    forged = _forged(seed0, str(tmp_path / "f"), _test_tuned_at_150(seed0))
    _, runs, _ = verdict.verify([forged], verdict.Options(recompute=True, replay=2, challenge="fixed"))
    assert runs[0].problems == [] and runs[0].coverage["escape"] == 1.0
    assert any("never replays a middle one" in w for w in runs[0].warnings)
