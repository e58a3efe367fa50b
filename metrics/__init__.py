"""Evaluation metrics: small pure objects (update / compute) chosen by name."""
from metrics.classification import Accuracy
from repro.registry import Registry

METRICS = Registry("metric")
METRICS.register("accuracy", Accuracy)


def build_metric(name, **kwargs):
    return METRICS.get(name)(**kwargs)
