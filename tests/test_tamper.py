"""The tamper corpus: forgeries of genuine runs, each rejected with its own reason.

The genuine runs are copies of the shipped MNIST-1D logistic-regression runs
(logs/mnist1d/logreg, seeds 0-4: full protocol, 8,000 steps, a checkpoint kept
every 1,000); on another CPU than theirs, the cases that need a bitwise replay
use the same recipe and seeds trained here instead. Each case changes a copy
the way a cheater with our source code might, and names the reason verify must
give. The forger here re-chains the log and reseals every checkpoint (metadata
pointing at the forged chain, its new sha256 and weights_sha256 logged), so
only what verify computes itself can catch them: the log checks, --recompute,
or the replay audit.
"""
import functools
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from conftest import REPO, cli, recomputes, same_platform
from forgery import forge

from repro import machine, verify
from repro.config import config_hash
from repro.judge import verdict
from repro.registry import get_paper
from repro.run import checkpoint, rundir
from repro.run.runlog import GENESIS, line_hash

GENUINE = [os.path.join(REPO, "logs", "mnist1d", "logreg", f"seed{s}") for s in range(5)]
FINAL = rundir.checkpoint_name(8000)


@pytest.fixture(scope="module")
def shipped():
    """The shipped runs as they are: enough wherever only the logs are checked."""
    for path in GENUINE:
        if not os.path.isfile(os.path.join(path, "events.jsonl")):
            pytest.fail(f"the shipped run {path} is missing")
    return GENUINE


@pytest.fixture(scope="module")
def genuine(shipped, tmp_path_factory):
    """Runs whose replay is bitwise here: the shipped ones on the CPU they were made on."""
    if all(same_platform(p) for p in shipped):
        return shipped
    # another CPU: its replays of the shipped runs are not bitwise, so the genuine runs are
    # made here, with the same registered recipe and seeds (about 30 s for the five)
    from repro import train
    from repro.errors import run_cli
    parent = tmp_path_factory.mktemp("genuine")
    made = []
    for s in range(5):
        out = str(parent / f"seed{s}")
        with pytest.raises(SystemExit) as e:
            run_cli(train.main, ["--paper", "mnist1d", "--exp", "logreg", "--seed", str(s), "--out", out,
                                 "-o", "train.visualdl=false"])
        assert e.value.code == 0
        made.append(out)
    return made


def copy(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def read(path):
    with open(os.path.join(path, "events.jsonl")) as f:
        return [json.loads(line) for line in f]


def write_raw(path, events):
    with open(os.path.join(path, "events.jsonl"), "w") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")


def tensors_at(path, step):
    return checkpoint.read(os.path.join(path, rundir.checkpoint_name(step)), want_optimizer=True)[0]


def index(events, kind, last=True):
    idx = [i for i, e in enumerate(events) if e["kind"] == kind]
    return idx[-1] if last else idx[0]


def set_metric(events, key, value):
    events[index(events, "eval")]["metrics"][key] = value
    events[-1]["metrics"][key] = value


def fine_tune_on_test(run, state):
    """20 Adam steps of the state's model on the evaluation split (fine-tuning on the test set)."""
    import paddle
    x, y = state.data.eval["test"]
    for i in range(20):
        loss = run.paper.loss(state.net(paddle.to_tensor(x[i * 50:(i + 1) * 50])), paddle.to_tensor(y[i * 50:(i + 1) * 50]))
        loss.backward()
        state.optimizer.step()
        state.optimizer.clear_grad()


def trained_further(path, step, how):
    """The state at `step` trained on: 'test' = 20 Adam steps on the evaluation
    split (fine-tuning on the test set), 'more' = 500 more steps of the recipe's
    own batches (training longer than registered)."""
    from repro.run import recipe
    run = rundir.open_run(get_paper, path)
    state = recipe.build(run.paper, run.cfg, init=False)
    final = step == run.cfg.train.steps  # the final checkpoint holds the weights alone: a fresh Adam goes on
    rundir.load_trained(run, step, into=state.net, optimizer=None if final else state.optimizer)
    if how == "test":
        fine_tune_on_test(run, state)
    else:
        for s in range(step + 1, step + 501):
            recipe.update(run.paper, state, run.cfg, s)
    return checkpoint.state_tensors(state.net, None if final else state.optimizer)


def evaluate(path, tensors):
    """The test metrics these weights give, as the harness computes them."""
    from safetensors.numpy import save_file

    from repro.eval import evaluate as run_eval
    run = rundir.open_run(get_paper, path)
    file = os.path.join(os.path.dirname(path), "weights.safetensors")
    save_file(tensors, file, metadata={"format": checkpoint.FORMAT})
    model = rundir.load_weights(run.paper, run.cfg, file)[0]
    return run_eval(run.paper, model, run.cfg, run.paper.build_data(run.cfg))[0]


def problems(path, others=(), recompute=False, replay=0, cross_platform=False):
    options = verdict.Options(recompute=recompute, replay=replay, challenge="fixed", cross_platform=cross_platform)
    _, runs, _ = verdict.verify([path, *others], options)
    return next(r for r in runs if os.path.normpath(r.path) == os.path.normpath(path)).problems


@pytest.mark.slow  # recompute now starts sandboxed workers for each run: ~20-35 s
def test_the_shipped_runs_pass_the_log_checks_and_recompute(shipped):
    """Everywhere, in the fast tier: logs and --recompute (exact on the runs' own CPU, within
    the cross-platform tolerance elsewhere); their replay is the next test's."""
    here = all(same_platform(p) for p in shipped)
    rows, runs, ok = verdict.verify(shipped, verdict.Options(recompute=True, cross_platform=not here))
    assert ok and all(r.problems == [] for r in runs), [r.problems for r in runs]
    if here:
        assert all(recomputes(r.recomputed, r.metrics) for r in runs)


@pytest.mark.slow
def test_the_genuine_runs_pass_everything(genuine):
    """Replayed too, bitwise: the shipped runs on their own CPU, else the same recipe and seeds
    trained here (the fixture)."""
    options = verdict.Options(recompute=True, replay=3, challenge="fixed")
    rows, runs, ok = verdict.verify(genuine, options)
    assert ok and all(r.problems == [] for r in runs), [r.problems for r in runs]
    assert all(len(r.replayed) == 3 and all(s["exact"] for s in r.replayed) for r in runs)


def edited(write):
    """A case that edits the log's events (the function, given them) and writes them back with
    write: forge reseals log and checkpoints as a forger with our code does, write_raw writes
    the lines as they are (the hash chain not redone)."""
    def case_of(change):
        @functools.wraps(change)
        def case(p, o):
            ev = read(p)
            change(ev)
            write(p, ev)
        return case
    return case_of


def with_final_weights(p, weights, tensors):
    """The log's final metrics set to what weights give, then resealed with tensors {step: tensors}."""
    metrics = evaluate(p, weights)
    ev = read(p)
    for k, v in metrics.items():
        set_metric(ev, k, v)
    forge(p, ev, tensors)


# ---- cases: (name, function(path, another genuine run), expected reason, what catches it)
#      what: "log" (log checks alone), "recompute", "replay"

@edited(write_raw)
def edit_final_metric(ev):
    ev[index(ev, "eval")]["metrics"]["test_acc"] = 99.9


@edited(write_raw)
def edit_run_end_metric(ev):
    ev[-1]["metrics"]["test_acc"] = 99.9


@edited(write_raw)
def delete_a_line(ev):
    del ev[3]


@edited(write_raw)
def swap_two_lines(ev):
    ev[3], ev[4] = ev[4], ev[3]


@edited(write_raw)
def duplicate_an_evaluation(ev):
    i = index(ev, "eval")
    ev.insert(i + 1, ev[i])


@edited(forge)
def duplicate_an_evaluation_rechained(ev):
    i = index(ev, "eval", last=False)
    ev.insert(i + 1, dict(ev[i]))


@edited(forge)
def change_a_target(ev):
    ev[0]["targets"][0]["paper_value"] = 20.0


@edited(forge)
def widen_a_tolerance(ev):
    ev[0]["targets"][0]["tolerance"] = 50.0


@edited(forge)
def change_the_eval_permutation(ev):
    ev[0]["data"]["test"]["sha256"] = hashlib.sha256(b"another permutation").hexdigest()


@edited(forge)
def shrink_the_eval_split(ev):
    ev[0]["data"]["test"]["n"] = 500


@edited(forge)
def change_the_protocol_in_config(ev):
    ev[0]["config"]["data"]["shuffle_seq"] = True
    ev[0]["config_hash"] = config_hash(ev[0]["config"])


@edited(forge)
def edit_config_without_its_hash(ev):
    ev[0]["config"]["train"]["lr"] = 0.02


def edit_config_yaml_alone(p, o):
    with open(os.path.join(p, "config.yaml"), "a") as f:
        f.write("# harmless?\nmodel: {arch: logreg, hidden_size: 7}\n")


@edited(forge)
def change_the_metric_definition(ev):
    ev[0]["metrics"]["acc"] = "metrics.lenient.TopFiveAccuracy"


@edited(forge)
def change_the_log_format(ev):
    ev[0]["format"] = "repro-log/1"


@edited(forge)
def change_the_status(ev):
    ev[-1]["status"] = "interrupted"


def truncate_the_log(p, o):
    ev = read(p)
    write_raw(p, ev[:-3])


def truncate_mid_line(p, o):
    path = os.path.join(p, "events.jsonl")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-40])


@edited(forge)
def time_goes_backwards(ev):
    ev[5]["time"] = ev[1]["time"] - 100


@edited(forge)
def steps_go_backwards(ev):
    a, b = [i for i, e in enumerate(ev) if e["kind"] == "train"][1:3]
    ev[a]["step"], ev[b]["step"] = ev[b]["step"], ev[a]["step"]


def drop_the_checkpoint_events(p, o):
    forge(p, [e for e in read(p) if e["kind"] != "checkpoint"])


@edited(forge)
def append_after_run_end(ev):
    ev.append({**ev[index(ev, "eval")], "time": ev[-1]["time"] + 1})


@edited(forge)
def relabel_the_experiment(ev):
    ev[0]["exp"] = "logreg_shuffled"


def replace_the_checkpoint(p, o):
    shutil.copy(os.path.join(o, FINAL), os.path.join(p, FINAL))


def replace_the_checkpoint_and_its_logged_hash(p, o):
    """Another run's final weights, resealed into this run: verified beside that run."""
    forge(p, read(p), {8000: tensors_at(o, 8000)})


def delete_the_final_checkpoint(p, o):
    os.remove(os.path.join(p, FINAL))


def delete_an_audit_checkpoint(p, o):
    os.remove(os.path.join(p, rundir.checkpoint_name(3000)))


@edited(forge)
def point_the_checkpoint_outside(ev):
    ev[index(ev, "checkpoint")]["path"] = "../seed1/" + FINAL


def checkpoint_as_a_symlink_outside(p, o):
    os.remove(os.path.join(p, FINAL))
    os.symlink(os.path.join(o, FINAL), os.path.join(p, FINAL))


def log_as_a_symlink(p, o):
    os.remove(os.path.join(p, "events.jsonl"))
    os.symlink(os.path.join(o, "events.jsonl"), os.path.join(p, "events.jsonl"))


def forge_a_new_chain_with_a_fake_metric(p, o):
    """Re-chained, but the checkpoints still point at the genuine chain."""
    ev = read(p)
    set_metric(ev, "test_acc", 99.9)
    prev = GENESIS
    with open(os.path.join(p, "events.jsonl"), "w") as f:
        for i, e in enumerate(ev):
            line = json.dumps({**e, "seq": i, "prev": prev})
            f.write(line + "\n")
            prev = line_hash(line)


@edited(forge)
def forge_chain_and_checkpoint_metadata(ev):
    """The thorough forger: fake metric, re-chained log, resealed checkpoints."""
    set_metric(ev, "test_acc", 33.1)


@edited(forge)
def impossible_accuracy(ev):
    """93.48% of 1,000 samples cannot be: accuracies there are multiples of 0.1."""
    set_metric(ev, "test_acc", 31.55)


@edited(forge)
def header_claims_a_gpu_for_slack(ev):
    """A GPU in the header once bought a relative slack; a raised metric must still fail (one more
    sample right: a possible accuracy, so only the judge's recompute can refuse it)."""
    ev[0]["env"]["device"] = "gpu:0"
    ev[0]["env"]["cuda"] = "12.6"
    set_metric(ev, "test_acc", round(ev[-1]["metrics"]["test_acc"] + 0.1, 1))


@edited(forge)
def claim_an_unknown_mkl_path(ev):
    ev[0]["env"]["mkl_path"] = "avx512"


@edited(forge)
def claim_the_other_mkl_path(ev):
    """The header says the run took the other MKL code path than it did: its replay takes the claimed
    one and does not end on the logged checkpoints (a path is part of what the replay checks)."""
    ev[0]["env"]["mkl_path"] = None if ev[0]["env"].get("mkl_path") else "avx2"


def fine_tune_on_the_test_split(p, o):
    """Genuine run, then the final weights fine-tuned on the evaluation split; the log
    reports what those weights really give, so --recompute agrees: only replay catches it."""
    forged = trained_further(p, 8000, "test")
    with_final_weights(p, forged, {8000: forged})


def train_longer_than_registered(p, o):
    forged = trained_further(p, 8000, "more")
    with_final_weights(p, forged, {8000: forged})


def short_run_relabelled_as_full(p, o):
    """Weights after 2,000 steps, presented as the 8,000-step result: the log's later
    checkpoints all hold them."""
    early = tensors_at(p, 2000)
    with_final_weights(p, early, {s: early for s in range(3000, 8001, 1000)})


def clone_another_seed(p, o, claim_own_init=True):
    """Seed 1's run copied over seed 0's: every checkpoint and the log's numbers,
    relabelled as seed 0 (o is seed 1), claiming the initial weights seed 0 gives."""
    theirs = read(o)
    ev = read(p)
    mine_init = ev[0]["init_weights_sha256"]
    ev = [dict(e) for e in theirs]
    ev[0] = {**ev[0], "config": {**ev[0]["config"], "train": {**ev[0]["config"]["train"], "seed": 0}}}
    ev[0]["config_hash"] = config_hash(ev[0]["config"])
    if claim_own_init:
        ev[0]["init_weights_sha256"] = mine_init  # what seed 0 does give: the forger can compute it
    tensors = {s: tensors_at(o, s) for s in range(1000, 8001, 1000)}
    # one ulp on one weight, so the final weights are not byte-identical to seed 1's
    w = tensors[8000]["model/linear.bias"].copy()
    w[0] = np.nextafter(w[0], np.float32(1))
    tensors[8000] = {**tensors[8000], "model/linear.bias": w}
    shutil.copy(os.path.join(o, "config.yaml"), os.path.join(p, "config.yaml"))
    with open(os.path.join(p, "config.yaml")) as f:
        text = f.read()
    with open(os.path.join(p, "config.yaml"), "w") as f:
        f.write(text.replace("seed: 1\n", "seed: 0\n"))
    forge(p, ev, tensors)


def clone_keeping_its_initial_weights_claim(p, o):
    clone_another_seed(p, o, claim_own_init=False)


def non_float32_weights(p, o):
    t = tensors_at(p, 8000)
    t = {k: (v.astype(np.float64) if k.startswith("model/") else v) for k, v in t.items()}
    forge(p, read(p), {8000: t})


CASES = [
    (edit_final_metric, "hash chain broken", "log"),
    (edit_run_end_metric, "results contradict each other", "log"),
    (delete_a_line, "a line was removed", "log"),
    (swap_two_lines, "lines reordered", "log"),
    (duplicate_an_evaluation, "a duplicated line", "log"),
    (duplicate_an_evaluation_rechained, "steps go backwards or repeat", "log"),
    (change_a_target, "targets differ from the registered ones: test_acc paper_value 20.0 (registered 32.0)", "log"),
    (widen_a_tolerance, "test_acc tolerance 50.0", "log"),
    (change_the_eval_permutation, "evaluation data 'test' differ from the registered protocol", "log"),
    (shrink_the_eval_split, "500 samples", "log"),
    (change_the_protocol_in_config, "data.shuffle_seq=True (registered False)", "log"),
    (edit_config_without_its_hash, "config_hash does not match the logged config", "log"),
    (edit_config_yaml_alone, "duplicate key 'model'", "log"),
    (change_the_metric_definition, "metric definitions differ", "log"),
    (change_the_log_format, "unknown log format 'repro-log/1'", "log"),
    (change_the_status, "ended with status 'interrupted'", "log"),
    (truncate_the_log, "the run did not finish", "log"),
    (truncate_mid_line, "is incomplete (no newline)", "log"),
    (time_goes_backwards, "time goes backwards", "log"),
    (steps_go_backwards, "steps go backwards", "log"),
    (drop_the_checkpoint_events, "missing required event: no checkpoint", "log"),
    (append_after_run_end, "does not end with run_end", "log"),
    (relabel_the_experiment, "evaluation data 'test' differ", "log"),
    (replace_the_checkpoint, "is not the checkpoint the log names (sha256 differs)", "log"),
    (replace_the_checkpoint_and_its_logged_hash, "its final weights are identical to those of", "log"),
    (delete_the_final_checkpoint, "checkpoint not found", "log"),
    (delete_an_audit_checkpoint, "step-00003000.safetensors", "log"),
    (point_the_checkpoint_outside, "is logged as '../seed1/", "log"),
    (checkpoint_as_a_symlink_outside, "step-00008000.safetensors resolves to", "log"),
    (log_as_a_symlink, "events.jsonl resolves to", "log"),
    (forge_a_new_chain_with_a_fake_metric, "the log before it was rewritten", "log"),
    (impossible_accuracy, "cannot be: 31.55 is not k/1000", "log"),
    (non_float32_weights, "dtype float64 vs model float32", "recompute"),
    (forge_chain_and_checkpoint_metadata, "does not give the logged metrics (test_acc logged 33.1, recomputed 31.5",
     "recompute"),
    (header_claims_a_gpu_for_slack, "does not give the logged metrics (test_acc logged 31.6", "recompute"),
    (claim_an_unknown_mkl_path, "the header's env.mkl_path: MKL code path 'avx512' is not one this harness knows",
     "recompute"),
    (claim_the_other_mkl_path, "replay 0->1000: re-training", "replay"),
    (fine_tune_on_the_test_split, "replay 7000->8000: re-training this segment with the registered recipe does not "
                                  "give the logged checkpoint", "replay"),
    (train_longer_than_registered, "replay 7000->8000: re-training", "replay"),
    (short_run_relabelled_as_full, "replay 7000->8000: re-training", "replay"),
    (clone_another_seed, "replay 0->1000: re-training", "replay"),
    (clone_keeping_its_initial_weights_claim,
     "replay 0->1000: the initial weights its seed gives are not the ones the log names", "replay"),
]


# MKL's two paths are one on a CPU without AVX2 and FMA (repro.machine.use_mkl_path): nothing to tell apart there
NO_AVX2 = pytest.mark.skipif(not machine.takes_avx2(),
                             reason="this CPU has no AVX2 and FMA: MKL's two code paths are the same here")


@pytest.mark.parametrize("tamper, reason, what", [
    pytest.param(*c, marks=(() if c[2] == "log" else (pytest.mark.slow,))
                 + ((NO_AVX2,) if c[0] is claim_the_other_mkl_path else ())) for c in CASES],
    ids=[c[0].__name__ for c in CASES])
def test_tampering_is_rejected_with_its_reason(request, tmp_path, tamper, reason, what):
    # the log checks need no replay, so the shipped runs serve on any CPU
    genuine = request.getfixturevalue("shipped" if what == "log" else "genuine")
    p = copy(genuine[0], tmp_path / "run")
    tamper(p, genuine[1])
    others = [genuine[1]] if tamper is replace_the_checkpoint_and_its_logged_hash else []
    if what != "log":
        assert problems(p, others) == [], "the forgery should pass the log checks"
    found = problems(p, others, recompute=what != "log", replay=2 if what == "replay" else 0)
    assert any(reason in x for x in found), found
    if what == "replay":  # and it passes --recompute: no problem but the replay's (one audit, not two)
        assert all(x.startswith("replay ") for x in found), found
    assert all("\n" not in x for x in found)  # one line each


@pytest.mark.slow
def test_the_forgeries_move_the_number_they_claim(genuine, tmp_path):
    """The replay-only forgeries are real: fine-tuning on the test split raises the
    test accuracy verify would otherwise accept."""
    p = copy(genuine[0], tmp_path / "run")
    fine_tune_on_the_test_split(p, None)
    assert read(p)[-1]["metrics"]["test_acc"] > read(genuine[0])[-1]["metrics"]["test_acc"]


def test_clones_are_caught_from_the_logs_alone_when_weights_are_copied(shipped, tmp_path, capsys):
    a = copy(shipped[0], tmp_path / "a")
    b = copy(shipped[0], tmp_path / "b")  # the same run twice: same seed, same checkpoint
    code, out, _ = cli(verify.main, [a, b, "--json"], capsys)
    report = json.loads(out)
    assert code == 1
    assert all(any("identical to those of" in x for x in r["problems"]) for r in report["runs"])
    # relabel the copy's seed consistently (header, config, hash, checkpoints resealed): the
    # files differ, the weights do not
    ev = read(b)
    ev[0]["config"]["train"]["seed"] = 5
    ev[0]["config_hash"] = config_hash(ev[0]["config"])
    forge(b, ev)
    with open(os.path.join(b, "config.yaml")) as f:
        text = f.read()
    with open(os.path.join(b, "config.yaml"), "w") as f:
        f.write(text.replace("seed: 0\n", "seed: 5\n"))
    code, out, _ = cli(verify.main, [a, b, "--json"], capsys)
    report = json.loads(out)
    assert code == 1
    assert all(any("initial weights (as logged) are identical" in x for x in r["problems"]) for r in report["runs"])
    assert all(any("final weights are identical" in x for x in r["problems"]) for r in report["runs"])


def test_one_bad_run_never_stops_the_others(shipped, tmp_path, capsys):
    good = [copy(g, tmp_path / f"seed{i}") for i, g in enumerate(shipped)]
    with open(os.path.join(good[2], "events.jsonl"), "a") as f:
        f.write('{"a": ' * 100_000 + "\n")
    code, out, err = cli(verify.main, [str(tmp_path), "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and "Traceback" not in err
    bad = [r for r in report["runs"] if r["problems"]]
    assert [r["path"] for r in bad] == [good[2]] and "nested deeper than" in bad[0]["problems"][0]
    assert "seed(s) 2 have no run that counts" in report["targets"][0]["why"]


def test_corpus_is_large_and_distinct():
    assert len(CASES) >= 30
    # every forgery the logs or --recompute catch has its own reason; the replay audit
    # catches different forgeries for the one reason that matters: the recipe does not
    # give those weights
    caught_early = [c[1] for c in CASES if c[2] != "replay"]
    assert len(set(caught_early)) == len(caught_early)
