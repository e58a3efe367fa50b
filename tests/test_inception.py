"""metrics.inception: the Paddle FID Inception-v3 against pytorch-fid's, on shared random weights;
reading pytorch-fid's weights file is repro.diffusion.scoring's."""
import os

import numpy as np
import pytest

from repro.metrics.inception import FID_WEIGHTS_URL, InceptionFeatures, _random_state
from repro.diffusion.scoring import _fid_extractor, convert_fid_weights
from repro.errors import ReproError

TORCH_REASON = "PyTorch is an optional test dependency (pip install torch==2.13.0)"


def _images(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.slow
def test_random_init_shapes_and_determinism():
    images = _images(3, 32, 32)
    a, b = InceptionFeatures(seed=0), InceptionFeatures(seed=0)
    pool, probs = a(images, batch_size=2)
    assert pool.shape == (3, 2048) and probs.shape == (3, 1008)
    assert pool.dtype == probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert (probs > 0).all() and np.isfinite(pool).all() and pool.std() > 0
    pool2, probs2 = b(images)
    np.testing.assert_array_equal(pool, pool2)
    np.testing.assert_array_equal(probs, probs2)
    assert a.identity == "random-init seed 0 (not comparable to published FID)"
    other = _random_state(a.model, seed=1)["fc.weight"].numpy()
    assert not np.array_equal(other, a.model.fc.weight.numpy())


def test_bad_weights_files(tmp_path):
    missing = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(ReproError, match="not found") as e:
        _fid_extractor(str(missing))
    assert str(missing) in str(e.value) and FID_WEIGHTS_URL in str(e.value)

    from safetensors.numpy import save_file
    wrong = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": np.zeros((2, 3, 1, 1), np.float32)}, str(wrong))
    with pytest.raises(ReproError, match="not the FID Inception-v3 weights") as e:
        _fid_extractor(str(wrong))
    assert str(wrong) in str(e.value) and "\n" not in str(e.value)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ReproError, match="garbage.pth"):
        _fid_extractor(str(garbage))


# -- the PyTorch reference: pytorch-fid's fid_inception_v3 (torchvision's Inception3 with
#    num_classes=1008, aux_logits=False, and the FIDInception* blocks), written out here so the
#    test needs neither torchvision nor a download. Mirrors pytorch_fid/inception.py 0.3.0.

def _torch_fid_inception():
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    nn, F = torch.nn, torch.nn.functional

    class BasicConv2d(nn.Module):
        def __init__(self, cin, cout, **kw):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)), inplace=True)

    def tf_avg(x):
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    class FIDInceptionA(nn.Module):
        def __init__(self, cin, pool_features):
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
            self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
            self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

        def forward(self, x):
            return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                              self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                              self.branch_pool(tf_avg(x))], 1)

    class InceptionB(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

        def forward(self, x):
            return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                              F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class FIDInceptionC(nn.Module):
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = self.branch7x7dbl_1(x)
            d = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(d))))
            return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(tf_avg(x))], 1)

    class InceptionD(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

        def forward(self, x):
            b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
            return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class FIDInceptionE(nn.Module):  # _1 (avg pool, Mixed_7b) and _2 (max pool, Mixed_7c)
        def __init__(self, cin, max_pool):
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
            self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
            self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

        def forward(self, x):
            b3 = self.branch3x3_1(x)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else tf_avg(x)
            return torch.cat([self.branch1x1(x), torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1),
                              torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1),
                              self.branch_pool(pool)], 1)

    class Inception3(nn.Module):
        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
            self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
            self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
            self.Mixed_5b = FIDInceptionA(192, pool_features=32)
            self.Mixed_5c = FIDInceptionA(256, pool_features=64)
            self.Mixed_5d = FIDInceptionA(288, pool_features=64)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = FIDInceptionC(768, c7=128)
            self.Mixed_6c = FIDInceptionC(768, c7=160)
            self.Mixed_6d = FIDInceptionC(768, c7=160)
            self.Mixed_6e = FIDInceptionC(768, c7=192)
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
            self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(2048, 1008)

        def forward(self, x):
            """pytorch-fid's InceptionV3(resize_input=True, normalize_input=True) block 3 output."""
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = 2 * x - 1
            x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
            x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
            for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
                x = getattr(self, f"Mixed_{name}")(x)
            return torch.flatten(self.avgpool(x), 1)

    torch.manual_seed(0)
    model = Inception3()
    with torch.no_grad():  # random but well-scaled weights, and BatchNorm statistics that are not identity
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        model.fc.weight.normal_(0, 0.1)
        model.fc.bias.normal_(0, 1.0)
    return torch, model.eval()


@pytest.mark.slow
def test_matches_pytorch_fid_on_shared_weights(tmp_path):
    torch, ref = _torch_fid_inception()
    pth = tmp_path / "fid_inception_random.pth"
    torch.save(ref.state_dict(), str(pth))  # has num_batches_tracked, dropped by the converter

    feats = _fid_extractor(str(pth))
    assert feats.identity.startswith("pt_inception-2015-12-05 sha256:") and len(feats.identity.split(":")[1]) == 64

    images = _images(2, 80, 64, seed=1)  # non-square, upsampled to 299
    pool, probs = feats(images, batch_size=2)
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        pool_t = ref(x)
        logits_t = pool_t @ ref.fc.weight.T  # the IS logits: fc without its bias
    pool_t, logp_t = pool_t.double().numpy(), torch.log_softmax(logits_t.double(), 1).numpy()

    pool_err = np.abs(pool - pool_t).max() / np.abs(pool_t).max()
    logp_err = np.abs(np.log(probs) - logp_t).max()
    print(f"pool max rel err {pool_err:.2e}, log-prob max abs err {logp_err:.2e}, "
          f"log-prob spread {logp_t.max() - logp_t.min():.1f}")
    assert pool_err < 1e-4, pool_err
    assert logp_err < 1e-3, logp_err
    assert logp_t.max() - logp_t.min() > 5  # the probabilities are far from uniform, so this compares something

    # the Paddle-layout .safetensors made from the .pth loads to the same parameters
    st = tmp_path / "fid_inception.safetensors"
    convert_fid_weights(pth, st)
    again = _fid_extractor(str(st))
    want = feats.model.state_dict()
    got = again.model.state_dict()
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    assert os.path.getsize(st) > 90e6
