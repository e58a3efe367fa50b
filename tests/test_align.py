"""The alignment toolkit: reprod_log-compatible dumps, comparison, conversion,
localisation and the MNIST-1D ladder against its PyTorch reference."""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import REPO, cli
from repro import machine
from repro.align import convert
from repro.align.__main__ import main as align_main
from repro.align.diff import ReprodLogger, compare, load
from repro.errors import ReproError
from repro.registry import get_paper

TORCH_REASON = "PyTorch is an optional test dependency (pip install torch==2.13.0)"


def dump(path, **arrays):
    log = ReprodLogger()
    for k, v in arrays.items():
        log.add(k, np.asarray(v))
    log.save(str(path))
    return str(path)


def test_dumps_are_reprod_log_format_both_ways(tmp_path):
    ours = dump(tmp_path / "a.npy", logits=np.arange(6.0).reshape(2, 3))
    # reprod_log's own loader: np.load(path, allow_pickle=True).tolist()
    theirs = np.load(ours, allow_pickle=True).tolist()
    np.testing.assert_array_equal(theirs["logits"], np.arange(6.0).reshape(2, 3))
    # and a dump written the way reprod_log writes it loads here
    np.save(tmp_path / "b.npy", {"loss": np.array([0.5], np.float32)})
    assert load(str(tmp_path / "b.npy"))["loss"].tolist() == [0.5]


def test_a_hostile_dump_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    np.save(tmp_path / "evil.npy", {"x": Evil()}, allow_pickle=True)
    with pytest.raises(ReproError, match="refusing to load"):
        load(str(tmp_path / "evil.npy"))
    assert not marker.exists()


def test_compare_methods_thresholds_and_mismatches():
    a = {"x": np.array([1.0, 2.0, 3.0]), "w": np.ones((2, 3)), "only_a": np.zeros(1)}
    b = {"x": np.array([1.0, 2.0, 3.3]), "w": np.ones((3, 2)), "only_b": np.zeros(1)}
    res = compare(a, b, "mean", 0.2)
    rows = {r.key: r for r in res.rows}
    assert rows["x"].mean == pytest.approx(0.1) and rows["x"].max == pytest.approx(0.3)
    assert rows["x"].relative == pytest.approx(0.3 / 3.3)
    assert rows["x"].passed
    assert not rows["w"].passed and "shape (2, 3) vs (3, 2)" in rows["w"].note  # no silent transpose
    assert "only in the first" in rows["only_a"].note and "only in the second" in rows["only_b"].note
    assert not res.passed
    strict = compare({"x": a["x"]}, {"x": b["x"]}, "mean", 1.0, per_key={"x": ("max", 0.25)})
    assert not strict.passed and strict.rows[0].method == "max"
    with pytest.raises(ReproError, match="unknown diff method 'median'"):
        compare(a, b, "median", 1.0)


def test_diff_cli_exit_status_and_table(tmp_path, capsys):
    a = dump(tmp_path / "p.npy", logits=np.ones(4, np.float32))
    b = dump(tmp_path / "t.npy", logits=np.ones(4, np.float32) + 1e-7)
    c = dump(tmp_path / "u.npy", logits=np.ones(4, np.float32) + 1e-3)
    code, out, _ = cli(align_main, ["diff", a, b], capsys)
    assert code == 0 and "logits  mean" in out and "PASSED: 1 of 1" in out
    report = str(tmp_path / "diff.txt")
    code, out, _ = cli(align_main, ["diff", a, c, "--report", report], capsys)
    assert code == 1 and "FAIL" in out and "FAILED: 0 of 1" in out
    assert "FAILED" in open(report).read() and os.path.exists(report + ".json")
    code, _, err = cli(align_main, ["diff", a, str(tmp_path / "missing.npy")], capsys)
    assert code == 2 and "no such dump" in err
    code, _, err = cli(align_main, ["diff", a, b, "--key", "logits:max"], capsys)
    assert code == 2 and "KEY=METHOD:THRESHOLD" in err


class Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc = paddle.nn.Linear(4, 3)
        self.bn = paddle.nn.BatchNorm1D(3)
        self.head = paddle.nn.Linear(3, 3)


def torch_style_state():
    rng = np.random.default_rng(0)
    return {"fc.weight": rng.standard_normal((3, 4)).astype(np.float32),  # [out, in]
            "fc.bias": np.zeros(3, np.float32),
            "bn.weight": np.ones(3, np.float32), "bn.bias": np.zeros(3, np.float32),
            "bn.running_mean": np.full(3, 0.5, np.float32), "bn.running_var": np.full(3, 2.0, np.float32),
            "bn.num_batches_tracked": np.array(7),
            "head.weight": np.eye(3, dtype=np.float32)[::-1].copy(), "head.bias": np.zeros(3, np.float32)}


def test_conversion_rules():
    net = Net()
    state = torch_style_state()
    report = convert.load_into(net, state)
    np.testing.assert_array_equal(net.fc.weight.numpy(), state["fc.weight"].T)
    np.testing.assert_array_equal(net.head.weight.numpy(), state["head.weight"].T)
    np.testing.assert_array_equal(net.bn._mean.numpy(), state["bn.running_mean"])
    np.testing.assert_array_equal(net.bn._variance.numpy(), state["bn.running_var"])
    assert report.dropped == ["bn.num_batches_tracked"]
    assert sum(t for *_, t in report.converted) == 2


def test_conversion_reports_instead_of_guessing():
    state = torch_style_state()
    state["extra.weight"] = np.zeros(2, np.float32)
    state["fc.weight"] = np.zeros((5, 4), np.float32)
    del state["head.bias"]
    _, report = convert.convert(state, Net())
    assert report.unused == ["extra.weight"]
    assert report.unmatched == ["fc.weight", "head.bias"]
    assert report.mismatched == [("fc.weight", (5, 4), (4, 3))]
    with pytest.raises(ReproError, match="unused PyTorch keys: extra.weight; Paddle keys with no PyTorch value: "
                                         "fc.weight, head.bias; shape mismatches: fc.weight"):
        convert.load_into(Net(), state)


# ---------------------------------------------------------------- with PyTorch

def ladder(exp, planted=None, steps=3, out=None, overrides=()):
    pytest.importorskip("torch", reason=TORCH_REASON)
    from repro.align.ladder import Ladder

    paper = get_paper("mnist1d")
    cfg = paper.config(exp, overrides=list(overrides))
    lad = Ladder(paper, cfg, steps=steps, out=out, planted=planted).run()
    lad.write()
    return lad


@pytest.mark.parametrize("exp", ["cnn", "mlp", "gru"])
@pytest.mark.slow
def test_the_port_passes_the_ladder(exp, tmp_path):
    lad = ladder(exp, out=str(tmp_path))
    results = {name: res for name, res, _ in lad.results}
    assert lad.passed, lad.table()
    assert results["forward"].rows[0].mean <= 1e-6
    for rung in ("loss", "backward", "optimizer"):
        assert all(r.max <= 1e-5 for r in results[rung].rows), rung
    assert len(results["backward"].rows) == 3 * len(list(get_paper("mnist1d").build_model(
        get_paper("mnist1d").config(exp)).parameters()))
    assert os.path.exists(tmp_path / "forward_paddle.npy") and os.path.exists(tmp_path / "ladder.txt")


def test_lr_schedules_match_torch():
    lad = ladder("logreg", steps=1, overrides=["train.lr_schedule=step", "train.lr_milestones=[3000, 6000]"])
    assert lad.passed, lad.table()
    lad = ladder("logreg", steps=1, overrides=["train.lr_schedule=cosine"])
    assert dict((n, r) for n, r, _ in lad.results)["lr"].passed


def transpose_linear2_back(model):
    """A converter that forgot the transpose for one square Linear: shapes fit, numbers do not."""
    model.linear2.weight.set_value(model.linear2.weight.numpy().T.copy())


def test_a_mis_converted_linear_is_caught_and_localised():
    lad = ladder("mlp", planted=transpose_linear2_back)
    assert not lad.passed
    name, res, note = next(r for r in lad.results if r[0] == "forward")
    assert not res.passed and note.startswith("first diverging layer: linear2 (")
    assert lad.diverging_layer == "linear2"


@pytest.mark.parametrize("k,stride,pad", [(1, 1, 0), (3, 1, 1), (3, 2, 1), (5, 2, 1), (5, 3, 2), (3, 2, 0)])
def test_the_mnist1d_gemm_convolution_is_paddles_conv1d_channels_last(k, stride, pad):
    """papers/mnist1d's Conv1D (gathered windows and one matrix product) computes Paddle's conv1d,
    laid out channels-last, its gradients included, on lengths the model never sees."""
    from repro.papers.mnist1d import models
    paddle.seed(k * 10 + stride)
    layer = models.conv1d(3, 4, k, stride, pad)
    for length in (13, 8):
        x = paddle.to_tensor(np.random.default_rng(length).standard_normal((5, length, 3)).astype("float32"),
                             stop_gradient=False)
        got = layer(x)
        want = paddle.nn.functional.conv1d(x.transpose([0, 2, 1]), layer.weight, layer.bias, stride=stride,
                                           padding=pad).transpose([0, 2, 1])
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5)
        probe = paddle.to_tensor(np.random.default_rng(length + 1).standard_normal(got.shape).astype("float32"))
        grads_got = paddle.grad((got * probe).sum(), [x, layer.weight, layer.bias])
        grads_want = paddle.grad((want * probe).sum(), [x, layer.weight, layer.bias])
        for g, w in zip(grads_got, grads_want):  # the input's, the weight's and the bias's
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=0, atol=1e-5)


def test_localisation_names_the_first_diverging_conv():
    from repro.align.localize import first_divergence
    pytest.importorskip("torch", reason=TORCH_REASON)
    from repro.papers.mnist1d import reference

    paper = get_paper("mnist1d")
    cfg = paper.config("cnn")
    tmodel = reference.build_model(cfg)
    pmodel = paper.build_model(cfg)
    convert.load_into(pmodel, {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((8, 40)).astype(np.float32)
    assert first_divergence(pmodel, tmodel, [x])[0] is None
    pmodel.conv2.weight.set_value(pmodel.conv2.weight.numpy()[:, :, ::-1].copy())  # a flipped kernel
    layer, stats, order = first_divergence(pmodel, tmodel, [x])
    assert layer == "conv2" and stats["mean"] > 1e-3 and order[:2] == ["conv1", "conv2"]


def test_convert_cli_from_a_real_torch_file_then_eval(tmp_path, capsys):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    from repro.papers.mnist1d import reference
    from repro import eval as eval_cli

    paper = get_paper("mnist1d")
    cfg = paper.config("cnn")
    torch.manual_seed(0)
    tmodel = reference.build_model(cfg)
    torch.save({"state_dict": tmodel.state_dict(), "epoch": 3}, tmp_path / "model.pt")
    out = str(tmp_path / "converted.safetensors")
    code, stdout, err = cli(align_main, ["convert", "--paper", "mnist1d", "--weights", str(tmp_path / "model.pt"),
                                         "--out", out], capsys)
    assert code == 0, err
    assert "8 converted (1 transposed)" in stdout
    code, stdout, _ = cli(eval_cli.main, ["--paper", "mnist1d", "--checkpoint", out, "--json"], capsys)
    assert code == 0
    import json
    x, y = paper.build_data(cfg).eval["test"]
    with torch.no_grad():
        ref_acc = reference.accuracy(tmodel(torch.from_numpy(x)).numpy(), y)
    assert json.loads(stdout)["test_acc"] == pytest.approx(ref_acc)
    # the MLP's weights do not fit the CNN: every problem is listed, nothing is guessed
    torch.save(reference.MLP().state_dict(), tmp_path / "mlp.pt")
    code, _, err = cli(align_main, ["convert", "--paper", "mnist1d", "--weights", str(tmp_path / "mlp.pt"),
                                    "--out", str(tmp_path / "x.safetensors")], capsys)
    assert code == 2 and "unused PyTorch keys: linear1.weight" in err and "Paddle keys with no PyTorch value: conv1.weight" in err
    assert not os.path.exists(tmp_path / "x.safetensors")


def test_two_reports_in_one_process_stay_apart(tmp_path):
    """reprod_log's report() adds a root-logger handler per call, so a second
    report duplicates its lines into the first file; ours write only their own."""
    first, second = str(tmp_path / "first.txt"), str(tmp_path / "second.txt")
    compare({"a": np.zeros(2)}, {"a": np.zeros(2)}, title="first").write(first)
    compare({"b": np.zeros(2)}, {"b": np.ones(2)}, title="second").write(second)
    one, two = open(first).read(), open(second).read()
    assert "first" in one and "second" not in one and "\nb " not in one
    assert "second" in two and "first" not in two and one.count("PASSED") == 1


RESNET20 = """
import numpy as np, paddle, torch
from repro.align import convert
from repro.papers.resnet_cifar.reference import build_model as torch_model
from repro.registry import get_paper
paper = get_paper("resnet_cifar")
cfg = paper.config("resnet20")
torch.manual_seed(0)
tmodel = torch_model(cfg)
tmodel.train()
with torch.no_grad():  # move the BN statistics off their defaults
    tmodel(torch.randn(16, 3, 32, 32))
tmodel.eval()
pmodel = paper.build_model(cfg)
report = convert.load_into(pmodel, {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()})
pmodel.eval()
x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
with torch.no_grad():
    ref = tmodel(torch.from_numpy(x)).numpy()
out = pmodel(paddle.to_tensor(x)).numpy()
print(len(report.dropped), float(np.abs(out - ref).mean()))
"""


@pytest.mark.slow  # a process of its own that loads Paddle and PyTorch
def test_resnet20_converts_from_its_pytorch_reference_with_batchnorm():
    """BatchNorm's running_mean/var -> _mean/_variance and num_batches_tracked
    dropped, on a real model: the converted port gives the reference's outputs, within the
    ladder's forward bar. In a process of its own, as `repro.align ladder` runs: on MKL's own
    code path (the tests' process takes the AVX2 path a new run takes on this CPU, whose
    summation order lands this 20-layer float32 comparison at the bar, 1.03e-06, measured)."""
    pytest.importorskip("torch", reason=TORCH_REASON)
    env = {k: v for k, v in os.environ.items() if k not in machine.MKL_VARIABLES}
    p = subprocess.run([sys.executable, "-c", RESNET20], capture_output=True, text=True, timeout=300,
                       env={**env, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    dropped, diff = p.stdout.split()[-2:]
    assert int(dropped) == 1 + 2 * 9  # num_batches_tracked of every BatchNorm
    assert float(diff) <= 1e-6, diff


@pytest.mark.slow
def test_drift_from_the_same_initial_weights_agrees_early_and_reports_the_difference(tmp_path, capsys):
    """repro.align drift: both frameworks start from the reference's weights and train on
    the harness's batches; early on they agree on every test prediction, and the summary
    is the paired difference with its t interval."""
    pytest.importorskip("torch", reason=TORCH_REASON)
    import json
    out = str(tmp_path / "drift.jsonl")
    code, stdout, err = cli(align_main, ["drift", "--paper", "mnist1d", "--exp", "gru", "--seeds", "0-1",
                                         "--steps", "20", "--every", "10", "--json", out], capsys)
    assert code == 0, err
    lines = [json.loads(ln) for ln in open(out, encoding="utf-8")]
    records, summary = lines[:2], lines[2]["summary"]
    for rec in records:
        assert [c["step"] for c in rec["curve"]] == [10, 20]
        assert all(c["agree"] == 100.0 and c["weight_distance"] < 1e-4 for c in rec["curve"]), rec["curve"]
        assert rec["paddle_acc"] == rec["reference_acc"]
    assert summary["n"] == 2 and summary["difference_mean"] == 0.0
    assert "paddle − reference (paired, n=2): +0.00" in stdout


def test_drift_summary_is_a_paired_t_interval():
    from repro.align.drift import summarize
    recs = [{"seed": s, "paddle_acc": p, "reference_acc": r} for s, p, r in
            [(0, 51.0, 53.0), (1, 52.0, 53.5), (2, 50.0, 53.0)]]
    s = summarize(recs)
    d = np.array([-2.0, -1.5, -3.0])
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert s["difference_mean"] == pytest.approx(d.mean())
    assert s["ci95"] == pytest.approx([d.mean() - half, d.mean() + half], rel=1e-6)
    assert s["paddle_sd"] == pytest.approx(1.0) and s["reference_mean"] == pytest.approx(53.1666666, rel=1e-6)
