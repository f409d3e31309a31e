"""Arithmetic of convolutional networks (chapter 04): output sizes of convolution and pooling
layers, receptive fields, parameters, FLOPs (asked of PyTorch's FlopCounterMode), feature maps.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlkit._util import eval_mode


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
    """The layers along the longest path through ``module``, in order.

    A block with branches names that path with a ``longest_path()`` method (a ResNet
    :class:`~dlkit.models.networks.BasicBlock`: its two 3×3 convolutions, not the shortcut).
    """
    if callable(getattr(module, "longest_path", None)):
        for layer in module.longest_path():
            yield from _rf_layers(layer)
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
