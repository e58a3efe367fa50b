"""Hostile input: logs, configs and overrides a stranger wrote, a full disk, a
read-only folder. Each gives one line naming the problem (for verify: a run
that does not count, with its reason) and never a traceback, a hang, or an
abort of the other runs."""
import json
import os
import random
import resource
import shutil
import subprocess
import time

import pytest
from conftest import REPO, cli

from repro import train, verify

SHIPPED = os.path.join(REPO, "logs", "mnist1d", "logreg", "seed0")


def verify_json(paths, capsys):
    code, out, err = cli(verify.main, [*map(str, paths), "--json"], capsys)
    assert code in (0, 1, 2) and "Traceback" not in err, err
    return code, (json.loads(out) if code != 2 else None), err


@pytest.fixture
def run(tmp_path):
    path = str(tmp_path / "run")
    shutil.copytree(SHIPPED, path, ignore=shutil.ignore_patterns("vdl"))
    return path


def lines_of(run):
    with open(os.path.join(run, "events.jsonl")) as f:
        return f.read().splitlines()


def put_line(run, i, text):
    lines = lines_of(run)
    lines[i] = text
    with open(os.path.join(run, "events.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")


HEADER_EDITS = [
    ("deep nesting", lambda h: h.replace('"provenance": {}', '"provenance": ' + "[" * 5000 + "]" * 5000),
     "nested deeper than"),
    ("a 5,000-digit integer", lambda h: h.replace('"seq": 0', '"seq": ' + "7" * 5000), "an integer of 5000 digits"),
    ("a config of the wrong type", lambda h: h.replace('"config": {', '"config": [{', 1).replace(
        ', "config_hash"', '], "config_hash"', 1), "key 'config' must be an object"),
    ("duplicate keys", lambda h: h.replace('"lite": false', '"lite": false, "lite": true'), "duplicate key 'lite'"),
    ("a NaN token", lambda h: h.replace('"seq": 0', '"seq": NaN'), "non-standard token NaN"),
    ("a huge float", lambda h: h.replace('"seq": 0', '"seq": 1e999'), "a number out of range"),
    ("an unknown key", lambda h: h.replace('"lite": false', '"lite": false, "bonus": 1'), "unknown key 'bonus'"),
    ("a lone surrogate", lambda h: h.replace('"title": "', '"title": "\\ud800'), None),
]


@pytest.mark.parametrize("what, edit, reason", HEADER_EDITS, ids=[e[0] for e in HEADER_EDITS])
def test_hostile_header(run, capsys, what, edit, reason):
    put_line(run, 0, edit(lines_of(run)[0]))
    code, report, _ = verify_json([run], capsys)
    (r,) = report["runs"]
    assert code == 1 and len(r["problems"]) == 1 and "\n" not in r["problems"][0]
    assert reason is None or reason in r["problems"][0], r["problems"]


@pytest.mark.parametrize("what, line, reason", [
    ("a list where a metric belongs", lambda ev: {**ev, "metrics": {"test_acc": [31.5]}} if ev["kind"] == "eval" else None,
     "key 'metrics' must be an object of metric numbers"),
    ("an unknown event kind", lambda ev: {**ev, "kind": "bonus", "payload": "x"} if ev["kind"] == "train" else None,
     "unknown event kind 'bonus'"),
    ("a bool where a step belongs", lambda ev: {**ev, "step": True} if ev["kind"] == "train" else None,
     "key 'step' must be a non-negative integer"),
    ("a negative step", lambda ev: {**ev, "step": -5} if ev["kind"] == "checkpoint" else None,
     "key 'step' must be a non-negative integer"),
    ("a path that is not a string", lambda ev: {**ev, "path": ["a"]} if ev["kind"] == "checkpoint" else None,
     "key 'path' must be a string"),
])
def test_hostile_event(run, capsys, what, line, reason):
    lines = lines_of(run)
    for i, text in enumerate(lines):
        changed = line(json.loads(text))
        if changed is not None:
            put_line(run, i, json.dumps(changed))
            break
    code, report, _ = verify_json([run], capsys)
    (r,) = report["runs"]
    assert code == 1 and any(reason in p for p in r["problems"]), r["problems"]


def test_a_huge_line_is_refused_in_bounded_memory(run, capsys):
    """A 1 GB line (a sparse file: no disk used) is refused after reading a bounded part of it."""
    path = os.path.join(run, "events.jsonl")
    with open(path, "r+b") as f:
        f.seek(0, 2)
        f.write(b'{"seq": 99, "kind": "bonus", "x": "')
        f.truncate(1 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    code, report, _ = verify_json([run], capsys)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB
    assert code == 1 and "over the 67,108,864 such a file may have" in report["runs"][0]["problems"][0]
    assert grown < 200 * 1024 and time.perf_counter() - t0 < 30
    # within the file limit, one long line is refused by its own limit
    with open(path, "r+b") as f:
        f.truncate(40 << 20)
    code, report, _ = verify_json([run], capsys)
    assert "is longer than 1,048,576 bytes" in report["runs"][0]["problems"][0]


def test_hostile_config_yaml(run, capsys):
    cases = {
        "alias": "a: &x [1, 2]\nb: *x\n",
        "billion laughs": "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n",
        "huge int": "train:\n  steps: " + "9" * 5000 + "\n",
        "deep": "a: " + "[" * 200 + "]" * 200 + "\n",
        "python object": "a: !!python/object/apply:os.system ['touch /tmp/repro-yaml-ran']\n",
        "binary": "\xff\xfe\x00",
    }
    for name, text in cases.items():
        with open(os.path.join(run, "config.yaml"), "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        code, report, _ = verify_json([run], capsys)
        (r,) = report["runs"]
        assert code == 1 and len(r["problems"]) == 1 and "config" in r["problems"][0], (name, r["problems"])
    assert not os.path.exists("/tmp/repro-yaml-ran")


def test_fuzzed_overrides_never_crash(capsys):
    """200 -o overrides, from plausible to hostile: each is accepted or refused with one line."""
    rng = random.Random(7)
    keys = ["train.lr", "train.steps", "train.seed", "train.batch_size", "train.optimizer", "train.lr_milestones",
            "train.amp", "train.amp.level", "model.arch", "model", "data.shuffle_seq", "train", "nope.x", "train.lr.x",
            "", "train..lr", ".", "train.audit_every", "train.eval_every"]
    values = ["0.01", "-1", "0", "1e999", "-1e999", ".nan", ".inf", "9" * 5000, "[1, 2]", "[[[[[[]]]]]]", "{a: 1}",
              "&x [1]", "*x", "!!python/object/apply:os.system [ls]", "yes", "null", "~", "'", "\"", "{", "adam",
              "cnn", "true", "2**63", str(2 ** 63), "0x10", "1_000", "\x00", "é", "a: b: c", "- 1\n- 2",
              "[" * 100 + "]" * 100, "9223372036854775807", "12345678901234567890123456789012345678901234567890"]
    seen_ok = seen_refused = 0
    for i in range(200):
        text = f"{rng.choice(keys)}={rng.choice(values)}" if i % 20 else rng.choice(values)
        t0 = time.perf_counter()
        code, out, err = cli(train.main, ["--paper", "mnist1d", "--lite", "-o", text, "--print-config"], capsys)
        assert time.perf_counter() - t0 < 60
        assert code in (0, 2) and "Traceback" not in err, (text, err)
        if code == 2:
            assert err.count("\n") == 1 and err.startswith("error: "), (text, err)
            seen_refused += 1
        else:
            seen_ok += 1
    assert seen_ok > 5 and seen_refused > 100


def _mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(max(1, len(data)))
        if op == 0 and data:
            data[i] = rng.randrange(256)
        elif op == 1:
            del data[i:i + rng.randint(1, 50)]
        elif op == 2:
            data[i:i] = rng.choice([b"[", b"{", b'"', b"\n", b"NaN", b"-", b"9" * 5000, b"\\u0000", b"\xff",
                                    b"&a", b"*a", b"\n\n", b": {", b"}", b"]" * 300])
        elif op == 3:
            j = rng.randrange(max(1, len(data)))
            data[i:i] = data[j:j + rng.randint(1, 200)]
        elif op == 4:
            data = data[:i]
        else:
            data = data.replace(b"1", b"2", 1)
    return bytes(data)


@pytest.mark.parametrize("target", ["config.yaml", "events.jsonl"])
def test_100_mutated_files_never_crash_verify(run, capsys, target):
    rng = random.Random(11 if target == "config.yaml" else 13)
    path = os.path.join(run, target)
    original = open(path, "rb").read()
    outcomes = set()
    for _ in range(100):
        with open(path, "wb") as f:
            f.write(_mutate(rng, original))
        t0 = time.perf_counter()
        code, report, _ = verify_json([run], capsys)
        assert time.perf_counter() - t0 < 60
        problems = report["runs"][0]["problems"] if report else []
        assert all("\n" not in p for p in problems)
        outcomes.add(code)
    assert 1 in outcomes


def test_unwritable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (str(blocker / "run"), "/proc/repro-run"):
        code, _, err = cli(train.main, ["--paper", "mnist1d", "--lite", "--out", out], capsys)
        assert code == 2 and err.count("\n") == 1 and "cannot write there" in err, err


def test_a_full_disk_ends_the_run_with_one_line_and_a_run_end(tmp_path, capsys, monkeypatch):
    import errno

    from repro.run import checkpoint
    real = checkpoint.save
    calls = {"n": 0}

    def save(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", "checkpoints/step-00000020.safetensors")
        return real(*a, **k)

    monkeypatch.setattr(checkpoint, "save", save)
    out = str(tmp_path / "run")
    code, _, err = cli(train.main, ["--paper", "mnist1d", "--lite", "--out", out, "-o", "train.visualdl=false"], capsys)
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err and "--resume" in err
    from conftest import events
    end = events(out)[-1]
    assert end["kind"] == "run_end" and end["status"] == "failed"
    monkeypatch.setattr(checkpoint, "save", real)
    code, _, err = cli(train.main, ["--resume", out], capsys)
    assert code == 0, err


def _tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here to fill it ({p.stderr.decode().strip()[:80]})")


def test_a_really_full_disk(tmp_path, capsys):
    disk = str(tmp_path / "disk")
    _tmpfs(disk, "150k")
    try:
        out = os.path.join(disk, "run")
        code, _, err = cli(train.main, ["--paper", "mnist1d", "--exp", "mlp", "--lite", "--out", out,
                                        "-o", "train.visualdl=false"], capsys)
        assert code == 2 and err.count("\n") == 1 and "No space left on device" in err, err
    finally:
        subprocess.run(["umount", "-l", disk])


def test_a_folder_made_read_only_under_a_run(tmp_path, capsys):
    disk = str(tmp_path / "disk")
    _tmpfs(disk, "50m")
    try:
        out = os.path.join(disk, "run")
        code, _, _ = cli(train.main, ["--paper", "mnist1d", "--lite", "--out", out, "-o", "train.visualdl=false"],
                         capsys)
        assert code == 0
        with open(os.path.join(out, "events.jsonl")) as f:
            lines = f.readlines()
        with open(os.path.join(out, "events.jsonl"), "w") as f:
            f.writelines(lines[:-1])  # interrupted: resume would write
        subprocess.run(["mount", "-o", "remount,ro", disk], check=True)
        code, _, err = cli(train.main, ["--resume", out], capsys)
        assert code == 2 and err.count("\n") == 1 and "Read-only file system" in err, err
    finally:
        subprocess.run(["umount", "-l", disk])
