"""ResNets for CIFAR-10, He et al. 2016, Section 4.2.

6n+2 layers: a 3x3 conv with 16 filters, three stages of n basic blocks (two
3x3 convs each) on 32x32, 16x16 and 8x8 maps with 16, 32 and 64 filters, global
average pooling, a 10-way fully connected layer. Option A shortcuts: identity,
and where the size changes, a stride-2 subsampling padded with zero channels
(no parameters). Weights initialised as He et al. 2015 ("[13]"); batch norm
after each conv; no dropout. The per-pixel mean of the training images is a
buffer of the model, so checkpoints and exported models carry it.
"""
import paddle
from paddle import nn

DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}


def conv3x3(c_in, c_out, stride=1):
    return nn.Conv2D(c_in, c_out, 3, stride=stride, padding=1, bias_attr=False,
                     weight_attr=nn.initializer.KaimingNormal())


class BasicBlock(nn.Layer):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(c_in, c_out, stride), nn.BatchNorm2D(c_out)
        self.conv2, self.bn2 = conv3x3(c_out, c_out), nn.BatchNorm2D(c_out)
        self.pad = c_out - c_in
        self.stride = stride

    def shortcut(self, x):
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        zeros = paddle.zeros([x.shape[0], self.pad // 2, x.shape[2], x.shape[3]], x.dtype)
        return paddle.concat([zeros, x, zeros], axis=1)  # option A: pad the new channels with zeros

    def forward(self, x):
        h = nn.functional.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return nn.functional.relu(h + self.shortcut(x))


class ResNetCifar(nn.Layer):
    def __init__(self, depth=20, classes=10):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(depth)
        n = DEPTHS[depth]
        self.register_buffer("pixel_mean", paddle.zeros([3, 32, 32]))
        self.conv, self.bn = conv3x3(3, 16), nn.BatchNorm2D(16)
        blocks, c_in = [], 16
        for stage, c_out in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        h = nn.functional.relu(self.bn(self.conv(x - self.pixel_mean)))
        h = self.blocks(h)
        return self.fc(h.mean(axis=[2, 3]))
