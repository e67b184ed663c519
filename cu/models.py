"""CIFAR-stem ResNets with the embedding head of the authors' SupConResNet.

F = H(E(x)) (the paper's Sec. 3.2). E is the encoder followed by a projection MLP
(dim_in -> dim_in -> 128) and L2 normalisation: its output z is the embedding that the
contrastive loss acts on. H is ReLU -> Linear(128, C) on top of z, as in the authors' code
(Hongkyu-Lee/Contrastive-Unlearning, core/model/resnet.py), so the cross-entropy and the
contrastive loss share z.

ResNet-18/34/50/101 (He et al. 2016) with the CIFAR stem: 3x3 conv, stride 1, no max-pool.
`width` is the channel count of the first stage (64 in the paper; 16 runs on a laptop CPU).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cu.runtime import as_int

EMBED_DIM = 128


class Conv1x1(nn.Conv2d):
    """A bias-free 1x1 convolution with stride s, computed as subsample-then-1x1 (the same function).

    oneDNN's weight gradient of a strided 1x1 convolution is not run-to-run deterministic on CPU;
    subsampling first gives the same values through a deterministic path.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__(c_in, c_out, 1, stride=1, bias=False)
        self.step = stride

    def forward(self, x):
        return F.conv2d(x[:, :, :: self.step, :: self.step], self.weight)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c:
            self.shortcut = nn.Sequential(Conv1x1(c_in, c, stride), nn.BatchNorm2d(c))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, c: int, stride: int = 1):
        super().__init__()
        c_out = c * self.expansion
        self.conv1 = nn.Conv2d(c_in, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(Conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


ARCHS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}
MODELS = tuple(ARCHS)


class ResNetEncoder(nn.Module):
    """CIFAR-stem ResNet trunk: features after global average pooling (dim_out channels)."""

    def __init__(self, block, num_blocks, in_channels: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, c_in = [], width
        for i, n in enumerate(num_blocks):
            c = width * 2**i
            for j in range(n):
                layers.append(block(c_in, c, stride=2 if (i > 0 and j == 0) else 1))
                c_in = c * block.expansion
        self.layers = nn.Sequential(*layers)
        self.dim_out = c_in

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


class UnlearnNet(nn.Module):
    """encoder -> projection MLP -> L2-normalised z (the embedding E(x)) -> ReLU -> Linear (H)."""

    def __init__(self, encoder: ResNetEncoder, num_classes: int, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.encoder = encoder
        d = encoder.dim_out
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, embed_dim))
        self.classifier = nn.Sequential(nn.ReLU(), nn.Linear(embed_dim, num_classes))
        self.num_classes = num_classes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """z = E(x): the L2-normalised embedding (B x 128)."""
        return F.normalize(self.head(self.encoder(x)), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits H(E(x))."""
        return self.classifier(self.embed(x))

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, z) from one forward pass."""
        z = self.embed(x)
        return self.classifier(z), z


def build_model(name: str = "resnet18", num_classes: int = 10, in_channels: int = 3, width: int = 64) -> UnlearnNet:
    """A CIFAR-stem ResNet with the paper's embedding head, in channels_last memory format."""
    if name not in ARCHS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    width, num_classes, in_channels = (as_int(width, "width"), as_int(num_classes, "num_classes"),
                                       as_int(in_channels, "in_channels"))
    if width < 1 or num_classes < 2 or in_channels < 1:
        raise ValueError(f"need width >= 1, num_classes >= 2, in_channels >= 1; got {width}, {num_classes}, {in_channels}")
    block, blocks = ARCHS[name]
    model = UnlearnNet(ResNetEncoder(block, blocks, in_channels, width), num_classes)
    # what build_model needs to make a fresh copy (Retrain starts from one)
    model.arch = {"name": name, "num_classes": num_classes, "in_channels": in_channels, "width": width}
    return model.to(memory_format=torch.channels_last)
