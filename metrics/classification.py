import numpy as np


class Accuracy:
    """Top-1 accuracy in percent over everything passed to update()."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.correct = 0
        self.total = 0

    def update(self, logits, labels):
        logits = np.asarray(logits)
        labels = np.asarray(labels).reshape(-1)
        if logits.shape[0] != labels.shape[0]:
            raise ValueError(f"{logits.shape[0]} predictions for {labels.shape[0]} labels")
        self.correct += int((logits.argmax(-1) == labels).sum())
        self.total += labels.shape[0]

    def compute(self):
        if self.total == 0:
            raise ValueError("accuracy of zero samples")
        return 100.0 * self.correct / self.total

    @staticmethod
    def impossible(value, n):
        """Why `value` cannot be an accuracy over n samples (it must be 100 k / n
        for a whole k), or None."""
        if not 0 <= value <= 100:
            return f"{value!r} is not a percentage"
        k = round(value * n / 100.0)
        if abs(100.0 * k / n - value) > 1e-9 * max(1.0, abs(value)):
            return f"{value!r} is not k/{n} of the {n} samples for any whole k"
        return None
