"""Convolutional networks for CIFAR-sized images, and the arithmetic to reason about them.

Chapter 04 (CNN design) teaches with this module; chapters 07-09 reuse its models.

* Arithmetic: :func:`conv_output_shape` and :func:`layer_output_shape` (the size formula of
  convolution and pooling layers), :func:`receptive_field` of a stack of layers,
  :func:`count_params`, and :func:`count_flops`, which asks PyTorch's own
  :class:`~torch.utils.flop_counter.FlopCounterMode` rather than a hand-written counter.
* Models: :class:`ArticleCNN` (the source article's network with its bugs fixed),
  :class:`SmallCNN` (a fast batch-norm CNN for CPU training) and :class:`ResNetCIFAR` (a
  ResNet for 32×32 inputs; ResNet-18 with the default arguments), all taking normalised float
  ``N×3×32×32`` inputs and returning ``N×num_classes`` logits.
* Training on a budget: :func:`random_crop_flip` (batched augmentation as tensor ops, for
  ``fit(train_transform=...)``) and :func:`train_budgeted`, which trains any model with one
  recipe for a fixed number of images and measures what chapter 04 compares.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from dlkit import augment
from dlkit._util import eval_mode

__all__ = [
    "ArticleCNN",
    "BasicBlock",
    "ReceptiveField",
    "ResNetCIFAR",
    "RunResult",
    "SmallCNN",
    "conv_output_shape",
    "count_flops",
    "count_params",
    "feature_maps",
    "layer_output_shape",
    "random_crop_flip",
    "receptive_field",
    "train_budgeted",
]

IntPair = int | tuple[int, int]


# --------------------------------------------------------------------------- #
# Arithmetic
# --------------------------------------------------------------------------- #
def _pair(value: object, what: str, low: int) -> tuple[int, int]:
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low for v in items
    ):
        raise ValueError(f"{what} must be an integer >= {low} or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def _out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1  # room left for the window's start positions
    # Floor division rounds towards -inf, like PyTorch's div_rtn, also for a negative span.
    out = ((span + s - 1) // s if ceil_mode else span // s) + 1
    # PyTorch's rule for ceil_mode: the last window must start inside the input or left padding.
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def conv_output_shape(
    input_size: IntPair,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> IntPair:
    """Spatial output size of a convolution or pooling layer.

    Used in chapter 04 (CNN design). Per dimension,
    ``out = floor((n + 2p - d(k - 1) - 1) / s) + 1``: the number of positions at which a window
    of effective width ``d(k - 1) + 1`` fits into the padded input when it moves ``s`` pixels at
    a time. With ``ceil_mode`` (pooling only) the division rounds up, as in PyTorch, except that
    a window starting in the right padding is dropped.

    Args:
        input_size: Input height and width (one int for a square input).
        kernel_size: Kernel size ``k``.
        stride: Stride ``s`` (for pooling layers PyTorch's default stride is the kernel size:
            pass it explicitly).
        padding: Zero padding ``p`` on each side, or ``"same"`` / ``"valid"`` as in
            :class:`torch.nn.Conv2d`.
        dilation: Spacing ``d`` between kernel taps.
        ceil_mode: Round up instead of down, as :class:`torch.nn.MaxPool2d` does with
            ``ceil_mode=True``.

    Returns:
        The output size: an int when ``input_size`` is an int, otherwise ``(height, width)``.

    Raises:
        ValueError: If a size is not a positive integer (padding: non-negative), padding is an
            unknown string, ``"same"`` is combined with a stride other than 1, or the kernel
            does not fit into the padded input.
    """
    square = isinstance(input_size, numbers.Integral) and not isinstance(input_size, bool)
    n = _pair(input_size, "input_size", 1)
    k = _pair(kernel_size, "kernel_size", 1)
    s = _pair(stride, "stride", 1)
    d = _pair(dilation, "dilation", 1)
    if isinstance(padding, str):
        if padding == "valid":
            out = tuple(_out_size(n[i], k[i], s[i], 0, d[i], ceil_mode) for i in range(2))
        elif padding == "same":
            if s != (1, 1):
                raise ValueError("padding='same' needs stride 1 (as in torch.nn.Conv2d)")
            out = n  # PyTorch pads asymmetrically when d(k - 1) is odd, so the size is kept
        else:
            raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        p = _pair(padding, "padding", 0)
        out = tuple(_out_size(n[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2))
    if min(out) < 1:
        raise ValueError(
            f"a kernel of size {k} with dilation {d} does not fit into an input of size {n} "
            f"with padding {padding!r}: the output would be empty"
        )
    return out[0] if square else (out[0], out[1])


def layer_output_shape(layer: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Output shape (without the batch dimension) of one layer for an input of ``input_shape``.

    Used in chapter 04 (CNN design) to follow an image's shape through a network without
    running it.

    Args:
        layer: An ``nn.Conv2d``, ``nn.MaxPool2d``, ``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d``,
            ``nn.AdaptiveMaxPool2d``, ``nn.Flatten`` or ``nn.Linear``, or a layer that keeps
            the shape (activations, batch norm, dropout).
        input_shape: ``(C, H, W)`` for image layers, ``(features,)`` for ``nn.Linear``.

    Returns:
        The output shape, e.g. ``(64, 16, 16)``.

    Raises:
        ValueError: If the input does not fit the layer (wrong channel count or rank).
        TypeError: For a layer whose shape rule is not known here.
    """
    shape = tuple(int(v) for v in input_shape)
    if isinstance(layer, nn.Conv2d):
        if len(shape) != 3 or shape[0] != layer.in_channels:
            raise ValueError(f"{layer} expects input (C={layer.in_channels}, H, W), got {shape}")
        h, w = conv_output_shape(shape[1:], layer.kernel_size, layer.stride, layer.padding,
                                 layer.dilation)
        return (layer.out_channels, h, w)
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        if len(shape) != 3:
            raise ValueError(f"{type(layer).__name__} expects input (C, H, W), got {shape}")
        stride = layer.stride if layer.stride is not None else layer.kernel_size
        dilation = getattr(layer, "dilation", 1)
        h, w = conv_output_shape(shape[1:], layer.kernel_size, stride, layer.padding, dilation,
                                 layer.ceil_mode)
        return (shape[0], h, w)
    if isinstance(layer, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        size = layer.output_size
        h, w = (size, size) if isinstance(size, int) else size
        return (shape[0], h if h is not None else shape[1], w if w is not None else shape[2])
    if isinstance(layer, nn.Flatten):
        rank = len(shape) + 1  # the batch dimension counts in start_dim and end_dim
        start = (layer.start_dim % rank) - 1 if -rank <= layer.start_dim < rank else -1
        end = (layer.end_dim % rank) - 1 if -rank <= layer.end_dim < rank else -1
        if start < 0 or end < 0 or start > end:
            raise ValueError(f"{layer} does not fit an input of shape {shape} (plus batch)")
        return shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
    if isinstance(layer, nn.Linear):
        if shape[-1] != layer.in_features:
            raise ValueError(
                f"{layer} expects {layer.in_features} input features, got shape {shape}: "
                "the flattened size of the layer before it"
            )
        return shape[:-1] + (layer.out_features,)
    if isinstance(layer, _SHAPE_KEEPING):
        return shape
    raise TypeError(f"no shape rule for {type(layer).__name__}; run the layer on a dummy input")


_SHAPE_KEEPING = (
    nn.ReLU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Identity,
    nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.GroupNorm,
)


class ReceptiveField(NamedTuple):
    """What :func:`receptive_field` returns.

    Attributes:
        size: Width in input pixels of the region that one output unit sees.
        jump: Distance in input pixels between two neighbouring output units (the product of
            the strides).
    """

    size: int
    jump: int


def _rf_layers(module: nn.Module) -> Iterable[nn.Module]:
    """The layers along the longest path through ``module``, in order."""
    if isinstance(module, BasicBlock):  # the shortcut sees less than the two 3×3 convolutions
        yield module.conv1
        yield module.conv2
    elif isinstance(module, nn.Sequential):
        for child in module:
            yield from _rf_layers(child)
    else:
        yield module


def receptive_field(layers: nn.Module | Sequence[nn.Module]) -> ReceptiveField:
    """Receptive field of one output unit of a stack of convolution and pooling layers.

    Used in chapter 04 (CNN design). Going through the layers in order with the field size
    ``r`` and jump ``j`` of the previous layer's units (starting at ``r = j = 1``), a layer of
    kernel ``k``, dilation ``d`` and stride ``s`` gives ``r += d(k - 1) j`` and ``j *= s``.
    Layers that act on each pixel alone (activations, batch norm, dropout) change nothing.
    The walk stops at the first ``Flatten``, ``Linear`` or adaptive pooling layer (after which
    every unit sees the whole image). Residual blocks (:class:`BasicBlock`) count their main
    path, the longer one. This is the theoretical field: the region of input pixels that can
    influence the unit, not how strongly they do.

    Args:
        layers: An ``nn.Sequential`` (nested ones and :class:`BasicBlock` allowed) or a list of
            layers.

    Returns:
        The :class:`ReceptiveField` ``(size, jump)``.

    Raises:
        ValueError: For non-square kernels, strides or dilations.
        TypeError: For a layer whose effect on the field is not known here.
    """
    flat: list[nn.Module] = []
    for layer in ([layers] if isinstance(layers, nn.Module) else layers):
        flat.extend(_rf_layers(layer))
    size, jump = 1, 1
    for layer in flat:
        if isinstance(layer, (nn.Flatten, nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            break
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(layer.kernel_size, "kernel_size", 1)
            stride = layer.stride if layer.stride is not None else layer.kernel_size
            s = _pair(stride, "stride", 1)
            d = _pair(getattr(layer, "dilation", 1), "dilation", 1)
            if k[0] != k[1] or s[0] != s[1] or d[0] != d[1]:
                raise ValueError(f"receptive_field handles square layers only, got {layer}")
            size += d[0] * (k[0] - 1) * jump
            jump *= s[0]
        elif not isinstance(layer, _SHAPE_KEEPING):
            raise TypeError(f"receptive_field does not know how {type(layer).__name__} "
                            "changes the field")
    return ReceptiveField(size, jump)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (weights and biases) of ``model``.

    Used in chapter 04 (CNN design) and the chapters that compare models after it.
    Buffers such as batch norm's running statistics are not parameters and are not counted.

    Args:
        model: Any module.
        trainable_only: Count only parameters with ``requires_grad`` (e.g. after freezing).

    Returns:
        The count.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32)) -> int:
    """FLOPs of one forward pass, counted by PyTorch's ``FlopCounterMode``.

    Used in chapter 04 (CNN design). The counter records the matrix multiplications and
    convolutions that actually run (a multiply-add counts as 2 FLOPs); element-wise work such
    as activations, batch norm and pooling is not counted, which for CNNs is a small share.
    A training step costs about three forward passes (the backward pass computes two
    products per layer: gradients for the inputs and for the weights).

    Args:
        model: The network; it runs once in eval mode, without gradients, on zeros placed
            on the device and dtype of its first parameter. Its mode is restored.
        input_shape: ``(C, H, W)`` for the FLOPs of one image, or ``(N, C, H, W)`` for a batch.

    Returns:
        The number of floating-point operations.

    Raises:
        ValueError: If ``input_shape`` does not have 3 or 4 positive entries.
    """
    shape = tuple(int(v) for v in input_shape)
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}")
    if len(shape) == 3:
        shape = (1, *shape)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape, device=device, dtype=dtype))
    return int(counter.get_total_flops())


def feature_maps(model: nn.Module, x: torch.Tensor,
                 kinds: tuple[type[nn.Module], ...] = (nn.ReLU, nn.MaxPool2d)) -> dict[str, torch.Tensor]:
    """The outputs of every layer of the given kinds, for one forward pass of ``x``.

    Used in chapter 04 (CNN design) with :func:`dlkit.plot.plot_feature_maps`. Forward hooks
    record the outputs; they are removed afterwards, and the model runs in eval mode without
    gradients (its mode is restored).

    Args:
        model: The network.
        x: Its input, e.g. one normalised image as ``1×3×32×32``.
        kinds: Layer classes whose outputs are recorded.

    Returns:
        Qualified layer name -> output tensor (detached, on the CPU), in execution order.
    """
    maps: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_hook(
        lambda _m, _inp, out, name=name: maps.__setitem__(name, out.detach().cpu()))
        for name, module in model.named_modules() if isinstance(module, kinds)]
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return maps


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


# --------------------------------------------------------------------------- #
# Training on a budget
# --------------------------------------------------------------------------- #
def random_crop_flip(
    X: torch.Tensor, y: torch.Tensor, padding: int = 4, flip: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random translation (pad and crop) and horizontal flip of a whole batch, as tensor ops.

    Used in chapter 04 (CNN design) and ``benchmarks/resnet_gpu.py`` as
    ``fit(train_transform=random_crop_flip)``: the batch never leaves the device and there is
    no per-image Python loop. Each image is zero-padded by ``padding`` pixels on every side and
    a window of the original size is cut at an independent random offset (the effect of
    torchvision's ``RandomCrop(size, padding)``), then mirrored left-right with probability 1/2
    (``RandomHorizontalFlip``). For normalised inputs the zero padding is the mean colour.

    Args:
        X: Images ``N×C×H×W`` of any dtype (uint8 included).
        y: Labels, returned unchanged.
        padding: Largest shift in pixels (0 disables cropping).
        flip: Also flip at random.
        generator: Random source (on ``X``'s device) for repeatable batches.

    Returns:
        ``(X_augmented, y)``; ``X_augmented`` has ``X``'s shape, dtype and device.

    Raises:
        ValueError: If ``X`` is not 4-D or ``padding`` is negative.
    """
    # One implementation for the book: chapter 03's, whose distribution is tested against
    # torchvision's per-image transforms; this wrapper only adapts it to fit's (X, y) hook.
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    out = augment.random_crop_flip(X, padding=padding, flip_p=0.5 if flip else 0.0,
                                   generator=generator)
    return out.contiguous(), y


@dataclasses.dataclass
class RunResult:
    """One row of chapter 04's comparison table, returned by :func:`train_budgeted`.

    Attributes:
        name: Label of the run.
        params: Parameter count.
        flops: Forward FLOPs per 32×32 image (:func:`count_flops`).
        images_per_s: Training throughput, averaged over epochs.
        seconds: Wall-clock training time (all epochs, without the final test pass).
        test_accuracy: Fraction of the test set classified correctly after training.
        history: The :class:`dlkit.train.History` of the run.
    """

    name: str
    params: int
    flops: int
    images_per_s: float
    seconds: float
    test_accuracy: float
    history: object

    def row(self) -> dict[str, object]:
        """The table columns as a dict (without the history)."""
        return {"model": self.name, "params": self.params, "MFLOPs": self.flops / 1e6,
                "images/s": self.images_per_s, "seconds": self.seconds,
                "test acc": self.test_accuracy}


def train_budgeted(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.2,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    augment: bool = True,
    name: str | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    channels_last: bool = False,
    precision: str = "fp32",
    progress: bool = False,
    verbose: bool = False,
) -> RunResult:
    """Train ``model`` with one fixed recipe for ``epochs`` passes and measure the result.

    Used in chapter 04 (CNN design) so that every model of its comparison and ablations gets
    exactly the same data, number of images and recipe: SGD with Nesterov momentum 0.9 and
    weight decay, a one-cycle learning-rate schedule (Smith and Topin, 2019) stepped per
    batch, label smoothing, and (``augment``) :func:`random_crop_flip` on every batch. The
    data are shuffled with ``seed``, so two calls see the same batches in the same order.

    Args:
        model: A freshly initialised network (seed before building it).
        train: ``(X, y)`` training tensors (normalised float images, class indices).
        test: ``(X, y)`` test tensors, evaluated once after training.
        epochs: Passes over ``train``.
        batch_size: Examples per step.
        lr: Peak learning rate of the one-cycle schedule.
        weight_decay: SGD's L2 penalty, applied to all parameters.
        label_smoothing: Passed to ``nn.CrossEntropyLoss`` for training (the test loss is
            not smoothed).
        augment: Random crop and flip on every training batch.
        name: Label of the run; the model's class name when ``None``.
        device: Where to train; :func:`dlkit.env.pick_device` when ``None``.
        seed: Seed of the shuffling and augmentation.
        channels_last: Passed to :func:`dlkit.train.fit`.
        precision: Passed to :func:`dlkit.train.fit` (``"bf16"`` on a GPU).
        progress: Show fit's progress bar.
        verbose: Print fit's line per epoch.

    Returns:
        The :class:`RunResult`.
    """
    from dlkit.data import make_loader
    from dlkit.env import pick_device
    from dlkit.train import evaluate, fit

    device = pick_device() if device is None else torch.device(device)
    X_train, y_train = train
    X_test, y_test = test
    params, flops = count_params(model), count_flops(model, tuple(X_train.shape[1:]))
    loader = make_loader(X_train.to(device), y_train.to(device), batch_size, shuffle=True,
                         seed=seed)
    test_loader = make_loader(X_test.to(device), y_test.to(device), 1000)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * len(loader), pct_start=0.25)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    transform = (lambda X, y: random_crop_flip(X, y, generator=gen)) if augment else None
    start = time.perf_counter()
    history = fit(model, loader, epochs=epochs, optimizer=optimizer, scheduler=scheduler,
                  loss_fn=nn.CrossEntropyLoss(label_smoothing=label_smoothing), device=device,
                  train_transform=transform, channels_last=channels_last, precision=precision,
                  progress=progress, verbose=verbose)
    seconds = time.perf_counter() - start
    accuracy = evaluate(model, test_loader, device=device)["accuracy"]
    return RunResult(name or type(model).__name__, params, flops,
                     sum(history.images_per_s) / len(history), seconds, accuracy, history)
