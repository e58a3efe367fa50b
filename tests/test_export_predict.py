"""Export (paddle.jit.save) and inference (Paddle Inference): the TIPC steps.

One short MNIST-1D CNN run is trained in-process and exported; the exported
model, run through Paddle Inference, must give the dynamic model's logits
(atol 1e-5) and the same top-1 classes. The CLIs' output and every error path
(one line, exit 2, no traceback) are checked too.
"""
import json
import os
import shutil

import numpy as np
import pytest
from conftest import cli, subprocess_cli

from repro import export as export_cli, inference, predict as predict_cli
from repro.errors import ReproError
from repro.registry import get_paper
from repro.run import checkpoint, rundir

ATOL = 1e-5
N = 64


def _mnist1d():
    from repro.registry import get_paper
    return get_paper("mnist1d")


def _spec(self, cfg):
    import paddle
    return [paddle.static.InputSpec([None, 40], "float32", "x")]


@pytest.fixture(scope="module")
def patched():
    """input_spec for MNIST-1D while the paper does not define it itself."""
    paper = _mnist1d()
    with pytest.MonkeyPatch.context() as mp:
        if "input_spec" not in type(paper).__dict__:
            mp.setattr(type(paper), "input_spec", _spec, raising=False)
        yield paper


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from repro.errors import run_cli
    from repro.train import main

    out = str(tmp_path_factory.mktemp("export") / "run")
    with pytest.raises(SystemExit) as e:
        run_cli(main, ["--paper", "mnist1d", "--exp", "cnn", "--lite", "--out", out, "-o", "train.visualdl=false"])
    assert e.value.code == 0
    return out


@pytest.fixture(scope="module")
def exported(run, patched):
    info = export_cli.export(run, echo=None)
    return os.path.join(run, "export"), info


@pytest.fixture(scope="module")
def reference(run):
    """The test split's first N samples and the dynamic model's logits on them."""
    import paddle

    opened = rundir.open_run(get_paper, run)
    paper, cfg = opened.paper, opened.cfg
    x = paper.build_data(cfg).eval["test"][0][:N]
    x = getattr(paper, "preprocess", lambda a: a)(x)
    model = rundir.load_trained(opened)[0]
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x)).numpy()
    return np.asarray(x, np.float32), logits


def _one_line_error(code, err, message):
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert message in err, err


# ---------------------------------------------------------------- export

def test_export_writes_static_model_and_export_json(run, exported):
    export_dir, info = exported
    with open(os.path.join(export_dir, "export.json")) as f:
        on_disk = json.load(f)
    assert on_disk == info
    assert (info["paper"], info["exp"]) == ("mnist1d", "cnn")
    final = os.path.join(run, rundir.checkpoint_name(30))
    assert info["checkpoint"]["sha256"] == checkpoint.sha256_file(final)
    assert info["checkpoint"]["path"] == rundir.checkpoint_name(30) and info["checkpoint"]["step"] == 30
    assert info["inputs"] == [{"name": "x", "shape": [None, 40], "dtype": "float32"}]
    files = info["files"]
    # Paddle 3 writes PIR (model.json); the old IR writes model.pdmodel
    assert files["model"] in ("model.json", "model.pdmodel") and files["params"] == "model.pdiparams"
    assert sorted(os.listdir(export_dir)) == sorted(files["written"] + ["export.json"])
    for name, sha in files["sha256"].items():
        assert checkpoint.sha256_file(os.path.join(export_dir, name)) == sha
    assert info["check"]["max_abs_diff"] <= ATOL
    print(f"jit.save wrote {files['written']} (ir {info['ir']}, paddle {info['paddle']})")


def test_inference_matches_dynamic_model(exported, reference):
    export_dir, _ = exported
    x, dynamic = reference
    static = inference.predict_arrays(export_dir, x)
    assert static.shape == dynamic.shape == (N, 10)
    diff = float(np.max(np.abs(static - dynamic)))
    print(f"max |dynamic - inference| over {N} test samples: {diff:.3e}")
    np.testing.assert_allclose(static, dynamic, rtol=0, atol=ATOL)
    assert np.array_equal(static.argmax(1), dynamic.argmax(1))
    # fed 10 at a time (the last batch short) the logits are the same
    np.testing.assert_allclose(inference.predict_arrays(export_dir, x, batch_size=10), static, rtol=0, atol=ATOL)
    # oneDNN kernels (TIPC's enable_mkldnn) round differently, within float32 precision
    fast = inference.predict_arrays(export_dir, x, onednn=True)
    print(f"with oneDNN: {float(np.max(np.abs(fast - dynamic))):.3e}")
    np.testing.assert_allclose(fast, dynamic, rtol=1e-5, atol=ATOL)
    assert np.array_equal(fast.argmax(1), dynamic.argmax(1))


# ---------------------------------------------------------------- predict CLI

def test_predict_cli_lines(exported, reference, tmp_path, capsys):
    export_dir, _ = exported
    x, dynamic = reference
    path = str(tmp_path / "batch.npy")
    np.save(path, x[:5])
    code, out, err = cli(predict_cli.main, [export_dir, path], capsys)
    assert code == 0, err
    probs = inference.softmax(inference.predict_arrays(export_dir, x[:5]))
    want = [f"{path}[{i}]: class {c} (p={probs[i, c]:.3f})" for i, c in enumerate(dynamic[:5].argmax(1))]
    assert out.strip().splitlines() == want


def test_predict_cli_json(exported, reference, tmp_path, capsys):
    export_dir, info = exported
    x, dynamic = reference
    path = str(tmp_path / "batch.npy")
    np.save(path, x[:4])
    code, out, err = cli(predict_cli.main, [export_dir, path, "--json", "--batch-size", "3"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["paper"], doc["exp"], doc["step"]) == ("mnist1d", "cnn", info["checkpoint"]["step"])
    (res,) = doc["results"]
    assert res["input"] == path and res["shape"] == [4, 40]
    np.testing.assert_allclose(np.array(res["logits"]), dynamic[:4], rtol=0, atol=ATOL)
    assert res["classes"] == [int(c) for c in dynamic[:4].argmax(1)]
    assert all(0 < p <= 1 for p in res["probs"])


def test_predict_single_sample_npy(exported, reference, tmp_path, capsys):
    """One sample without the batch dimension; float64 is cast to the model's float32."""
    export_dir, _ = exported
    x, dynamic = reference
    one = str(tmp_path / "one.npy")
    np.save(one, x[7].astype(np.float64))
    code, out, err = cli(predict_cli.main, [export_dir, one, one], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{one}[0]: class {dynamic[7].argmax()} (p=") for line in lines)
    np.testing.assert_allclose(inference.predict_arrays(export_dir, x[7]), dynamic[7:8], rtol=0, atol=ATOL)


def test_export_works_after_the_run_is_gone(run, patched, reference, tmp_path, capsys):
    """export.json is enough: the run directory can move or disappear."""
    copy = str(tmp_path / "run")
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export"))
    out_dir = str(tmp_path / "exports" / "cnn")
    code, out, err = cli(export_cli.main, [copy, "--out", out_dir], capsys)
    assert code == 0, err
    assert f"-> {out_dir}" in out
    shutil.rmtree(copy)
    x, dynamic = reference
    np.testing.assert_allclose(inference.predict_arrays(out_dir, x), dynamic, rtol=0, atol=ATOL)


# ---------------------------------------------------------------- errors

def test_export_errors(run, exported, patched, tmp_path, capsys):
    export_dir, _ = exported
    code, _, err = cli(export_cli.main, [str(tmp_path / "missing")], capsys)
    _one_line_error(code, err, "no such run directory")
    code, _, err = cli(export_cli.main, [str(tmp_path)], capsys)
    _one_line_error(code, err, "is not a run: no events.jsonl")

    no_ckpt = str(tmp_path / "no_ckpt")
    shutil.copytree(run, no_ckpt, ignore=shutil.ignore_patterns("export", "step-00000030.safetensors"))
    code, _, err = cli(export_cli.main, [no_ckpt], capsys)
    _one_line_error(code, err, "checkpoint not found")

    before = {f: os.path.getmtime(os.path.join(export_dir, f)) for f in os.listdir(export_dir)}
    code, _, err = cli(export_cli.main, [run], capsys)
    _one_line_error(code, err, f"{export_dir} already holds an export; it is not overwritten")
    assert before == {f: os.path.getmtime(os.path.join(export_dir, f)) for f in os.listdir(export_dir)}


def test_export_of_a_paper_without_input_spec(run, tmp_path, capsys, monkeypatch):
    def no_spec(self, cfg):
        raise NotImplementedError

    monkeypatch.setattr(type(_mnist1d()), "input_spec", no_spec, raising=False)
    out_dir = str(tmp_path / "out")
    code, _, err = cli(export_cli.main, [run, "--out", out_dir], capsys)
    _one_line_error(code, err, "paper mnist1d does not define input_spec, so it cannot be exported")
    assert not os.path.exists(out_dir) and not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


def test_predict_errors(run, exported, tmp_path, capsys, monkeypatch):
    export_dir, _ = exported
    good = str(tmp_path / "good.npy")
    np.save(good, np.zeros((2, 40), np.float32))

    code, _, err = cli(predict_cli.main, [run, good], capsys)
    _one_line_error(code, err, f"{run} is not an export: no export.json")
    code, _, err = cli(predict_cli.main, [str(tmp_path / "nowhere"), good], capsys)
    _one_line_error(code, err, "no such export directory")

    missing = str(tmp_path / "missing.npy")
    code, _, err = cli(predict_cli.main, [export_dir, good, missing], capsys)
    _one_line_error(code, err, f"{missing}: no such input file")

    bad = str(tmp_path / "bad.npy")
    np.save(bad, np.zeros((3, 4), np.float32))
    code, _, err = cli(predict_cli.main, [export_dir, bad], capsys)
    _one_line_error(code, err, f"{bad}: shape (3, 4) does not fit the model input [None, 40]")

    pixels = str(tmp_path / "pixels.npy")
    np.save(pixels, np.zeros((2, 40), np.uint8))
    code, _, err = cli(predict_cli.main, [export_dir, pixels], capsys)
    _one_line_error(code, err, f"{pixels}: dtype uint8 does not fit the model input dtype float32")

    pickled = str(tmp_path / "objects.npy")
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = cli(predict_cli.main, [export_dir, pickled], capsys)
    _one_line_error(code, err, f"{pickled}: not a readable .npy array")

    image = tmp_path / "digit.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")

    def no_images(self, path, cfg):
        raise NotImplementedError

    monkeypatch.setattr(type(_mnist1d()), "preprocess_image", no_images, raising=False)
    code, _, err = cli(predict_cli.main, [export_dir, str(image)], capsys)
    _one_line_error(code, err, f"{image}: paper mnist1d does not define preprocess_image, so it cannot take images")

    text = tmp_path / "input.txt"
    text.write_text("1 2 3")
    code, _, err = cli(predict_cli.main, [export_dir, str(text)], capsys)
    _one_line_error(code, err, "unsupported input type '.txt'")

    code, _, err = cli(predict_cli.main, [export_dir, good, "--batch-size", "0"], capsys)
    _one_line_error(code, err, "--batch-size must be > 0, got 0")

    with pytest.raises(ReproError, match=r"shape \(3, 4\) does not fit the model input \[None, 40\]"):
        inference.predict_arrays(export_dir, np.zeros((3, 4), np.float32))


def test_predict_image_through_the_paper(exported, reference, tmp_path, capsys, monkeypatch):
    """A paper's preprocess_image(path, cfg) turns an image into one sample."""
    export_dir, _ = exported
    x, dynamic = reference
    seen = {}

    def preprocess_image(self, path, cfg):
        seen["arch"] = cfg.model.arch  # the config comes from export.json
        return x[3]

    monkeypatch.setattr(type(_mnist1d()), "preprocess_image", preprocess_image, raising=False)
    image = tmp_path / "digit.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    code, out, err = cli(predict_cli.main, [export_dir, str(image)], capsys)
    assert code == 0, err
    assert out.startswith(f"{image}[0]: class {dynamic[3].argmax()} (p=") and seen == {"arch": "cnn"}


def test_real_cli_errors_are_one_line(exported, tmp_path):
    export_dir, _ = exported
    bad = str(tmp_path / "bad.npy")
    np.save(bad, np.zeros((3, 4), np.float32))
    code, _, err = subprocess_cli("-m", "repro.predict", export_dir, bad)
    assert code == 2 and err.strip() == f"error: {bad}: shape (3, 4) does not fit the model input [None, 40]"
    code, _, err = subprocess_cli("-m", "repro.export", str(tmp_path))
    assert code == 2 and err.strip() == f"error: {tmp_path} is not a run: no events.jsonl"
