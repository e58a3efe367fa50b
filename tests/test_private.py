"""The private evaluation (issue 23): a split the submitter never had, scored by the
judge from the outputs of the submission's own model, exposes a model fitted to the
public test split, whatever its code does, while honest runs agree.

The dishonest runs are made with their dishonest code, so recompute and replay
(which run that same code) pass; only the private check refuses them."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import plugin_tinycell
import pytest
from conftest import REPO, own_plugin_folders
from test_tamper import evaluate, forge, read, set_metric

from repro import registry, train
from repro.boundary.sandbox import Sandbox
from repro.errors import ReproError, run_cli
from repro.judge import private, verdict
from repro.registry import get_paper
from repro.run import checkpoint, rundir

SEED = 9001  # the maintainers' private seed in these tests
N = 4000
# a bigger cell than the plugin's own, registered in its YAML, so that fitting the test split shows
BIG = {"steps: 300": "steps: 2000", "eval_every: 100": "eval_every: 1000", "checkpoint_every: 100": "checkpoint_every: 1000",
       "audit_every: 100": "audit_every: 1000"}

WITH_TEST = '''
    def build_data(self, cfg):  # the test split inside the training data
        import numpy as np
        from repro.papers.mnist1d.data import generate
        d = generate(42, False)
        x = np.concatenate([d["x"], d["x_test"]]).astype("float32")
        y = np.concatenate([d["y"], d["y_test"]]).astype("int64")
        return Data(train=(x, y), eval={"test": (d["x_test"].astype("float32"), d["y_test"].astype("int64"))})
'''
ONLY_TEST = '''
    def build_data(self, cfg):  # trained on the test labels alone: a memorised answer sheet
        from repro.papers.mnist1d.data import generate
        d = generate(42, False)
        test = (d["x_test"].astype("float32"), d["y_test"].astype("int64"))
        return Data(train=test, eval={"test": test})
'''


def _use(plugin):
    """Register this plugin folder alone (the three plugins share the package name tinycell)."""
    import sys
    for name in [m for m in sys.modules if m == "tinycell" or m.startswith("tinycell.")]:
        del sys.modules[name]
    os.environ.pop(registry.ENV, None)
    registry.use_folders([plugin])


def _plugin(folder, build_data=None):
    plugin = plugin_tinycell.write(folder)
    config = os.path.join(plugin, "configs", "mlp.yaml")
    text = open(config).read()
    for old, new in BIG.items():
        text = text.replace(old, new, 1)
    with open(config, "w") as f:
        f.write("model:\n  hidden: 256\n" + text)
    if build_data:
        path = os.path.join(plugin, "__init__.py")
        text = open(path).read()
        start = text.index("    def build_data(self, cfg):")
        end = text.index("PAPER = TinyCell()")
        with open(path, "w") as f:
            f.write(text[:start] + build_data.lstrip("\n") + "\n\n" + text[end:])
    return plugin


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """{kind: (plugin, run dir)} for an honest run and the two dishonest plugins' runs."""
    root = tmp_path_factory.mktemp("private")
    out = {}
    with own_plugin_folders():
        for kind, code in (("honest", None), ("with_test", WITH_TEST), ("only_test", ONLY_TEST)):
            plugin = _plugin(str(root / kind / "tinycell"), code)
            _use(plugin)
            run = str(root / kind / "run")
            with pytest.raises(SystemExit) as e:
                run_cli(train.main, ["--paper", "tinycell", "--seed", "0", "--out", run])
            assert e.value.code == 0
            out[kind] = (plugin, run)
    return out


def _judged(plugin, run):
    _use(plugin)
    spec = private.PrivateEval({"fresh": {"n": N, "source": "mnist1d/mlp"}}, SEED)
    options = verdict.Options(recompute=True, replay="all", challenge="x", private={("tinycell", "mlp"): spec})
    _, runs, _ = verdict.verify([run], options)
    return runs[0]


@pytest.mark.slow
def test_an_honest_run_agrees_with_the_private_split(made, plugin_env):
    r = _judged(*made["honest"])
    assert r.problems == [], r.problems
    assert r.private["agrees"] and r.private["n"] == N and abs(r.private["public"] - r.private["private"]) < 5
    print(f"honest: public {r.private['public']:.2f}, private {r.private['private']:.2f}, z {r.private['z']:.1f}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["with_test", "only_test"])
def test_a_model_fitted_to_the_test_split_is_refused_by_the_private_check_alone(made, plugin_env, kind):
    r = _judged(*made[kind])
    assert len(r.problems) == 1 and r.problems[0].startswith("private evaluation: the model does much better on "
                                                              "the public test split"), r.problems
    assert all(s["exact"] for s in r.replayed) and r.recomputed["test_acc"] == r.metrics["test_acc"]
    assert r.private["public"] - r.private["private"] > 3 and not r.private["agrees"]
    print(f"{kind}: public {r.private['public']:.2f}, private {r.private['private']:.2f}, z {r.private['z']:.1f}")


@pytest.mark.slow
def test_fine_tuning_on_the_test_split_is_refused_by_the_private_check(made, plugin_env, tmp_path):
    """A few hundred steps on the test split after training; the log re-chained and the final
    checkpoint resealed with the metrics it gives. The private check refuses it, replay or not."""
    import paddle
    plugin, honest = made["honest"]
    _use(plugin)
    forged = str(tmp_path / "forged")
    shutil.copytree(honest, forged)
    r = rundir.open_run(get_paper, forged)
    model, _, _, _ = rundir.load_trained(r)
    model.train()
    opt = paddle.optimizer.Adam(learning_rate=1e-3, parameters=model.parameters())
    x, y = r.paper.build_data(r.cfg).eval["test"]
    for step in range(300):
        i = (step * 100) % len(x)
        loss = r.paper.loss(model(paddle.to_tensor(x[i:i + 100])), paddle.to_tensor(y[i:i + 100]))
        loss.backward()
        opt.step()
        opt.clear_grad()
    final = {f"model/{k}": v.numpy() for k, v in model.state_dict().items()}
    events = read(forged)
    for key, value in evaluate(forged, final).items():
        set_metric(events, key, value)
    forge(forged, events, {r.cfg.train.steps: final})
    spec = private.PrivateEval({"fresh": {"n": N, "source": "mnist1d/mlp"}}, SEED)
    _, runs, _ = verdict.verify([forged], verdict.Options(recompute=True, private={("tinycell", "mlp"): spec}))
    assert [p.split(":")[0] for p in runs[0].problems] == ["private evaluation"], runs[0].problems
    p = runs[0].private
    print(f"fine-tuned: public {p['public']:.2f}, private {p['private']:.2f}, z {p['z']:.1f}")


def test_the_agreement_rule():
    assert private.agreement(53.0, 1000, 52.0, 4000)[0]          # within the sampling error
    assert not private.agreement(63.0, 1000, 53.0, 4000)[0]      # ten points: about 5.8 standard errors
    assert private.agreement(50.0, 1000, 60.0, 4000)[0]          # better on unseen data is never refused
    assert not private.agreement(100.0, 1000, 90.0, 4000)[0] and private.agreement(100.0, 1000, 100.0, 4000)[0]
    ok, z = private.agreement(60.0, 1000, 55.0, 4000)  # 2.85 standard errors: within 99.9%
    assert ok and z == pytest.approx(0.05 / np.sqrt(0.56 * 0.44 * (1 / 1000 + 1 / 4000)), rel=1e-9)
    ok, z = private.agreement(61.0, 1000, 55.0, 4000)  # 3.42: refused
    assert not ok and z == pytest.approx(0.06 / np.sqrt(0.562 * 0.438 * (1 / 1000 + 1 / 4000)), rel=1e-9)


def test_the_private_seed_comes_from_the_maintainers_only(monkeypatch):
    monkeypatch.delenv(private.SEED_ENV, raising=False)
    with pytest.raises(ReproError, match="--private-seed"):
        private.PrivateEval({"fresh": {"n": 10, "source": "mnist1d/mlp"}}, private.seed_from(None))
    monkeypatch.setenv(private.SEED_ENV, "77")
    assert private.seed_from(None) == 77 and private.seed_from("12") == 12
    for bad in ("-1", "x", "1" * 19):
        with pytest.raises(ReproError, match="private seed"):
            private.seed_from(bad)


@pytest.mark.slow  # it trains or audits for more than a few seconds
def test_every_seed_the_readmes_recipe_makes_draws_a_split():
    """The README's recipe, run as written, gives a secret that the private evaluation takes: one
    mapping in the judge (private.generator_seed) brings it into every generator's range; the same
    secret draws the same split, another secret another one."""
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = readme.split("### Private evaluation")[1].split("\n### ")[0]
    (code,) = re.findall(r'`python -c "([^"`]+)"`', section)
    made = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    secret = private.seed_from(made.stdout)
    sandbox = Sandbox("auto")
    spec = {"fresh": {"n": 30, "source": "mnist1d/mlp"}}
    x, y = private.PrivateEval(spec, secret).data(sandbox)
    again, _ = private.PrivateEval(spec, secret).data(sandbox)
    other, _ = private.PrivateEval(spec, private.MAX_SECRET - 1).data(sandbox)  # the largest the recipe makes
    assert x.shape == (30, 40) and len(y) == 30 and np.array_equal(x, again) and not np.array_equal(x, other)
    lo, hi = private.GENERATOR_SEEDS
    assert hi <= 2**31 and all(lo <= private.generator_seed(s) < hi for s in (0, 42, secret, private.MAX_SECRET - 1))
    assert private.generator_seed(secret) == private.generator_seed(int(made.stdout))


@pytest.mark.parametrize("bad", [-1, private.MAX_SECRET, 2.5, "12", True, None])
def test_a_secret_the_generator_cannot_take_is_one_line(bad):
    with pytest.raises(ReproError, match="the private seed must be an integer between 0 and 10\\*\\*18 - 1") as e:
        private.PrivateEval({"fresh": {"n": 10, "source": "mnist1d/mlp"}}, bad if bad is not None else -5)
    assert "\n" not in str(e.value)
    for text in ("1" * 19, "²", "1e5", "0x10", " ", "١٢"):
        with pytest.raises(ReproError, match="at most 18 digits"):
            private.seed_from(text)


def test_a_private_file_must_be_the_named_one(tmp_path):
    from repro.boundary import exchange
    path = str(tmp_path / "private.safetensors")
    exchange.write_arrays(path, {"x": np.zeros((5, 40), np.float32), "y": np.arange(5, dtype=np.int64)})
    sha = checkpoint.sha256_file(path)
    x, y = private.PrivateEval({"file": {"path": path, "sha256": sha}}).data(None)
    assert x.shape == (5, 40) and list(y) == [0, 1, 2, 3, 4]
    with pytest.raises(ReproError, match="does not have the sha256"):
        private.PrivateEval({"file": {"path": path, "sha256": "0" * 64}}).data(None)


@pytest.mark.slow
def test_a_contest_can_pin_the_training_data(made, tmp_path):
    """train_data: {n, sha256}: the run header's training split must be the pinned one (logs alone)."""
    import yaml
    from contest_repo import CONTEST

    from repro.judge.contest import protocol_of, read_contest
    _, run = made["honest"]
    head = read(run)[0]
    for pin, ok in ((head["data"]["train"], True), ({"n": 4000, "sha256": "0" * 64}, False)):
        data = yaml.safe_load(CONTEST.format(value=10.0))
        data["papers"][0].update({"train_data": pin, "protocol": {"train.steps": 2000}})
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(data))
        _, runs, _ = verdict.verify([run], verdict.Options(protocol_of=protocol_of(read_contest(str(path)))))
        pinned = [p for p in runs[0].problems if "training data differ from the pinned ones" in p]
        assert (pinned == []) == ok, runs[0].problems
