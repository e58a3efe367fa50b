import os
import pickle

import numpy as np
import paddle
import pytest

from repro.errors import ReproError
from repro.run import checkpoint


class Net(paddle.nn.Layer):
    def __init__(self, width=3):
        super().__init__()
        self.fc = paddle.nn.Linear(4, width)


def trained(width=3):
    paddle.seed(0)
    net = Net(width)
    opt = paddle.optimizer.Adam(parameters=net.parameters())
    net.fc(paddle.randn([2, 4])).sum().backward()
    opt.step()
    return net, opt


def test_roundtrip_model_and_optimizer(tmp_path):
    net, opt = trained()
    path = str(tmp_path / "c.safetensors")
    sha, weights = checkpoint.save(path, net, opt, {"step": "7", "paper": "p"})
    assert sha == checkpoint.sha256_file(path) and len(sha) == 64
    other = Net()  # fresh auto-generated parameter names: keys must still line up
    tensors, meta = checkpoint.read(path, other, want_optimizer=True)
    assert meta["step"] == "7" and meta["format"] == checkpoint.FORMAT
    assert weights == checkpoint.weights_sha256(tensors) == checkpoint.weights_sha256(checkpoint.state_tensors(net))
    other_opt = paddle.optimizer.Adam(parameters=other.parameters())
    checkpoint.load_model(other, tensors)
    checkpoint.load_optimizer(other_opt, other, tensors)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), other.state_dict()[k].numpy())
    assert any(k.endswith("moment1_0") for k in tensors)
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


def test_a_checkpoint_that_does_not_fit_the_model_is_refused_before_loading(tmp_path):
    from safetensors.numpy import save_file
    net, opt = trained()
    path = str(tmp_path / "c.safetensors")
    checkpoint.save(path, net, opt)
    with pytest.raises(ReproError, match=r"fc.bias shape \(3,\) vs model \(5,\); fc.weight shape \(4, 3\) vs model \(4, 5\)"):
        checkpoint.read(path, Net(5))
    tensors, meta = checkpoint.read(path, want_optimizer=True)
    for name, changed, reason in [
            ("missing", {k: v for k, v in tensors.items() if k != "model/fc.bias"}, "missing fc.bias"),
            ("float64", {**tensors, "model/fc.weight": tensors["model/fc.weight"].astype(np.float64)},
             "fc.weight dtype float64 vs model float32"),
            ("stray", {**tensors, "optim/fc.nope/moment1_0": np.zeros(3, np.float32)}, "unknown parameters fc.nope"),
            ("other", {**tensors, "payload": np.zeros(1 << 10, np.uint8)}, "outside model/ and optim/")]:
        bad = str(tmp_path / f"{name}.safetensors")
        save_file(tensors and changed, bad, metadata=meta)
        with pytest.raises(ReproError, match=reason):
            checkpoint.read(bad, Net())
    # optimizer state of the wrong shape is refused too, not handed to Paddle
    wrong = {**tensors, **{k: np.zeros(7, np.float32) for k in tensors if k.endswith("moment1_0")}}
    with pytest.raises(ReproError, match="does not fit the parameter"):
        checkpoint.load_optimizer(paddle.optimizer.Adam(parameters=Net().parameters()), Net(), wrong)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    net, opt = trained()
    path = tmp_path / "c.safetensors"
    checkpoint.save(str(path), net, opt)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ReproError, match="not a readable safetensors file"):
        checkpoint.read(str(path))
    with pytest.raises(ReproError, match="checkpoint not found"):
        checkpoint.read(str(tmp_path / "nope.safetensors"))


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = "/tmp/repro-pickle-was-executed"


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(pickle.dumps({"model/fc.weight": _Payload()}))
    with pytest.raises(ReproError, match="not a readable safetensors file"):
        checkpoint.read(str(path))
    assert not os.path.exists(MARKER)
