"""The four MNIST-1D models, after the authors' notebooks/models.py.

Parameters are initialised as the authors' PyTorch layers are (uniform in
±1/sqrt(fan_in) for Linear and Conv1d weights and biases; ±1/sqrt(hidden) for
the GRU), because Paddle's defaults (Xavier) would be a different experiment.
"""
import math

import numpy as np
import paddle
from paddle import _C_ops, nn


def _uniform(fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound))


def linear(n_in, n_out):
    return nn.Linear(n_in, n_out, weight_attr=_uniform(n_in), bias_attr=_uniform(n_in))


_WINDOWS = {}


@paddle.jit.not_to_static
def _padded(x, pad, n, k, stride):
    """x zero-padded by pad on both ends of its length axis, and the positions of its n windows of k,
    stride apart, one after another (int64). Eagerly: Paddle's pad kernel (called directly: F.pad's
    NLC form adds an unsqueeze, a squeeze and its argument checks) and the positions made once;
    traced for export: zeros concatenated (F.pad's NLC form gives a wrong shape under oneDNN inference)
    and the positions as the program's own constant. Zeros are zeros, so both give the same numbers."""
    positions = (np.arange(n)[:, None] * stride + np.arange(k)[None, :]).reshape(-1)
    if not paddle.in_dynamic_mode():
        zeros = paddle.zeros_like(x[:, :pad])
        return paddle.concat([zeros, x, zeros], axis=1), paddle.to_tensor(positions, dtype="int64")
    if (n, k, stride) not in _WINDOWS:
        _WINDOWS[n, k, stride] = paddle.to_tensor(positions, dtype="int64")
    return _C_ops.pad(x, [0, 0, pad, pad, 0, 0], 0.0), _WINDOWS[n, k, stride]


class Conv1D(nn.Conv1D):
    """Paddle's Conv1D (the same weight [out, in, kernel], bias and state-dict names) computed
    channels-last, [batch, length, channels] in and out, as one matrix product over the whole batch:
    every window gathered at once (index_select), then one linear layer with the bias folded in.

    The same function as the native layer, in another summation order (about 1e-7 apart in float32):
    Paddle's CPU convolution loops over the batch with one small im2col and GEMM per sample and adds
    the bias in a separate op, and on this model's shapes that made the whole update 2.3 times slower
    (benchmarks/kernels.py measures both). Its ops are Paddle's kernels called directly (paddle._C_ops,
    what paddle.nn.functional calls after its argument checks): the same kernels, so the same bits,
    and on ops this small the checks cost a fifth to a quarter of the update (README, "Speed").
    reference_axes tells repro.align.localize how to lay the output out as the
    authors' channels-first Conv1d does."""

    reference_axes = (0, 2, 1)

    def forward(self, x):
        w = self.weight
        c_out, c_in, k = w.shape
        stride, pad = self._stride[0], self._padding
        n = (x.shape[1] + 2 * pad - k) // stride + 1
        padded, windows = _padded(x, pad, n, k, stride)
        cols = _C_ops.reshape(_C_ops.index_select(padded, windows, 1), [-1, k * c_in])
        # the copy (assign, what clone() calls): under paddle.DataParallel (Paddle 3.3) a parameter whose
        # gradient comes straight from a transpose has that gradient left out of the all-reduce, so the ranks
        # drift apart (measured); the copy is exact, so the numbers are those without it
        weight = _C_ops.reshape(_C_ops.transpose(_C_ops.assign(w), [2, 1, 0]), [k * c_in, c_out])
        out = _C_ops.add(_C_ops.matmul(cols, weight, False, False), self.bias)  # F.linear's two kernels
        return _C_ops.reshape(out, [-1, n, c_out])


def conv1d(c_in, c_out, k, stride, padding):
    fan_in = c_in * k
    return Conv1D(c_in, c_out, k, stride=stride, padding=padding,
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

    def forward(self, x):  # Paddle's kernels called directly, as in Conv1D
        h = _C_ops.unsqueeze(x, [-1])  # [batch, 40, 1]: channels last, as the convolutions take them
        h = _C_ops.relu(self.conv1(h))
        h = _C_ops.relu(self.conv2(h))
        h = _C_ops.relu(self.conv3(h))
        h = _C_ops.flatten(_C_ops.transpose(h, [0, 2, 1]), 1, -1)  # the authors' order: channel, then position
        return self.linear(h)


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
