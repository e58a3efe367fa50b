"""The paper's own data handling for the ResNet CIFAR experiments (He et al.
2016, section 4.2): the per-pixel mean image and the training augmentation
(4-pixel zero padding, a random 32x32 crop, a random horizontal flip). The
images come from repro.datasets.cifar10."""
import numpy as np

from repro.errors import ReproError

PAD = 4  # He et al. 2016: "4 pixels are padded on each side"


def per_pixel_mean(x_train):
    """The mean training image, float32 [3, 32, 32] (He et al. 2016 subtract it from every image)."""
    x = np.asarray(x_train)
    if x.ndim != 4 or x.shape[1:] != (3, 32, 32) or len(x) == 0:
        raise ReproError(f"per_pixel_mean needs images [N>0, 3, 32, 32], got {list(x.shape)}")
    return x.mean(axis=0, dtype=np.float64).astype(np.float32)


def augment(x, rng):
    """He et al. 2016's training augmentation for a float32 batch [B, 3, H, W].

    Each image is padded with 4 zero pixels on every side, a random HxW crop is
    taken (offsets 0..8 in each direction), and it is flipped horizontally with
    probability 0.5. The only randomness is ``rng`` (a ``numpy.random.Generator``):
    first the crop offsets ``rng.integers(0, 9, size=(B, 2))`` (row, column),
    then ``rng.random(B) < 0.5`` for the flips, so the result is a pure
    function of ``x`` and the generator's state.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ReproError(f"augment needs a batch [B, C, H, W], got {list(x.shape)}")
    if not isinstance(rng, np.random.Generator):
        raise ReproError(f"augment needs a numpy.random.Generator, not {type(rng).__name__}")
    b, c, h, w = x.shape
    padded = np.zeros((b, c, h + 2 * PAD, w + 2 * PAD), np.float32)
    padded[:, :, PAD:PAD + h, PAD:PAD + w] = x
    offsets = rng.integers(0, 2 * PAD + 1, size=(b, 2))
    flips = rng.random(b) < 0.5
    out = np.empty((b, c, h, w), np.float32)
    for i in range(b):  # a loop over images, not pixels: each step is one strided block copy
        dy, dx = offsets[i]
        crop = padded[i, :, dy:dy + h, dx:dx + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


