"""PyTorch reference for the alignment ladder (python -m repro.align ladder).

Written from the authors' description (notebooks/models.py, notebooks/train.py
of github.com/greydanus/mnist1d): the same layers under the same attribute
names as models.py here, PyTorch's default initialisation, CrossEntropyLoss,
Adam, batches taken in order. Imported only by the ladder and the alignment
tests; the harness never needs torch.
"""
import numpy as np
import torch
from torch import nn


class LogReg(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(40, 10)

    def forward(self, x):
        return self.linear(x)


class MLP(nn.Module):
    def __init__(self, hidden_size=100):
        super().__init__()
        self.linear1 = nn.Linear(40, hidden_size)
        self.linear2 = nn.Linear(hidden_size, hidden_size)
        self.linear3 = nn.Linear(hidden_size, 10)

    def forward(self, x):
        h = self.linear1(x).relu()
        h = h + self.linear2(h).relu()
        return self.linear3(h)


class CNN(nn.Module):
    def __init__(self, channels=25):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.linear = nn.Linear(channels * 5, 10)

    def forward(self, x):
        h = x.view(-1, 1, x.shape[-1])
        h = self.conv1(h).relu()
        h = self.conv2(h).relu()
        h = self.conv3(h).relu()
        return self.linear(h.view(h.shape[0], -1))


class GRU(nn.Module):
    def __init__(self, hidden_size=6):
        super().__init__()
        self.gru = nn.GRU(1, hidden_size, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(2 * hidden_size * 40, 10)

    def forward(self, x):
        out, _ = self.gru(x.unsqueeze(-1))
        return self.linear(out.reshape(out.shape[0], -1))


def build_model(cfg):
    m = cfg.model
    return {"logreg": LogReg, "mlp": lambda: MLP(m.hidden_size), "cnn": lambda: CNN(m.channels),
            "gru": lambda: GRU(m.gru_hidden)}[m.arch]()


def loss(outputs, labels):
    return nn.functional.cross_entropy(outputs, labels)


def batch(x, y, step, batch_size):
    """The authors' batches: rows [step*bs mod N, +bs)."""
    b = (step * batch_size) % len(x)
    return x[b:b + batch_size], y[b:b + batch_size]


def accuracy(logits, labels):
    """The authors' accuracy, in percent."""
    return 100 * np.sum(np.argmax(logits, -1) == labels) / len(labels)


def optimizer(cfg, params):
    tc = cfg.train
    if tc.optimizer != "adam":
        raise NotImplementedError(f"the reference has the authors' optimizer only (adam), not {tc.optimizer}")
    return torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)


def scheduler(cfg, opt):
    """torch's own schedulers for the schedules the config can name."""
    tc = cfg.train
    if tc.warmup_steps:
        raise NotImplementedError("the reference has no warmup schedule")
    if tc.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tc.steps)
    if tc.lr_schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=tc.lr_milestones, gamma=tc.lr_gamma)
    return None
