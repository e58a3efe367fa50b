"""DDPM (Ho et al. 2020) on its --lite config: train -> verify -> recompute ->
generate, the EMA update, gradient clipping, and bitwise resume.

A lite evaluation spends most of its time in FID (a 2048x2048 matrix square
root and a 299x299 Inception per image), so only the shared run and its
recompute score for real; the other tests sample for real and stub the scoring."""
import json
import os

import numpy as np
import pytest
from conftest import assert_same_checkpoints, cli, final_checkpoint, interrupt_train_step, train_lite

pytestmark = pytest.mark.slow  # trains, samples or launches processes: the full tier

from conftest import events as read_events

from repro import train
from repro.diffusion import generate, scoring
from repro.errors import ReproError
from repro.registry import get_paper
from repro.run import recipe

PAPER = get_paper("ddpm")
NATIVE = 16  # the lite UNet's sample_size


def lite_cfg(*overrides):
    return PAPER.config(lite=True, overrides=overrides)


def cheap_scores(images, reference=None, fid=None, inception_score=False, **_):
    """score_images' shape without the Inception: the mean pixel of the samples."""
    return {"fid": float(np.asarray(images, np.float64).mean()), "inception_score": 1.0}


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def lite_run(tmp_path_factory):
    return train_lite("ddpm", tmp_path_factory.mktemp("ddpm"))


def test_unet_is_the_papers_cifar10_model():
    cfg = PAPER.config()
    from repro.papers.ddpm import unet_kwargs
    kw = unet_kwargs(cfg.model)
    assert kw["down_block_types"] == ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D")
    assert kw["up_block_types"] == ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    assert kw["block_out_channels"] == (128, 256, 256, 256) and kw["dropout"] == 0.1
    assert cfg.eval.num_samples == 50000 and cfg.eval.steps == 1000 and cfg.model.ema_decay == 0.9999
    assert cfg.train.lr == 2e-4 and cfg.train.batch_size == 128 and cfg.train.steps == 800000
    assert cfg.train.warmup_steps == 5000 and cfg.optim.grad_clip_norm == 1.0


def test_lite_run_logs_its_lite_metrics(lite_run):
    # its verify --recompute --replay (only the lite reason; every metric and weight exact) is
    # tests/test_lite_chain.py's, which runs that chain for every registered experiment
    events = read_events(lite_run)
    head, end = events[0], events[-1]
    assert "random-init" in head["provenance"]["fid_extractor"]  # lite FID says it is not comparable
    assert end["status"] == "success"
    assert set(end["metrics"]) == {"train_ref_fid", "train_ref_inception_score"}
    assert all(np.isfinite(v) for v in end["metrics"].values())
    assert head["data"]["train_ref"]["n"] == 8


def test_checkpoint_holds_unet_and_ema_and_optimizer_state_for_the_unet_only(lite_run):
    assert not any(k.startswith("optim/") for k in final_checkpoint(lite_run)[0])  # weights alone
    tensors, _ = final_checkpoint(lite_run, first=True)
    unet = {k for k in tensors if k.startswith("model/unet.")}
    ema = {k for k in tensors if k.startswith("model/ema.")}
    assert unet and {k.replace("model/ema.", "model/unet.") for k in ema} == unet
    optim = {k.split("/")[1] for k in tensors if k.startswith("optim/")}
    assert optim and all(k.startswith("unet.") for k in optim)
    # 4 steps at decay 0.9 moved the EMA off its start, but not onto the weights
    k = min(unet)
    assert not np.array_equal(tensors[k], tensors[k.replace("model/unet.", "model/ema.")])


def test_ema_update_and_gradient_clipping():
    import paddle

    cfg = lite_cfg("train.optimizer=sgd", "train.lr=1.0", "optim.grad_clip_norm=0.001")
    paddle.seed(0)
    model = PAPER.build_model(cfg)
    optimizer = recipe.build_optimizer(cfg.train, model)
    trained = {id(p) for p in optimizer._parameter_list}
    assert all(id(p) not in trained and p.stop_gradient for p in model.ema.parameters())
    assert all(id(p) in trained for p in model.unet.parameters())

    data = PAPER.build_data(cfg)
    x = paddle.to_tensor(data.prepare(data.train[0][:4]))
    y = paddle.to_tensor(data.train[1][:4])
    before = {n: p.numpy().copy() for n, p in model.unet.named_parameters()}
    ema_before = {n: p.numpy().copy() for n, p in model.ema.named_parameters()}
    from repro.run.amp import Amp
    PAPER.train_step(model, optimizer, (x, y), Amp(cfg.train.amp), cfg)

    assert isinstance(optimizer._grad_clip, paddle.nn.ClipGradByGlobalNorm)
    after = {n: p.numpy() for n, p in model.unet.named_parameters()}
    # SGD at lr 1: the update is minus the clipped gradient, whose global norm is the clip norm
    step = np.sqrt(sum(((after[n] - before[n]).astype(np.float64) ** 2).sum() for n in after))
    assert step == pytest.approx(0.001, rel=1e-3)

    d = cfg.model.ema_decay
    changed = 0
    for n, e in model.ema.named_parameters():
        want = d * ema_before[n] + (1 - d) * after[n]
        np.testing.assert_allclose(e.numpy(), want, rtol=1e-6, atol=1e-7, err_msg=n)
        changed += not np.array_equal(e.numpy(), after[n])
    assert changed > 0


def test_evaluation_leaves_the_training_rng_alone(monkeypatch):
    import paddle

    from repro.run.dist import SINGLE

    monkeypatch.setattr(scoring, "score_images", cheap_scores)
    cfg = lite_cfg("eval.num_samples=2", "eval.steps=2")
    model = PAPER.build_model(cfg)
    model.eval()
    data = PAPER.build_data(cfg)
    paddle.seed(123)
    want = paddle.randn([4]).numpy()
    paddle.seed(123)
    first, samples = PAPER.evaluate(model, cfg, data, SINGLE)
    np.testing.assert_array_equal(paddle.randn([4]).numpy(), want)
    assert samples == {"train_ref": 2}
    assert PAPER.evaluate(model, cfg, data, SINGLE)[0] == first  # samples depend on eval.seed only


def test_resume_is_bitwise_exact(tmp_path, capsys, monkeypatch):
    """Sampling for real at every step (scoring stubbed): neither it nor an
    interruption changes the weights, the EMA or the optimizer state."""
    monkeypatch.setattr(scoring, "score_images", cheap_scores)
    base = ["--paper", "ddpm", "--lite", "-o", "train.visualdl=false", "-o", "train.eval_every=1",
            "-o", "eval.num_samples=2", "-o", "eval.steps=2"]
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert cli(train.main, base + ["--out", whole], capsys)[0] == 0

    undo = interrupt_train_step(monkeypatch, PAPER, 3)
    assert cli(train.main, base + ["--out", parts], capsys)[0] == 130
    undo()
    code, _, err = cli(train.main, ["--resume", parts], capsys)
    assert code == 0, err
    resumed = read_events(parts)
    assert any(e["kind"] == "resume" and e["step"] == 2 for e in resumed)
    assert resumed[-1]["metrics"] == read_events(whole)[-1]["metrics"]
    assert_same_checkpoints(whole, parts)


def test_generate_writes_seeded_pngs_at_the_native_size(lite_run, tmp_path, capsys):
    from PIL import Image

    first, again = str(tmp_path / "a"), str(tmp_path / "b")
    for out in (first, again):
        code, _, err = cli(generate.main, [lite_run, "--n", "2", "--size", str(NATIVE), "--seed", "5",
                                           "--out", out], capsys)
        assert code == 0, err
    with open(os.path.join(first, "metadata.json"), encoding="utf-8") as f:
        meta = json.load(f)
    assert [r["seed"] for r in meta["images"]] == [5, 6] and meta["scheduler"] == "DDPMScheduler"
    assert meta["prompts"] == [] and meta["guidance_scale"] is None and meta["steps"] == 4
    names = [r["file"] for r in meta["images"]]
    assert sorted(n for n in os.listdir(first) if n != "grid.png" and n.endswith(".png")) == names
    for name in names:
        with Image.open(os.path.join(first, name)) as img:
            assert img.size == (NATIVE, NATIVE) and img.mode == "RGB"
        assert read_bytes(os.path.join(first, name)) == read_bytes(os.path.join(again, name))

    for argv, needle in (([lite_run, "--n", "1", "--size", "32"], "16x16"),
                         ([lite_run, "--n", "1", "--size", str(NATIVE), "--prompt", "a cat"], "unconditional")):
        code, _, err = cli(generate.main, argv + ["--out", str(tmp_path / "bad")], capsys)
        assert code == 2 and needle in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()


def test_cifar10_data_is_the_training_set_twice_scaled_to_minus_one_one(monkeypatch):
    """Train on the 50k training images; the FID reference split is the same images (as the paper)."""
    from repro.datasets import cifar10 as cifar

    rng = np.random.default_rng(0)
    fake = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8), np.arange(6, dtype=np.int64)
    monkeypatch.setattr(cifar, "load_cifar10", lambda split: fake if split == "train" else None)
    cfg = PAPER.config()
    data = PAPER.build_data(cfg)
    assert data.train[0] is fake[0] and list(data.eval) == ["train_ref"] and data.eval["train_ref"][0] is fake[0]
    assert not data.train[1].any()  # unconditional: dummy labels
    x = data.prepare(fake[0])
    assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    np.testing.assert_allclose(data.prepare(np.array([0, 255], np.uint8)), [-1, 1])
    flipped = data.augment(x, np.random.default_rng(1))
    for a, b in zip(x, flipped):
        assert np.array_equal(a, b) or np.array_equal(a[..., ::-1], b)
    with pytest.raises(ReproError, match="32x32"):
        PAPER.build_data(PAPER.config(overrides=["model.sample_size=16", "model.attention_resolutions=[8]"]))
