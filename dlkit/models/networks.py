"""The CNNs of chapter 04, reused in chapters 07-09: :class:`ArticleCNN`, :class:`SmallCNN` and
:class:`ResNetCIFAR`, all taking normalised ``N×3×32×32`` inputs and returning ``N×num_classes``
logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dlkit.models.arithmetic import conv_output_shape




# --------------------------------------------------------------------------- #
# Models
# --------------------------------------------------------------------------- #
def _check_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")


class ArticleCNN(nn.Module):
    """The source article's CNN with its two bugs fixed (chapter 01 finds them).

    Used in chapter 01 (quickstart) and as the baseline of chapter 04 (CNN design).
    One 3×3 convolution with 64 channels, ReLU and 2×2 max pooling, then two fully connected
    layers: ``F.relu`` is applied instead of constructing ``nn.ReLU(tensor)``, and the first
    fully connected layer's size is derived from the image size (64×16×16 at 32×32) instead
    of the article's 64×7×7. Cost at 32×32: 4,198,922 parameters, 99.9% of them in the first
    fully connected layer, and 11.9 MFLOPs per image (see chapter 04's table).

    Args:
        num_classes: Number of outputs.
        image_size: Height = width of the input images.
    """

    def __init__(self, num_classes: int = 10, image_size: int = 32) -> None:
        super().__init__()
        _check_classes(num_classes)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        n = conv_output_shape(conv_output_shape(image_size, 3, 1, 1), 2, 2)
        self.fc1 = nn.Linear(64 * n * n, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = x.flatten(1)  # keeps the batch dimension, unlike the article's view(-1, 64*7*7)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def conv_bn_relu(c_in: int, c_out: int, batch_norm: bool = True) -> nn.Sequential:
    """A 3×3 convolution (padding 1), optional batch norm, and ReLU.

    The convolution has no bias when batch norm follows: batch norm subtracts the mean,
    which would cancel any bias, and adds its own shift.
    """
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """A fast CNN for CPU training: four conv-BN-ReLU-pool stages and a linear classifier.

    Used in chapter 04 (CNN design) and by chapters 07-09 as their workhorse. Stage ``i``
    has ``width * 2**i`` channels and halves the resolution with 2×2 max pooling
    (32 → 16 → 8 → 4 → 2), and a global average pool feeds the linear layer; each convolution
    works on an already pooled map except the first, which keeps the cost low. With the
    defaults (``width=32``): 391,466 parameters and 30.1 MFLOPs per 32×32 image (chapter 04
    prints both with :func:`count_params` and :func:`count_flops`).

    Args:
        num_classes: Number of outputs.
        width: Channels of the first stage (the others double it each stage).
        batch_norm: Put batch norm after each convolution (the chapter's ablation turns it off).
        dropout: Dropout probability before the linear layer.
        stages: Number of conv-pool stages (2 to 5 for 32×32 inputs).
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 32,
        batch_norm: bool = True,
        dropout: float = 0.0,
        stages: int = 4,
    ) -> None:
        super().__init__()
        _check_classes(num_classes)
        if width < 1 or stages < 1:
            raise ValueError(f"width and stages must be >= 1, got {width} and {stages}")
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(stages):
            c_out = width * 2**i
            layers += [conv_bn_relu(c_in, c_out, batch_norm), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """The two-convolution block of ResNet-18/34 (He et al., 2016), with an optional shortcut.

    Used in chapter 04 (CNN design). ``out = relu(F(x) + shortcut(x))`` with
    ``F = conv-BN-relu-conv-BN``; the shortcut is the identity, or a strided 1×1 convolution
    with batch norm where the shape changes. With ``residual=False`` the addition is dropped
    and the block is two plain convolutions: the chapter's degradation experiment.

    Args:
        c_in: Input channels.
        c_out: Output channels.
        stride: Stride of the first convolution (2 halves the resolution).
        residual: Add the shortcut.
        batch_norm: Use batch norm after each convolution.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, residual: bool = True,
                 batch_norm: bool = True) -> None:
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
        self.residual = residual
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not batch_norm)
        self.bn1 = norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=not batch_norm)
        self.bn2 = norm(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if residual and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=not batch_norm), norm(c_out))

    def longest_path(self) -> tuple[nn.Module, nn.Module]:
        """The layers that set the block's receptive field: the two 3×3 convolutions."""
        return self.conv1, self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return F.relu(out)


class ResNetCIFAR(nn.Module):
    """A ResNet for 32×32 images: a 3×3 stem, stages of :class:`BasicBlock`, a linear head.

    Used in chapter 04 (CNN design; its GPU recipe is ``benchmarks/resnet_gpu.py``) and later
    chapters. Stage ``i`` has ``width * 2**i`` channels; every stage after the first starts with
    a stride-2 block. The defaults, ``blocks=(2, 2, 2, 2)`` and ``width=64``, give the CIFAR
    variant of ResNet-18 (He et al., 2016; the ImageNet stem's 7×7 stride-2 convolution and max
    pool are replaced by one 3×3 convolution so that 32×32 images are not shrunk at once):
    11,173,962 parameters and 1.11 GFLOPs per image, too slow for the CPU profile; chapter 04
    trains thin versions such as ``ResNetCIFAR(blocks=(3, 3, 3), width=16)`` (ResNet-20).

    Args:
        num_classes: Number of outputs.
        blocks: Number of blocks in each stage.
        width: Channels of the first stage.
        residual: Use shortcut connections (``False`` gives the "plain" network of the same
            depth, the comparison of He et al.).
        batch_norm: Use batch norm after each convolution.
        zero_init_residual: Start each block's last batch norm scale at 0 so that every
            residual block begins as the identity (Goyal et al., 2017); needs ``residual`` and
            ``batch_norm``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        blocks: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        residual: bool = True,
        batch_norm: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        _check_classes(num_classes)
        blocks = tuple(blocks)
        if not blocks or min(blocks) < 1 or width < 1:
            raise ValueError(f"blocks must be positive counts and width >= 1, got {blocks}, {width}")
        if zero_init_residual and not (residual and batch_norm):
            raise ValueError("zero_init_residual needs residual=True and batch_norm=True")
        self.stem = conv_bn_relu(3, width, batch_norm)
        stages: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            stage = [BasicBlock(c_in if j == 0 else c_out, c_out, 2 if i > 0 and j == 0 else 1,
                                residual, batch_norm) for j in range(n)]
            stages.append(nn.Sequential(*stage))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
