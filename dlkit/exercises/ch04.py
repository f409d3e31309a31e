"""Exercise checks of chapter 04 (CNN design).

The truth is always measured on real PyTorch layers, never stored: a check runs the layer (or
the learner's block) and compares.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence

import torch
from torch import nn

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["check_output_shape", "check_receptive_field", "check_conv_params",
           "check_residual_block"]


def _as_shape(answer: object) -> tuple[int, ...] | None:
    if isinstance(answer, torch.Size):
        return tuple(answer)
    if not isinstance(answer, (tuple, list)):
        return None
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in answer):
        return None
    return tuple(int(v) for v in answer)


def check_output_shape(answer: object, layer: nn.Module, input_shape: Sequence[int]) -> Feedback:
    """Check the learner's output shape ``(C, H, W)`` of ``layer`` for one input of ``input_shape``.

    Used in chapter 04. Common slips get their own hint: forgetting padding, stride or
    dilation, rounding up instead of down, or keeping the input channel count.

    Args:
        answer: The learner's ``(C, H, W)`` tuple.
        layer: A convolution or pooling layer.
        input_shape: ``(C, H, W)`` of the input.

    Returns:
        The :class:`Feedback`.
    """
    with torch.no_grad():
        truth = tuple(layer(torch.zeros(1, *input_shape)).shape[1:])
    value = _as_shape(answer)
    if value is None or len(value) != 3:
        return _wrong(f"expected a tuple (C, H, W) of three integers, got {answer!r}.",
                      "channels first, then height and width, e.g. (64, 16, 16).")
    if value == truth:
        return _right(f"{tuple(input_shape)} → {truth}.")
    c_in, h = input_shape[0], input_shape[1]
    k, s, p, d = (getattr(layer, a, 1) for a in ("kernel_size", "stride", "padding", "dilation"))
    k, s, p, d = ((v[0] if isinstance(v, tuple) else v) for v in (k, s, p, d))
    s = k if s is None else s
    if value[0] != truth[0]:
        hint = ("pooling works on each channel separately: it keeps the channel count."
                if truth[0] == c_in else
                "a convolution has one output channel per filter: out_channels.")
        return _wrong(f"the channel count {value[0]} is wrong.", hint)
    if isinstance(p, int) and value[1] == (h - d * (k - 1) - 1) // s + 1 != truth[1]:
        return _wrong(f"height {value[1]} ignores the padding of {p} pixels on each side.",
                      "add 2·padding to the input size first.")
    if value[1] == (h + 2 * p - d * (k - 1) - 1) + 1 != truth[1]:
        return _wrong(f"height {value[1]} ignores the stride {s}.",
                      "the window moves stride pixels at a time: divide by the stride (rounding down).")
    if d != 1 and value[1] == (h + 2 * p - (k - 1) - 1) // s + 1:
        return _wrong(f"height {value[1]} ignores the dilation {d}.",
                      f"a dilated kernel spans d·(k − 1) + 1 = {d * (k - 1) + 1} pixels.")
    if value[1] == -(-(h + 2 * p - d * (k - 1) - 1) // s) + 1:
        return _wrong(f"height {value[1]} rounds up.", "the formula rounds down (floor) by default.")
    return _wrong(f"{value} is not the output shape; PyTorch gives another one.",
                  "out = floor((in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1.")


def check_receptive_field(answer: object, layers: Sequence[nn.Module] | nn.Module) -> Feedback:
    """Check the learner's receptive field size (in input pixels) of a stack of layers.

    Used in chapter 04. The truth is :func:`dlkit.models.receptive_field`, itself checked
    against autograd in the tests.

    Args:
        answer: The learner's number.
        layers: The stack (an ``nn.Sequential`` or a list of layers).

    Returns:
        The :class:`Feedback`.
    """
    from dlkit.models import receptive_field

    rf = receptive_field(layers)
    if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):
        return _wrong(f"expected a whole number of pixels, got {answer!r}.")
    if answer == rf.size:
        return _right(f"one output unit sees {rf.size}×{rf.size} input pixels "
                      f"(neighbouring units are {rf.jump} pixels apart).")
    mods = list(layers) if not isinstance(layers, nn.Module) or isinstance(layers, nn.Sequential) \
        else [layers]
    ks = [m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
          for m in mods if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    if answer == 1 + sum(k - 1 for k in ks):
        return _wrong(f"{answer} adds the kernel sizes as if every stride were 1.",
                      "after a stride-s layer, each further pixel of kernel reaches s input pixels "
                      "further: r += (k − 1)·(product of the earlier strides).")
    return _wrong(f"{answer} is not the receptive field.",
                  "start with r = 1, j = 1; for each layer: r += (k − 1)·j, then j *= stride.")


def check_conv_params(answer: object, layer: nn.Conv2d) -> Feedback:
    """Check the learner's parameter count of a convolution layer.

    Used in chapter 04.

    Args:
        answer: The learner's number.
        layer: The ``nn.Conv2d``.

    Returns:
        The :class:`Feedback`.
    """
    truth = sum(p.numel() for p in layer.parameters())
    if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):
        return _wrong(f"expected a whole number, got {answer!r}.")
    kh, kw = layer.kernel_size
    c_in, c_out = layer.in_channels // layer.groups, layer.out_channels
    if answer == truth:
        return _right(f"{c_out} filters × ({c_in}×{kh}×{kw} weights) "
                      f"{'+ ' + str(c_out) + ' biases ' if layer.bias is not None else ''}= {truth:,}.")
    if layer.bias is not None and answer == truth - c_out:
        return _wrong(f"{answer:,} leaves out the biases.", "each output channel has one bias.")
    if answer == c_out * kh * kw + (c_out if layer.bias is not None else 0):
        return _wrong(f"{answer:,} forgets the input channels.",
                      f"each filter spans all {c_in} input channels.")
    return _wrong(f"{answer:,} is not the count.",
                  "count one filter first: how many input channels does it span, and how many "
                  "weights per channel? Then: how many filters are there, and what else does each "
                  "output channel learn?")


def check_residual_block(block: nn.Module, channels: int = 8) -> Feedback:
    """Check that a learner's block computes ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Used in chapter 04 ("make this block residual"). The block must have the attributes
    ``conv1, bn1, conv2, bn2`` and ``shortcut`` (``nn.Identity()`` when the shape is kept);
    the expected output is computed from those same layers, in eval mode. The check works on a
    copy of the block (it sets random batch-norm statistics so that mistakes show), so the
    learner's block keeps its weights, statistics and mode.

    Args:
        block: An instance of the learner's block, built for ``channels`` in and out channels.
        channels: The number of channels it was built with.

    Returns:
        The :class:`Feedback`.
    """
    if isinstance(block, type):
        return _wrong("you passed the class, not a block.", "call it: check_residual_block(Block(8)).")
    missing = [a for a in ("conv1", "bn1", "conv2", "bn2", "shortcut") if not hasattr(block, a)]
    if missing:
        return _wrong(f"the block has no {', '.join(missing)}.",
                      "keep the layers conv1, bn1, conv2, bn2 and add self.shortcut.")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, channels, 8, 8, generator=g)
    # A copy, in eval mode: the statistics set below must not reach the learner's block (a
    # trained block would silently lose its running means and variances).
    try:
        block = copy.deepcopy(block).eval()
    except Exception as err:
        return _wrong(f"the block could not be copied ({type(err).__name__}: {err}).",
                      "keep only layers and tensors as attributes of the block.")
    with torch.no_grad():
        for bn in (block.bn1, block.bn2):  # non-trivial statistics so that mistakes show
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.5, 0.5, generator=g)
                bn.running_var.uniform_(0.5, 2.0, generator=g)
        try:
            out = block(x)
        except Exception as err:
            return _wrong(f"a batch of shape {tuple(x.shape)} raised {type(err).__name__}: {err}")
        inner = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        short = block.shortcut(x)
        expected = torch.relu(inner + short)
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return _wrong(f"the block returned {shape}, expected {tuple(expected.shape)}.")
    if torch.allclose(out, expected, atol=1e-5):
        return _right("the block adds its input to the residual branch before the last ReLU.")
    if torch.allclose(out, torch.relu(inner), atol=1e-5):
        return _wrong("the output is the plain branch: the shortcut is not added.",
                      "a residual block learns a correction to its input: where does the input "
                      "x come back, and before or after the last ReLU (He et al.)?")
    if torch.allclose(out, torch.relu(inner) + short, atol=1e-5):
        return _wrong("the ReLU comes before the addition.",
                      "add the shortcut first, then apply the ReLU (as in He et al.'s block).")
    if torch.allclose(out, inner + short, atol=1e-5):
        return _wrong("the final ReLU is missing.",
                      "the sum of branch and shortcut goes through one more non-linearity.")
    return _wrong("the output is not relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).",
                  "compute the branch from x, then add self.shortcut(x) (the original input).")
