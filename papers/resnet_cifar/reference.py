"""PyTorch ResNet for CIFAR-10 (option A), under the same attribute names as
models.py, so weights convert (repro.align) and speeds compare
(benchmarks/resnet_throughput.py). Imported only there; the harness never needs torch."""
import torch
from torch import nn

from .models import DEPTHS


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pad, self.stride = c_out - c_in, stride

    def shortcut(self, x):
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad // 2))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, depth=20, classes=10):
        super().__init__()
        n = DEPTHS[depth]
        self.register_buffer("pixel_mean", torch.zeros(3, 32, 32))
        self.conv, self.bn = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for stage, c_out in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x - self.pixel_mean)))
        return self.fc(self.blocks(h).mean(dim=(2, 3)))


def build_model(cfg):
    return ResNetCifar(cfg.model.depth, cfg.model.classes)
