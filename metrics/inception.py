"""The FID Inception-v3 in Paddle: pool features (FID) and class probabilities (IS).

A port of pytorch-fid's ``fid_inception_v3`` (mseitzer/pytorch-fid,
``pytorch_fid/inception.py``), itself a port of the TensorFlow graph
``inception-2015-12-05`` that the original FID (TTUR) and Inception Score
code use: torchvision's Inception3 (num_classes=1008, no aux head) with the
FID patches - the pool branches of Mixed_5b..5d, 6b..6e and 7b average without
counting padding (TF semantics; Paddle ``exclusive=True``), and Mixed_7c's pool
branch is a max pool. Input handling is pytorch-fid's (resize_input=True,
normalize_input=True): uint8 / 255, bilinear resize to 299x299
(align_corners=False, no antialiasing), then 2x - 1.

Weights: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (FID_WEIGHTS_URL;
torch-fidelity ships the same file), read and converted to this layout by
repro.diffusion.scoring (without torch, and without running code from the
file). Without weights the network is randomly initialised from a seed: fine
for smoke tests, meaningless as a score.

Class probabilities are softmax(pool @ fc.weight), without the fc bias: the
original Inception Score code (Salimans et al., ``softmax/logits/MatMul``) and
torch-fidelity's default IS feature ("logits_unbiased") both leave it out.
"""
import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
NUM_CLASSES = 1008


class BasicConv2d(nn.Layer):
    """conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU, as torchvision's."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2D(cin, cout, kernel_size, stride=stride, padding=padding, bias_attr=False)
        self.bn = nn.BatchNorm2D(cout, epsilon=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x):  # TF average pool: padding does not count
    return F.avg_pool2d(x, 3, stride=1, padding=1, exclusive=True)


class InceptionA(nn.Layer):  # Mixed_5b..5d (FIDInceptionA)
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        return paddle.concat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], axis=1)


class InceptionB(nn.Layer):  # Mixed_6a (torchvision's, unpatched)
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return paddle.concat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], axis=1)


class InceptionC(nn.Layer):  # Mixed_6b..6e (FIDInceptionC)
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return paddle.concat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            dbl,
            self.branch_pool(_avg_pool(x)),
        ], axis=1)


class InceptionD(nn.Layer):  # Mixed_7a (torchvision's, unpatched)
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return paddle.concat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], axis=1)


class InceptionE(nn.Layer):  # Mixed_7b (FIDInceptionE_1, avg pool) and Mixed_7c (FIDInceptionE_2, max pool)
    def __init__(self, cin, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return paddle.concat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pool),
        ], axis=1)


class FIDInceptionV3(nn.Layer):
    """Parameter names match pytorch-fid's state dict (after BN running_* -> _mean/_variance)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, NUM_CLASSES)

    def forward(self, images):
        """images: float NCHW in [0, 1] -> (pool [N, 2048], logits without bias [N, 1008])."""
        x = F.interpolate(images, size=[299, 299], mode="bilinear", align_corners=False, align_mode=0)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        pool = x.mean(axis=[2, 3])
        return pool, paddle.matmul(pool, self.fc.weight)


def _random_state(model, seed):
    """He-normal convs, identity BatchNorm, small fc: numpy-seeded, so Paddle's global RNG is untouched."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, t in model.state_dict().items():
        shape = tuple(t.shape)
        if key.endswith("conv.weight"):
            value = rng.standard_normal(shape, np.float32) * np.sqrt(2 / np.prod(shape[1:]))
        elif key == "fc.weight":
            value = rng.standard_normal(shape, np.float32) * 0.01
        else:
            value = np.ones(shape) if key.endswith(("bn.weight", "_variance")) else np.zeros(shape)
        state[key] = paddle.to_tensor(value.astype("float32"))
    return state


class InceptionFeatures:
    """images (uint8 [N, H, W, 3]) -> (pool features [N, 2048], class probabilities [N, 1008]), float64.

    state: the Paddle state dict {key: array} of pytorch-fid's weights (reading
    and converting the .pth file is the caller's: repro.diffusion.scoring), with
    identity naming them; None gives a seeded random network (smoke runs only)."""

    def __init__(self, state=None, identity="", seed=0):
        self.model = FIDInceptionV3()
        if state is None:
            self.model.set_state_dict(_random_state(self.model, seed))
            self.identity = f"random-init seed {seed} (not comparable to published FID)"
        else:
            self.model.set_state_dict({k: paddle.to_tensor(np.asarray(v, np.float32)) for k, v in state.items()})
            self.identity = identity
        self.model.eval()

    def __call__(self, images, batch_size=32):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"InceptionFeatures takes uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
        pools, logits = [], []
        self.model.eval()
        with paddle.no_grad():
            for start in range(0, len(images), batch_size):
                chunk = images[start:start + batch_size].astype("float32").transpose(0, 3, 1, 2) / 255.0
                pool, logit = self.model(paddle.to_tensor(chunk))
                pools.append(pool.numpy().astype(np.float64))
                logits.append(logit.numpy().astype(np.float64))
        pool = np.concatenate(pools) if pools else np.zeros((0, 2048))
        logit = np.concatenate(logits) if logits else np.zeros((0, NUM_CLASSES))
        logit -= logit.max(axis=1, keepdims=True)
        probs = np.exp(logit)
        return pool, probs / probs.sum(axis=1, keepdims=True)
