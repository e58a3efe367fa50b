"""LeNet-5 as in LeCun et al. 1998, Section II.B, with two stated departures.

Kept: 32x32 input; C1 6@5x5; S2 2x2 subsampling (sum x trainable coefficient +
trainable bias, then the squashing function); C3 16@5x5 with the paper's
connection table (Table I: each C3 map sees only some S2 maps); S4 as S2; C5
120@5x5; F6 84; squashing f(a) = 1.7159 tanh(2a/3).
Departures: the output layer is a Linear(84 -> 10) trained with cross-entropy
instead of 10 Euclidean RBF units with hand-drawn 7x12 bitmaps and the paper's
MAP criterion (the bitmaps are not published as data); the S2/S4 "subsampling"
is an average pool times 4 (the same sum) with per-map coefficient and bias.
"""
import numpy as np
import paddle
from paddle import nn

# Table I: rows are S2 maps 0-5, columns C3 maps 0-15; X marks a connection
_TABLE = [
    "X   XXX  XXXX XX",
    "XX   XXX  XXXX X",
    "XXX   XXX  X XXX",
    " XXX  XXXX  X XX",
    "  XXX  XXXX XX X",
    "   XXX  XXXX XXX",
]
C3_MASK = np.array([[c == "X" for c in row] for row in _TABLE], dtype=np.float32).T  # [16, 6]


def squash(a):
    return 1.7159 * paddle.tanh(a * (2.0 / 3.0))


class Subsample(nn.Layer):
    """Sum of each 2x2 block, times a trainable per-map coefficient, plus a bias."""

    def __init__(self, maps):
        super().__init__()
        self.pool = nn.AvgPool2D(2, 2)
        self.coef = self.create_parameter([1, maps, 1, 1], default_initializer=nn.initializer.Constant(0.25))
        self.bias = self.create_parameter([1, maps, 1, 1], default_initializer=nn.initializer.Constant(0.0))

    def forward(self, x):
        return self.pool(x) * 4.0 * self.coef + self.bias


class LeNet5(nn.Layer):
    def __init__(self, classes=10):
        super().__init__()
        self.c1 = nn.Conv2D(1, 6, 5)
        self.s2 = Subsample(6)
        self.c3 = nn.Conv2D(6, 16, 5)
        self.register_buffer("c3_mask", paddle.to_tensor(C3_MASK[:, :, None, None]))
        self.s4 = Subsample(16)
        self.c5 = nn.Conv2D(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.out = nn.Linear(84, classes)

    def forward(self, x):
        h = squash(self.s2(squash(self.c1(x))))
        h = nn.functional.conv2d(h, self.c3.weight * self.c3_mask, self.c3.bias)  # the connection table
        h = squash(self.s4(squash(h)))
        h = squash(self.c5(h)).flatten(1)
        return self.out(squash(self.f6(h)))
