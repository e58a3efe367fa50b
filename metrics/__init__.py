"""Evaluation metrics: small pure objects (update / compute) chosen by name."""
from repro.metrics.classification import Accuracy
from repro.metrics.generative import FID, CLIPImageSimilarity, CLIPScore, InceptionScore
from repro.names import Registry

METRICS = Registry("metric")
METRICS.register("accuracy", Accuracy)
METRICS.register("fid", FID)
METRICS.register("inception_score", InceptionScore)
METRICS.register("clip_score", CLIPScore)
METRICS.register("clip_image_similarity", CLIPImageSimilarity)


def build_metric(name, **kwargs):
    return METRICS.get(name)(**kwargs)
