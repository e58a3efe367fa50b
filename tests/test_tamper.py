"""The tamper corpus: manipulations of a genuine run, each rejected with its own reason.

The genuine run is a full-protocol MNIST-1D logistic-regression run (8,000
steps, a few seconds), trained here; it passes every check, --recompute
included. Each case changes it the way a cheater might and names the reason
verify must give.
"""
import hashlib
import json
import os
import shutil

import pytest

from conftest import cli
from repro import verify
from repro.compliance import check_run, load_run, recompute
from repro.errors import ReproError
from repro.runlog import GENESIS, line_hash

CKPT = "checkpoint.safetensors"


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    from repro import train
    from repro.errors import run_cli

    root = tmp_path_factory.mktemp("genuine")
    paths = []
    for seed in (0, 1):
        out = str(root / f"seed{seed}")
        with pytest.raises(SystemExit) as e:
            run_cli(train.main, ["--paper", "mnist1d", "--exp", "logreg", "--seed", str(seed), "--out", out,
                                 "-o", "train.visualdl=false", "-o", "train.log_every=1000"])
        assert e.value.code == 0
        paths.append(out)
    return paths


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


def rechain(path, events):
    """What a forger with the format spec does: renumber and re-hash every line."""
    prev = GENESIS
    with open(os.path.join(path, "events.jsonl"), "w") as f:
        for i, ev in enumerate(events):
            ev = {**ev, "seq": i, "prev": prev}
            line = json.dumps(ev)
            f.write(line + "\n")
            prev = line_hash(line)


def index(events, kind, last=True):
    idx = [i for i, e in enumerate(events) if e["kind"] == kind]
    return idx[-1] if last else idx[0]


def problems(path, with_recompute=False):
    run = check_run(load_run(path))
    if with_recompute and not run.problems:
        run.problems += recompute(run)
    return run.problems


def test_the_genuine_run_passes_everything(genuine):
    for path in genuine:
        assert problems(path, with_recompute=True) == []


# ---- cases: (name, function(path, other_run_path), expected reason, needs --recompute)

def edit_final_metric(p, o):
    ev = read(p)
    ev[index(ev, "eval")]["metrics"]["test_acc"] = 99.9
    write_raw(p, ev)


def edit_run_end_metric(p, o):
    ev = read(p)
    ev[-1]["metrics"]["test_acc"] = 99.9
    write_raw(p, ev)


def delete_a_line(p, o):
    ev = read(p)
    del ev[3]
    write_raw(p, ev)


def swap_two_lines(p, o):
    ev = read(p)
    ev[3], ev[4] = ev[4], ev[3]
    write_raw(p, ev)


def duplicate_an_evaluation(p, o):
    ev = read(p)
    i = index(ev, "eval")
    ev.insert(i + 1, ev[i])
    write_raw(p, ev)


def duplicate_an_evaluation_rechained(p, o):
    ev = read(p)
    i = index(ev, "eval", last=False)
    ev.insert(i + 1, dict(ev[i]))
    rechain(p, ev)


def change_a_target(p, o):
    ev = read(p)
    ev[0]["targets"][0]["paper_value"] = 20.0
    rechain(p, ev)


def widen_a_tolerance(p, o):
    ev = read(p)
    ev[0]["targets"][0]["tolerance"] = 50.0
    rechain(p, ev)


def change_the_eval_permutation(p, o):
    ev = read(p)
    ev[0]["data"]["test"]["sha256"] = hashlib.sha256(b"another permutation").hexdigest()
    rechain(p, ev)


def shrink_the_eval_split(p, o):
    ev = read(p)
    ev[0]["data"]["test"]["n"] = 500
    rechain(p, ev)


def change_the_protocol_in_config(p, o):
    from repro.config import config_hash
    ev = read(p)
    ev[0]["config"]["data"]["shuffle_seq"] = True
    ev[0]["config_hash"] = config_hash(ev[0]["config"])
    rechain(p, ev)


def edit_config_without_its_hash(p, o):
    ev = read(p)
    ev[0]["config"]["train"]["lr"] = 0.02
    rechain(p, ev)


def change_the_metric_definition(p, o):
    ev = read(p)
    ev[0]["metrics"]["acc"] = "metrics.lenient.TopFiveAccuracy"
    rechain(p, ev)


def change_the_log_format(p, o):
    ev = read(p)
    ev[0]["format"] = "repro-log/0"
    rechain(p, ev)


def change_the_status(p, o):
    ev = read(p)
    ev[-1]["status"] = "aborted"
    rechain(p, ev)


def truncate_the_log(p, o):
    ev = read(p)
    write_raw(p, ev[:-3])


def truncate_mid_line(p, o):
    path = os.path.join(p, "events.jsonl")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-40])


def time_goes_backwards(p, o):
    ev = read(p)
    ev[5]["time"] = ev[1]["time"] - 100
    rechain(p, ev)


def steps_go_backwards(p, o):
    ev = read(p)
    a, b = [i for i, e in enumerate(ev) if e["kind"] == "train"][1:3]
    ev[a]["step"], ev[b]["step"] = ev[b]["step"], ev[a]["step"]
    rechain(p, ev)


def drop_the_checkpoint_events(p, o):
    ev = [e for e in read(p) if e["kind"] != "checkpoint"]
    rechain(p, ev)


def append_after_run_end(p, o):
    ev = read(p)
    ev.append({**ev[index(ev, "eval")], "time": ev[-1]["time"] + 1})
    rechain(p, ev)


def relabel_the_experiment(p, o):
    ev = read(p)
    ev[0]["exp"] = "logreg_shuffled"
    rechain(p, ev)


def header_seed_differs_from_config(p, o):
    ev = read(p)
    ev[0]["seed"] = 7
    rechain(p, ev)


def replace_the_checkpoint(p, o):
    shutil.copy(os.path.join(o, CKPT), os.path.join(p, CKPT))


def replace_the_checkpoint_and_its_logged_hash(p, o):
    shutil.copy(os.path.join(o, CKPT), os.path.join(p, CKPT))
    ev = read(p)
    for e in ev:
        if e["kind"] == "checkpoint":
            e["sha256"] = hashlib.sha256(open(os.path.join(p, CKPT), "rb").read()).hexdigest()
    rechain(p, ev)


def delete_the_checkpoint(p, o):
    os.remove(os.path.join(p, CKPT))


def point_the_checkpoint_outside(p, o):
    ev = read(p)
    ev[index(ev, "checkpoint")]["path"] = "../seed1/checkpoint.safetensors"
    rechain(p, ev)


def forge_a_new_chain_with_a_fake_metric(p, o):
    ev = read(p)
    ev[index(ev, "eval")]["metrics"]["test_acc"] = 99.9
    ev[-1]["metrics"]["test_acc"] = 99.9
    rechain(p, ev)


def forge_chain_and_checkpoint_metadata(p, o):
    """The thorough forger: fake metric, re-chained log, and a checkpoint whose
    metadata points at the forged chain, with its new sha256 logged."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    forge_a_new_chain_with_a_fake_metric(p, o)
    lines = open(os.path.join(p, "events.jsonl")).read().splitlines()
    path = os.path.join(p, CKPT)
    with safe_open(path, framework="np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["log_head"] = line_hash(lines[int(meta["log_seq"]) - 1])
    save_file(tensors, path, metadata=meta)
    ev = [json.loads(line) for line in lines]
    ev[index(ev, "checkpoint")]["sha256"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    rechain(p, ev)


CASES = [
    (edit_final_metric, "hash chain broken", False),
    (edit_run_end_metric, "results contradict each other", False),
    (delete_a_line, "a line was removed", False),
    (swap_two_lines, "lines reordered", False),
    (duplicate_an_evaluation, "a duplicated line", False),
    (duplicate_an_evaluation_rechained, "steps go backwards or repeat", False),
    (change_a_target, "targets differ from the registered ones: test_acc paper_value 20.0 (registered 32.0)", False),
    (widen_a_tolerance, "test_acc tolerance 50.0", False),
    (change_the_eval_permutation, "evaluation data 'test' differ from the registered protocol", False),
    (shrink_the_eval_split, "500 samples", False),
    (change_the_protocol_in_config, "data.shuffle_seq=True (registered False)", False),
    (edit_config_without_its_hash, "config_hash does not match the logged config", False),
    (change_the_metric_definition, "metric definitions differ", False),
    (change_the_log_format, "unknown log format 'repro-log/0'", False),
    (change_the_status, "ended with status 'aborted'", False),
    (truncate_the_log, "the run did not finish", False),
    (time_goes_backwards, "time goes backwards", False),
    (steps_go_backwards, "steps go backwards", False),
    (drop_the_checkpoint_events, "missing required event: no checkpoint", False),
    (append_after_run_end, "does not end with run_end", False),
    (relabel_the_experiment, "evaluation data 'test' differ", False),
    (header_seed_differs_from_config, "header's seed 7 is not the config's train.seed", False),
    (replace_the_checkpoint, "is not the checkpoint the log names (sha256 differs)", True),
    (replace_the_checkpoint_and_its_logged_hash, "belongs to another run", True),
    (delete_the_checkpoint, "checkpoint.safetensors is missing", True),
    (point_the_checkpoint_outside, "is not a file in the run directory", True),
    (forge_a_new_chain_with_a_fake_metric, "the log before it was rewritten", True),
    (forge_chain_and_checkpoint_metadata, "does not give the logged metrics (test_acc logged 99.9, recomputed", True),
]


@pytest.mark.parametrize("tamper, reason, needs_recompute", CASES, ids=[c[0].__name__ for c in CASES])
def test_tampering_is_rejected_with_its_reason(genuine, tmp_path, tamper, reason, needs_recompute):
    p = copy(genuine[0], tmp_path / "run")
    tamper(p, genuine[1])
    if needs_recompute:
        assert problems(p) == [], "a checkpoint-only manipulation should pass the log checks"
    found = problems(p, with_recompute=needs_recompute)
    assert any(reason in x for x in found), found


def test_truncated_mid_line_is_unreadable_with_a_clear_reason(genuine, tmp_path):
    p = copy(genuine[0], tmp_path / "run")
    truncate_mid_line(p, None)
    with pytest.raises(ReproError, match="line .* is not JSON"):
        load_run(p)


def test_reused_seed_and_copied_runs_are_rejected(genuine, tmp_path, capsys):
    a = copy(genuine[0], tmp_path / "a")
    b = copy(genuine[0], tmp_path / "b")  # the same run twice: same seed, same checkpoint
    code, out, _ = cli(verify.main, [a, b, "--json"], capsys)
    report = json.loads(out)
    assert code == 1
    assert all(any("identical to that of" in x for x in r["problems"]) for r in report["runs"])

    # relabel the copy's seed consistently (header, config, config hash): the
    # log checks see two seeds, but the checkpoint is still the same file
    from repro.config import config_hash
    ev = read(b)
    ev[0]["seed"] = ev[0]["config"]["train"]["seed"] = 5
    ev[0]["config_hash"] = config_hash(ev[0]["config"])
    rechain(b, ev)
    code, out, _ = cli(verify.main, [a, b, "--json"], capsys)
    assert code == 1 and "a copied run" in out
    # and on its own, --recompute sees the checkpoint belongs to another config
    assert any("belongs to another run" in x for x in problems(b, with_recompute=True))


def test_corpus_is_large_and_distinct():
    assert len(CASES) + 2 >= 20
    assert len({c[1] for c in CASES}) == len(CASES)
