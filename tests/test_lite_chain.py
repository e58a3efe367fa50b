"""Every registered paper and experiment, on its --lite config: train -> eval ->
export -> predict -> verify, so no plugin rots (Paddle TIPC's lite_train_lite_infer).
Generative papers have no static-graph export; their generate -> submit chain is
in tests/test_text_to_image.py and tests/test_ddpm.py."""
import json
import os

import numpy as np
import pytest

from conftest import cli
from repro import eval as eval_cli
from repro import export, predict, train, verify
from repro.config import load_config
from repro.registry import get_paper, load_papers

CASES = [(p, e.name) for p in load_papers().names() for e in get_paper(p).experiments]


@pytest.mark.lite
@pytest.mark.parametrize("paper_name, exp", CASES, ids=[f"{p}/{e}" for p, e in CASES])
def test_lite_chain(paper_name, exp, tmp_path, capsys):
    run = str(tmp_path / "run")
    code, _, err = cli(train.main, ["--paper", paper_name, "--exp", exp, "--lite", "--out", run,
                                    "-o", "train.visualdl=false"], capsys)
    assert code == 0, err
    logged = json.loads(open(os.path.join(run, "events.jsonl")).read().splitlines()[-1])["metrics"]

    code, out, err = cli(eval_cli.main, ["--paper", paper_name, "--exp", exp, "--checkpoint", run, "--json",
                                         "--lite"], capsys)
    assert code == 0, err
    assert json.loads(out) == logged
    paper = get_paper(paper_name)
    if paper.evaluate is None:
        _export_and_predict(paper, exp, run, capsys)

    code, out, _ = cli(verify.main, [run, "--json"], capsys)
    report = json.loads(out)
    assert code == 1  # a lite run never counts ...
    problems = report["runs"][0]["problems"]
    assert problems and all("lite" in p or "config departs" in p or "evaluation data" in p for p in problems), problems


def _export_and_predict(paper, exp, run, capsys):
    code, _, err = cli(export.main, [run], capsys)
    assert code == 0, err
    cfg = load_config(paper.config_class, paper.experiment(exp).config_path, lite=True)
    data = paper.build_data(cfg)
    x = data.prepare(data.eval["test"][0][:8])
    from repro import checkpoint
    import paddle
    model = paper.build_model(cfg)
    tensors, _ = checkpoint.read(run)
    checkpoint.load_model(model, tensors)
    model.eval()
    with paddle.no_grad():
        dynamic = model(paddle.to_tensor(x)).numpy()
    exported = predict.predict_arrays(os.path.join(run, "export"), x)
    np.testing.assert_allclose(exported, dynamic, rtol=0, atol=1e-5)


def test_predict_reads_an_image_file_for_a_vision_paper(tmp_path, capsys):
    """LeNet-5: a PNG of a digit, through Paddle Inference, gives the dynamic model's class."""
    import paddle
    from PIL import Image

    from repro import checkpoint

    run = str(tmp_path / "run")
    assert cli(train.main, ["--paper", "lenet5", "--lite", "--out", run, "-o", "train.visualdl=false"], capsys)[0] == 0
    assert cli(export.main, [run], capsys)[0] == 0
    paper = get_paper("lenet5")
    cfg = load_config(paper.config_class, paper.experiment("mnist").config_path, lite=True)
    digit = paper.build_data(cfg).eval["test"][0][0]  # uint8 [28, 28]
    png = str(tmp_path / "digit.png")
    Image.fromarray(digit).save(png)
    code, out, err = cli(predict.main, [os.path.join(run, "export"), png, "--json"], capsys)
    assert code == 0, err
    got = json.loads(out)["results"][0]["classes"][0]
    model = paper.build_model(cfg)
    checkpoint.load_model(model, checkpoint.read(run)[0])
    model.eval()
    with paddle.no_grad():
        want = int(model(paddle.to_tensor(paper.preprocess_image(png, cfg)[None])).numpy().argmax())
    assert got == want
