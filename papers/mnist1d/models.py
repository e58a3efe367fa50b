"""The four MNIST-1D models, after the authors' notebooks/models.py.

Parameters are initialised as the authors' PyTorch layers are (uniform in
±1/sqrt(fan_in) for Linear and Conv1d weights and biases; ±1/sqrt(hidden) for
the GRU), because Paddle's defaults (Xavier) would be a different experiment.
"""
import math

import paddle
from paddle import nn


def _uniform(fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound))


def linear(n_in, n_out):
    return nn.Linear(n_in, n_out, weight_attr=_uniform(n_in), bias_attr=_uniform(n_in))


def conv1d(c_in, c_out, k, stride, padding):
    fan_in = c_in * k
    return nn.Conv1D(c_in, c_out, k, stride=stride, padding=padding,
                     weight_attr=_uniform(fan_in), bias_attr=_uniform(fan_in))


class LogReg(nn.Layer):
    def __init__(self, input_size=40, output_size=10):
        super().__init__()
        self.linear = linear(input_size, output_size)

    def forward(self, x):
        return self.linear(x)


class MLP(nn.Layer):
    def __init__(self, input_size=40, output_size=10, hidden_size=100):
        super().__init__()
        self.linear1 = linear(input_size, hidden_size)
        self.linear2 = linear(hidden_size, hidden_size)
        self.linear3 = linear(hidden_size, output_size)

    def forward(self, x):
        h = nn.functional.relu(self.linear1(x))
        h = h + nn.functional.relu(self.linear2(h))
        return self.linear3(h)


class CNN(nn.Layer):
    def __init__(self, output_size=10, channels=25, linear_in=125):
        super().__init__()
        self.conv1 = conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = conv1d(channels, channels, 3, stride=2, padding=1)
        self.linear = linear(linear_in, output_size)

    def forward(self, x):
        h = x.unsqueeze(1)  # [batch, 1, 40]
        h = nn.functional.relu(self.conv1(h))
        h = nn.functional.relu(self.conv2(h))
        h = nn.functional.relu(self.conv3(h))
        return self.linear(h.flatten(1))


class GRU(nn.Layer):
    def __init__(self, output_size=10, hidden_size=6, time_steps=40):
        super().__init__()
        # Paddle's GRU already initialises every weight in ±1/sqrt(hidden), as PyTorch does.
        self.gru = nn.GRU(1, hidden_size, direction="bidirect")
        self.linear = linear(2 * hidden_size * time_steps, output_size)

    def forward(self, x):
        out, _ = self.gru(x.unsqueeze(-1))  # [batch, 40, 2*hidden]; zero initial state
        return self.linear(out.flatten(1))


def build(arch, cfg):
    if arch == "logreg":
        return LogReg()
    if arch == "mlp":
        return MLP(hidden_size=cfg.hidden_size)
    if arch == "cnn":
        return CNN(channels=cfg.channels, linear_in=cfg.channels * 5)
    if arch == "gru":
        return GRU(hidden_size=cfg.gru_hidden)
    raise ValueError(arch)
