"""Metrics for generated images, on features a model has already extracted.

The feature extractors (an Inception-style network for FID and IS, a CLIP model
for the CLIP score) are the caller's; these objects only do the arithmetic, so
it can be tested on known answers.

  FID   Fréchet distance between Gaussians fitted to reference and generated
        features: |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))
        (Heusel et al. 2017). A set against itself gives 0.
  IS    Inception Score exp(E_x KL(p(y|x) || p(y))) over class probabilities,
        mean and std over `splits` chunks (Salimans et al. 2016).
  CLIP  CLIP score: mean over pairs of max(100 * cos(image, text), 0)
        (Hessel et al. 2021); `scale=1` gives plain cosine, as MLPerf's SD
        benchmark reports it (threshold 0.15).
"""
import numpy as np


def gaussian_stats(features):
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need features [N >= 2, D], got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    from scipy import linalg

    diff = np.asarray(mu1) - np.asarray(mu2)
    covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
    if not np.isfinite(covmean).all():  # a singular product: nudge the diagonals, as pytorch-fid does
        eps = 1e-6 * np.eye(len(sigma1))
        covmean = linalg.sqrtm((sigma1 + eps) @ (sigma2 + eps))
    covmean = np.real(covmean)  # sqrtm may leave tiny imaginary parts from rounding
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance_low_rank(f1, f2):
    """The same distance from the features themselves, for sets smaller than the
    feature dimension. With centred rows A (n1 x D) and B (n2 x D),
    S1 = A'A/(n1-1) and S2 = B'B/(n2-1), the non-zero eigenvalues of S1 S2 are
    the squared singular values of A B' / sqrt((n1-1)(n2-1)), so
    Tr (S1 S2)^(1/2) is that matrix's nuclear norm: exact, and an n1 x n2 SVD
    instead of a D x D matrix square root (2048 x 2048: ~17 s on 2 cores)."""
    a = np.asarray(f1, np.float64)
    b = np.asarray(f2, np.float64)
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    a, b = a - mu1, b - mu2
    n1, n2 = len(a) - 1, len(b) - 1
    diff = mu1 - mu2
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(n1 * n2)
    return float(diff @ diff + (a * a).sum() / n1 + (b * b).sum() / n2 - 2.0 * cross)


class FID:
    """update() with generated features; compared with the reference features given at construction.
    Sets smaller than the feature dimension take the exact low-rank route."""

    def __init__(self, reference_features=None):
        self.features = None if reference_features is None else np.asarray(reference_features, np.float64)
        self.reference = None if reference_features is None else gaussian_stats(reference_features)
        self.reset()

    def reset(self):
        self.parts = []

    def update(self, features):
        self.parts.append(np.asarray(features, np.float64))

    def compute(self):
        if self.reference is None:
            raise ValueError("FID needs reference features")
        generated = np.concatenate(self.parts)
        if max(len(generated), len(self.features)) < generated.shape[1]:
            gaussian_stats(generated)  # the same shape checks
            return frechet_distance_low_rank(self.features, generated)
        mu, sigma = gaussian_stats(generated)
        return frechet_distance(*self.reference, mu, sigma)


class InceptionScore:
    def __init__(self, splits=10):
        self.splits = splits
        self.reset()

    def reset(self):
        self.parts = []

    def update(self, probs):
        p = np.asarray(probs, np.float64)
        if p.ndim != 2 or not np.allclose(p.sum(1), 1, atol=1e-4) or (p < 0).any():
            raise ValueError("InceptionScore takes class probabilities [N, classes] (rows summing to 1)")
        self.parts.append(p)

    def compute(self):
        """(mean, std) over the splits."""
        p = np.concatenate(self.parts)
        scores = []
        for chunk in np.array_split(p, self.splits):
            marginal = chunk.mean(axis=0, keepdims=True)
            kl = (chunk * (np.log(chunk + 1e-12) - np.log(marginal + 1e-12))).sum(axis=1)
            scores.append(float(np.exp(kl.mean())))
        return float(np.mean(scores)), float(np.std(scores))


class CLIPScore:
    def __init__(self, scale=100.0):
        self.scale = scale
        self.reset()

    def reset(self):
        self.total, self.count = 0.0, 0

    def update(self, image_embeddings, text_embeddings):
        a = np.asarray(image_embeddings, np.float64)
        b = np.asarray(text_embeddings, np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{a.shape} image embeddings for {b.shape} text embeddings")
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        self.total += float(np.maximum(self.scale * cos, 0).sum())
        self.count += len(a)

    def compute(self):
        if self.count == 0:
            raise ValueError("CLIP score of zero pairs")
        return self.total / self.count


class CLIPImageSimilarity:
    """CLIP-I of DreamBooth (Ruiz et al. 2023): the mean cosine between the
    CLIP image embeddings of every generated image and every real subject image."""

    def __init__(self, reference_embeddings=None):
        self.reference = None if reference_embeddings is None else _unit(reference_embeddings)
        self.reset()

    def reset(self):
        self.total, self.count = 0.0, 0

    def update(self, image_embeddings):
        if self.reference is None:
            raise ValueError("CLIPImageSimilarity needs the real images' embeddings")
        cos = _unit(image_embeddings) @ self.reference.T
        self.total += float(cos.sum())
        self.count += cos.size

    def compute(self):
        if self.count == 0:
            raise ValueError("CLIP-I of zero images")
        return self.total / self.count


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
