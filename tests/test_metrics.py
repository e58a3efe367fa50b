import numpy as np
import pytest

from repro.metrics import METRICS, build_metric


def test_accuracy_known_answer_over_batches():
    m = build_metric("accuracy")
    m.update(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))
    m.update(np.array([[0.3, 0.7], [0.6, 0.4]]), np.array([1, 0]))
    assert m.compute() == 75.0
    m.reset()
    with pytest.raises(ValueError):
        m.compute()


def test_accuracy_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        build_metric("accuracy").update(np.zeros((3, 2)), np.zeros(2))


def test_metric_registry_is_strict():
    assert "accuracy" in METRICS.names()
    with pytest.raises(Exception, match="unknown metric 'bleu'"):
        build_metric("bleu")
