"""A full review in the sandbox (issues 22 and 23): a later team's plugin, trained with
code that behaves in training and cheats under review, tries to edit the earlier
team's logs and to leave a file outside its sandbox, and carries the public test
split's answers in its own code. The earlier team still wins with its log untouched;
the later one is refused, by the private evaluation for the answers it carried;
the judge (this process) never imports either plugin."""
import json
import os
import sys

import pytest
from conftest import cli
from contest_repo import CONTEST, commit_of, make_repo

from repro import review
from repro.boundary import sandbox
from repro.judge import ledger

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sandbox.available(), reason="bubblewrap (bwrap) is not installed or usable here")]

PRIVATE = CONTEST.replace("    source: the tiny contest\n",
                          "    source: the tiny contest\n    private_eval: {{fresh: {{n: 2000, source: mnist1d/mlp}}}}\n")

# the later team's plugin: an answer sheet for the public test split inside its own model (so its logs
# claim what recompute then finds), and, only inside a review's worker, attacks on the judge
HOSTILE = '''
import sys as _sys
if _sys.argv[0].endswith("worker.py"):
    import glob as _g, os as _o
    for _p in _g.glob({alpha_logs!r} + "/*/events.jsonl"):
        try:
            open(_p, "a").write('{{"forged": 1}}\\n')
        except OSError:
            pass
    try:
        open({marker!r}, "w").write("escaped")
    except OSError:
        pass
    # (claims written on every descriptor would break its own output stream, failing the run as
    # malformed: tests/test_sandbox.py has that; here the answer sheet must reach the private check)
'''
ANSWERS = '''
    def build_model(self, cfg):
        import numpy as np
        import paddle
        from repro.papers.mnist1d.data import generate
        d = generate(42, False)
        sheet = {row.astype("float32").tobytes(): int(y) for row, y in zip(d["x_test"], d["y_test"])}
        net = models.build(cfg.model.hidden)

        class Answers(paddle.nn.Layer):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x):
                out = self.net(x)
                if self.training:
                    return out
                rows = x.numpy()
                hit = [sheet.get(r.tobytes()) for r in rows]
                if all(h is None for h in hit):
                    return out
                onehot = np.array([np.eye(10, dtype="float32")[h] * 100 if h is not None else o
                                   for h, o in zip(hit, out.numpy())], dtype="float32")
                return paddle.to_tensor(onehot)
        return Answers()
'''


def _repo(path, hostile=None):
    def answers(plugin):  # the hostile code first, and a model that answers from the log it read
        init = os.path.join(plugin, "__init__.py")
        text = open(init).read()
        start, end = text.index("    def build_model(self, cfg):"), text.index("    def build_data(self, cfg):")
        text = text[:start] + ANSWERS.lstrip("\n") + "\n" + text[end:]
        with open(init, "w") as f:
            f.write(hostile + text)
    return make_repo(path, change=None if hostile is None else answers)


def test_a_later_hostile_team_cannot_touch_the_earlier_one_or_pass(tmp_path, capsys, monkeypatch):
    root = str(tmp_path)
    alpha, beta = os.path.join(root, "alpha"), os.path.join(root, "beta")
    marker = os.path.join(root, "escaped.txt")
    _repo(alpha)
    _repo(beta, HOSTILE.format(alpha_logs=os.path.join(alpha, "logs"), marker=marker))
    before = {p: open(os.path.join(alpha, "logs", p, "events.jsonl"), "rb").read() for p in ("seed0", "seed1")}
    contest = os.path.join(root, "contest.yaml")
    with open(contest, "w") as f:
        f.write(PRIVATE.format(value=30.0))
    subs = os.path.join(root, "subs.json")
    with open(subs, "w") as f:
        json.dump({"submissions": [
            {"team": "alpha", "paper": "tinycell", "repo": "alpha", "commit": commit_of(alpha),
             "time": "2027-01-05T10:00:00+08:00"},
            {"team": "beta", "paper": "tinycell", "repo": "beta", "commit": commit_of(beta),
             "time": "2027-01-06T10:00:00+08:00"}]}, f)
    monkeypatch.setenv("REPRO_PRIVATE_SEED", "424242")
    out = os.path.join(root, "review")
    code, stdout, err = cli(review.main, [contest, subs, "--out", out, "--challenge", "fixed"], capsys)
    assert code == 0, err
    data = json.load(open(os.path.join(out, "review.json")))
    a, b = data["submissions"]
    assert a["status"].startswith("REPRODUCED") and a["full_review"], ledger.reasons(a)
    assert not b["ok"] and not b["status"].startswith("REPRODUCED")
    reasons = " ".join(ledger.reasons(b))
    assert "fitted to the test split" in reasons, reasons
    # the answer sheet passes what runs the same code: recompute agrees with the log, every segment replays
    assert all(r["recomputed"]["test_acc"] == r["metrics"]["test_acc"] == 100.0 for r in b["runs"])
    assert all(s["exact"] for r in b["runs"] for s in r["replay"])
    assert all(r["private"]["private"] < 80 and not r["private"]["agrees"] for r in b["runs"])
    assert all(r["private"]["agrees"] for r in a["runs"])
    # nothing escaped the sandbox, and the judge never imported a submission's code
    after = {p: open(os.path.join(alpha, "logs", p, "events.jsonl"), "rb").read() for p in ("seed0", "seed1")}
    assert after == before and not os.path.exists(marker)
    imported = [m for m in list(sys.modules.values())
                if str(getattr(m, "__file__", "") or "").startswith((alpha + os.sep, beta + os.sep))]
    assert imported == []
    status = open(os.path.join(out, "status.md")).read()
    assert "100.00 / " in status and " disagree" in status
