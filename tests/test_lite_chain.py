"""Every registered paper and experiment, on its --lite config: train -> eval ->
export -> predict -> verify, so no plugin rots (Paddle TIPC's lite_train_lite_infer).
Generative papers have no static-graph export; their generate -> submit chain is
in tests/test_text_to_image.py and tests/test_ddpm.py."""
import json
import os

import numpy as np
import pytest
from conftest import cli, events, recomputes

from repro import eval as eval_cli, export, inference, predict, train, verify
from repro.judge.compliance import LITE
from repro.paper import GenerativePaper
from repro.registry import get_paper, load_papers
from repro.run import rundir

ALL = [(p, e.name) for p in load_papers().names() for e in get_paper(p).experiments]
# Experiments that run the same code as another one with other values: the ResNet depths (one model class,
# cfg.model.depth) and MNIST-1D's spatially shuffled sequences (data.shuffle_seq: true, the same models).
# The whole chain runs for the experiment named here; the others train and evaluate on their --lite config
# (test_lite_variant_trains_and_evaluates), which is where a depth or a shuffled sequence could break.
SAME_CODE = {("resnet_cifar", e.name): "resnet20" for e in get_paper("resnet_cifar").experiments}
SAME_CODE.update({("mnist1d", e.name): e.name[:-len("_shuffled")] for e in get_paper("mnist1d").experiments
                  if e.name.endswith("_shuffled")})
CASES = [(p, e) for p, e in ALL if SAME_CODE.get((p, e), e) == e]
VARIANTS = [(p, e) for p, e in ALL if (p, e) not in CASES]


@pytest.mark.lite
@pytest.mark.slow
@pytest.mark.parametrize("paper_name, exp", CASES, ids=[f"{p}/{e}" for p, e in CASES])
def test_lite_chain(paper_name, exp, tmp_path, capsys):
    run, logged = _train_and_evaluate(paper_name, exp, tmp_path, capsys)
    paper = get_paper(paper_name)
    if not isinstance(paper, GenerativePaper):
        _export_and_predict(paper, exp, run, capsys)

    # a lite run never counts, and being lite is its only problem: its logs pass every
    # check, its checkpoint recomputes exactly, and its first and last segments replay exactly
    code, out, _ = cli(verify.main, [run, "--json", "--recompute", "--replay", "2"], capsys)
    report = json.loads(out)
    assert code == 1
    (r,) = report["runs"]
    assert r["problems"] == [LITE], r["problems"]
    assert recomputes(r["recomputed"], logged), (r["recomputed"], logged)
    assert r["replay"] and all(s["exact"] for s in r["replay"]), r["replay"]


@pytest.mark.lite
@pytest.mark.slow
@pytest.mark.parametrize("paper_name, exp", VARIANTS, ids=[f"{p}/{e}" for p, e in VARIANTS])
def test_lite_variant_trains_and_evaluates(paper_name, exp, tmp_path, capsys):
    assert (paper_name, SAME_CODE[paper_name, exp]) in CASES
    # its --lite config cut to 2 updates, one evaluation and one checkpoint: a depth or a shuffled sequence
    # that breaks the model breaks its first update or its evaluation in training (repro.eval of the
    # checkpoint, the same code again, runs in the whole chain of SAME_CODE's case)
    logged = _train(paper_name, exp, str(tmp_path / "run"), capsys, "train.steps=2", "train.eval_every=2",
                    "train.checkpoint_every=2", "train.log_every=2")
    wanted = {t.metric for t in get_paper(paper_name).experiment(exp).targets}
    assert wanted and wanted <= set(logged), (wanted, logged)


def _train(paper_name, exp, run, capsys, *overrides):
    """Its final logged metrics, trained on --lite (with -o overrides) into run."""
    code, _, err = cli(train.main, ["--paper", paper_name, "--exp", exp, "--lite", "--out", run,
                                    "-o", "train.visualdl=false", *[a for o in overrides for a in ("-o", o)]],
                       capsys)
    assert code == 0, err
    return events(run)[-1]["metrics"]


def _train_and_evaluate(paper_name, exp, tmp_path, capsys):
    """(run directory, its final logged metrics): trained on --lite, and repro.eval of its checkpoint
    gives exactly the metrics its log holds."""
    run = str(tmp_path / "run")
    logged = _train(paper_name, exp, run, capsys)
    code, out, err = cli(eval_cli.main, ["--paper", paper_name, "--exp", exp, "--checkpoint", run, "--json",
                                         "--lite"], capsys)
    assert code == 0, err
    assert json.loads(out) == logged
    return run, logged


def test_every_registered_experiment_is_covered():
    assert sorted(CASES + VARIANTS) == sorted(ALL) and VARIANTS and not set(CASES) & set(VARIANTS)


def _export_and_predict(paper, exp, run, capsys):
    code, _, err = cli(export.main, [run], capsys)
    assert code == 0, err
    import paddle
    opened = rundir.open_run(get_paper, run)
    # the paper's own evaluation splits (not necessarily "test"), with the run's artifact
    data = paper.data(opened.cfg, rundir.read_artifact(opened), train=False)
    split = next(iter(data.eval))
    x = data.prepare(data.eval[split][0][:8])
    model = rundir.load_trained(opened)[0]
    with paddle.no_grad():
        dynamic = model(paddle.to_tensor(x)).numpy()
    exported = inference.predict_arrays(os.path.join(run, "export"), x)
    np.testing.assert_allclose(exported, dynamic, rtol=0, atol=1e-5)


def test_predict_reads_an_image_file_for_a_vision_paper(tmp_path, capsys):
    """LeNet-5: a PNG of a digit, through Paddle Inference, gives the dynamic model's class."""
    import paddle
    from PIL import Image

    run = str(tmp_path / "run")
    assert cli(train.main, ["--paper", "lenet5", "--lite", "--out", run, "-o", "train.visualdl=false"], capsys)[0] == 0
    assert cli(export.main, [run], capsys)[0] == 0
    opened = rundir.open_run(get_paper, run)
    paper, cfg = opened.paper, opened.cfg
    digit = paper.build_data(cfg).eval["test"][0][0]  # uint8 [28, 28]
    png = str(tmp_path / "digit.png")
    Image.fromarray(digit).save(png)
    code, out, err = cli(predict.main, [os.path.join(run, "export"), png, "--json"], capsys)
    assert code == 0, err
    got = json.loads(out)["results"][0]["classes"][0]
    model = rundir.load_trained(opened)[0]
    with paddle.no_grad():
        want = int(model(paddle.to_tensor(paper.preprocess_image(png, cfg)[None])).numpy().argmax())
    assert got == want
