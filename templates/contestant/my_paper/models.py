"""The authors' MNIST-1D CNN (notebooks/models.py), with their PyTorch initialisation:
weights and biases uniform in +-1/sqrt(fan_in) (Paddle's default would be another experiment)."""
import math

import paddle
from paddle import nn


def _uniform(fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound))


def _conv1d(c_in, c_out, k):
    return nn.Conv1D(c_in, c_out, k, stride=2, padding=1,
                     weight_attr=_uniform(c_in * k), bias_attr=_uniform(c_in * k))


class CNN(nn.Layer):
    def __init__(self, output_size=10, channels=25, linear_in=125):
        super().__init__()
        self.conv1 = _conv1d(1, channels, 5)
        self.conv2 = _conv1d(channels, channels, 3)
        self.conv3 = _conv1d(channels, channels, 3)
        self.linear = nn.Linear(linear_in, output_size, weight_attr=_uniform(linear_in),
                                bias_attr=_uniform(linear_in))

    def forward(self, x):
        h = x.unsqueeze(1)  # [batch, 1, 40]
        h = nn.functional.relu(self.conv1(h))
        h = nn.functional.relu(self.conv2(h))
        h = nn.functional.relu(self.conv3(h))
        return self.linear(h.flatten(1))
