"""FID, IS and CLIP score on known answers (the arithmetic; extractors are separate)."""
import numpy as np
import pytest
from scipy import linalg

from repro.metrics import build_metric
from repro.metrics.generative import frechet_distance


def features(n, d, seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ (np.eye(d) * scale + 0.1 * rng.standard_normal((d, d))) + shift


def test_fid_of_a_set_with_itself_is_zero():
    f = features(500, 16, 0)
    fid = build_metric("fid", reference_features=f)
    fid.update(f[:250])
    fid.update(f[250:])
    assert abs(fid.compute()) < 1e-6


def test_fid_equals_a_direct_scipy_computation():
    a, b = features(400, 8, 1), features(300, 8, 2, shift=0.5, scale=1.3)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2)))
    fid = build_metric("fid", reference_features=a)
    fid.update(b)
    assert fid.compute() == pytest.approx(direct, rel=1e-9)
    assert direct > 1.0


def test_frechet_distance_of_gaussians_with_known_answer():
    # same covariance: the distance is the squared distance of the means
    sigma = np.diag([1.0, 2.0, 3.0])
    assert frechet_distance(np.zeros(3), sigma, np.array([1.0, 2.0, 2.0]), sigma) == pytest.approx(9.0)
    # diagonal covariances: sum of (sqrt(a) - sqrt(b))^2
    assert frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.zeros(2), np.diag([4.0, 9.0])) == pytest.approx(2.0)


def test_inception_score_bounds():
    uniform = build_metric("inception_score", splits=2)
    uniform.update(np.full((100, 10), 0.1))
    assert uniform.compute()[0] == pytest.approx(1.0)  # no confident class: the minimum
    sharp = build_metric("inception_score", splits=1)
    sharp.update(np.eye(10)[np.arange(100) % 10])
    assert sharp.compute()[0] == pytest.approx(10.0, rel=1e-6)  # confident and diverse: the number of classes
    with pytest.raises(ValueError):
        build_metric("inception_score").update(np.ones((3, 4)))


def test_clip_score_is_100_cosine_clipped_at_zero():
    clip = build_metric("clip_score")
    clip.update(np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]))
    assert clip.compute() == pytest.approx((100 + 100 / np.sqrt(2) + 0) / 3)
    plain = build_metric("clip_score", scale=1.0)
    plain.update(np.array([[3.0, 4.0]]), np.array([[3.0, 4.0]]))
    assert plain.compute() == pytest.approx(1.0)


def test_clip_image_similarity_is_the_mean_pairwise_cosine():
    from repro.metrics.generative import CLIPImageSimilarity
    rng = np.random.default_rng(3)
    real, gen = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
    m = CLIPImageSimilarity(real * 7.0)  # the scale of an embedding does not matter
    m.update(gen[:2])
    m.update(gen[2:])
    direct = np.mean([[g @ r / np.linalg.norm(g) / np.linalg.norm(r) for r in real] for g in gen])
    assert m.compute() == pytest.approx(direct, abs=1e-12)
    same = CLIPImageSimilarity(real)
    same.update(real[:1] * 2.0)
    assert same.compute() == pytest.approx(np.mean([real[0] @ r / np.linalg.norm(real[0]) / np.linalg.norm(r)
                                                    for r in real]))
    with pytest.raises(ValueError):
        CLIPImageSimilarity().update(gen)


def test_low_rank_fid_equals_the_matrix_square_root_route():
    """Fewer samples than features: the nuclear-norm form gives the sqrtm answer."""
    from repro.metrics.generative import FID, frechet_distance_low_rank, gaussian_stats
    rng = np.random.default_rng(11)
    for n1, n2, d in ((12, 9, 40), (30, 30, 64), (5, 20, 32)):
        a = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d))
        b = rng.normal(1.0, 2.0, size=(n2, d))
        direct = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
        assert frechet_distance_low_rank(a, b) == pytest.approx(direct, rel=1e-6)
        m = FID(a)
        m.update(b)
        assert m.compute() == pytest.approx(direct, rel=1e-6)
    same = rng.normal(size=(10, 50))
    assert frechet_distance_low_rank(same, same) == pytest.approx(0.0, abs=1e-9)
