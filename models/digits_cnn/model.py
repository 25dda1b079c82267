"""Digits CNN: a small ResNet (BatchNorm, residual blocks) for scikit-learn's 8x8 digits,
upsampled to 32x32. Factory for dlopt: `models/digits_cnn/model.py:create_model`."""

from __future__ import annotations

import torch
from torch import nn

# Default input spec for dlopt: a dynamic batch of 1-channel 32x32 images.
DLOPT_INPUTS = ["image:batch=1x1x32x32"]
NUM_CLASSES = 10


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a skip connection (1x1 conv when shapes change)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class DigitsResNet(nn.Module):
    """stem 48 ch @32x32 -> 2 blocks 48 ch -> 2 blocks 96 ch @16x16 -> 2 blocks 192 ch @8x8.

    Wide enough that batch-1 FP32 latency is a few ms on a 2-core CPU, so that INT8 and pruning
    speedups are measurable rather than lost in per-call overhead.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 48, 3, 1, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU()
        )
        self.layer1 = nn.Sequential(ResidualBlock(48, 48), ResidualBlock(48, 48))
        self.layer2 = nn.Sequential(ResidualBlock(48, 96, 2), ResidualBlock(96, 96))
        self.layer3 = nn.Sequential(ResidualBlock(96, 192, 2), ResidualBlock(192, 192))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(192, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(image))))
        return self.fc(torch.flatten(self.pool(x), 1))


def create_model() -> nn.Module:
    """The untrained network; load `weights.pt` beside this file with dlopt's --weights."""
    return DigitsResNet()
