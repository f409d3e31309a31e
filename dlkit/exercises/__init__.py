"""Immediate, specific feedback on a learner's answer to a chapter exercise.

Every exercise in the book has three cells: the task (the learner edits it), a ``check_*`` call
from this module, and a solution cell tagged ``hide-cell`` (collapsed in the book; removed from
the student copies made by ``tools/student_copies.py``). A check never raises on a wrong answer:
it returns a :class:`Feedback` that says what is wrong and gives a hint, and shows itself when it
is the last line of a cell.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import nn

from dlkit._util import eval_mode
from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = [
    "Feedback",
    "check_num_steps",
    "check_flatten_size",
    "check_model",
    "check_accuracy_fn",
]


def _whole_number(answer: object) -> int | None:
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return None
    if not math.isfinite(answer) or answer != int(answer):
        return None
    return int(answer)


def check_num_steps(
    answer: object, num_examples: int, batch_size: int, epochs: int, drop_last: bool = False
) -> Feedback:
    """Check the number of optimizer steps (mini-batches) in a training run.

    Used in chapter 00 (how to use this book) and needed for per-step schedules in chapter 01.

    Args:
        answer: The learner's number.
        num_examples: Training examples per epoch.
        batch_size: Examples per mini-batch.
        epochs: Passes over the training set.
        drop_last: Whether the last, incomplete batch is dropped.

    Returns:
        The :class:`Feedback`.
    """
    full, rest = divmod(num_examples, batch_size)
    per_epoch = full if drop_last or rest == 0 else full + 1
    truth = per_epoch * epochs
    value = _whole_number(answer)
    if value is None:
        return _wrong(f"expected a whole number, got {answer!r}.",
                      "steps per epoch × epochs, where steps per epoch = examples / batch size, rounded.")
    if value == truth:
        return _right(f"{per_epoch:,} steps per epoch × {epochs} epochs = {truth:,} steps.")
    if value == per_epoch:
        return _wrong(f"{value:,} is the number of steps in one epoch.", f"the run has {epochs} epochs.")
    if not drop_last and rest and value == full * epochs:
        return _wrong(f"{value:,} leaves out the last, smaller batch of {rest} examples.",
                      "a smaller last batch is still a batch: how many batches do 10 examples make "
                      "in batches of 4?")
    if value == num_examples * epochs:
        return _wrong(f"{value:,} counts examples, not batches.", f"each step processes {batch_size} examples.")
    return _wrong(f"{value:,} is not the number of steps.",
                  "count the batches in one epoch (a smaller last batch counts too), then the epochs.")


def check_flatten_size(
    answer: object, layers: nn.Module, image_size: int, in_channels: int = 3
) -> Feedback:
    """Check the number of features that ``layers`` produce for one square image.

    The truth is measured, not stored: ``layers`` run on a zero image. Used in chapter 01.

    Args:
        answer: The learner's number.
        layers: The convolution/pooling part of a network (everything before flattening).
        image_size: Height and width of the input image.
        in_channels: Channels of the input image.

    Returns:
        The :class:`Feedback`.
    """
    with torch.no_grad():
        out = layers(torch.zeros(1, in_channels, image_size, image_size))
    c, h, w = out.shape[1:] if out.ndim == 4 else (1, 1, out.shape[-1])
    truth = int(out[0].numel())
    value = _whole_number(answer)
    if value is None:
        return _wrong(f"expected a whole number, got {answer!r}.", "multiply channels × height × width.")
    answer = value
    if answer == truth:
        return _right(f"the layers turn a {in_channels}×{image_size}×{image_size} image into "
                      f"{c}×{h}×{w} = {truth:,} features.")
    if answer == h * w:
        return _wrong(f"{answer:,} counts positions only.", f"each of the {h}×{w} positions has {c} channels.")
    if answer == c * image_size * image_size:
        return _wrong(f"{answer:,} is the size before pooling.",
                      f"the pooling layers shrink {image_size}×{image_size} to {h}×{w}.")
    if answer == 64 * 7 * 7:
        return _wrong("64×7×7 is the article's guess, which fits no input size it used.",
                      "apply out = (in + 2·padding − kernel) / stride + 1 to each layer.")
    return _wrong(f"{answer:,} is not the size these layers produce for a {image_size}×{image_size} image.",
                  "apply out = (in + 2·padding − kernel) / stride + 1 to each conv and pool layer, "
                  "then multiply channels × height × width.")


def check_model(
    net: nn.Module,
    num_classes: int = 10,
    image_shape: Sequence[int] = (3, 32, 32),
    min_conv_layers: int = 1,
) -> Feedback:
    """Check that a classifier accepts a batch of images and returns one row of logits per image.

    Two batch sizes are tried, which catches reshapes such as ``x.view(-1, n)`` that silently mix
    images together. Used in chapter 01.

    Args:
        net: The learner's network (an ``nn.Module`` instance, not the class).
        num_classes: Number of outputs expected per image.
        image_shape: C×H×W of one input image.
        min_conv_layers: Fewest ``nn.Conv2d`` layers the exercise asks for.

    Returns:
        The :class:`Feedback`.
    """
    if isinstance(net, type):
        return _wrong("you passed the class, not a network.", "call it: check_model(MyNet()).")
    if not isinstance(net, nn.Module):
        return _wrong(f"expected an nn.Module, got {type(net).__name__}.")
    convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    if convs < min_conv_layers:
        return _wrong(f"the network has {convs} Conv2d layer(s); the exercise asks for {min_conv_layers}.")
    with eval_mode(net):
        for batch in (2, 3):
            x = torch.randn(batch, *image_shape)
            try:
                with torch.no_grad():
                    out = net(x)
            except Exception as err:  # the learner's code may fail in any way: explain, don't raise
                return _wrong(
                    f"a batch of shape {tuple(x.shape)} raised {type(err).__name__}: {err}",
                    "print x.shape after each layer in forward() to find where the sizes disagree.",
                )
            if not isinstance(out, torch.Tensor):
                return _wrong(f"forward() returned {type(out).__name__}, expected a tensor of logits.")
            if out.shape != (batch, num_classes):
                hint = ("the first dimension must stay the batch size: use x.flatten(1) instead of "
                        "x.view(-1, n)." if out.ndim == 2 and out.shape[0] != batch else
                        f"the last layer should have {num_classes} outputs.")
                return _wrong(f"a batch of {batch} images gave outputs of shape {tuple(out.shape)}, "
                              f"expected ({batch}, {num_classes}).", hint)
            if not torch.isfinite(out).all():
                return _wrong("the outputs contain nan or inf.")
    params = sum(p.numel() for p in net.parameters())
    return _right(f"{convs} conv layer(s), {params:,} parameters, outputs ({batch}, {num_classes}).")


def check_accuracy_fn(fn: Callable[[torch.Tensor, torch.Tensor], object]) -> Feedback:
    """Check a learner's ``accuracy(logits, y)``, which must return the fraction correct as a float.

    Used in chapter 01.

    Args:
        fn: The learner's function of N×K logits and N class indices.

    Returns:
        The :class:`Feedback`.
    """
    g = torch.Generator().manual_seed(0)
    cases = []
    for n, k in ((8, 3), (50, 10), (1, 4)):
        logits = torch.randn(n, k, generator=g)
        y = torch.randint(0, k, (n,), generator=g)
        cases.append((logits, y))
    # Square logits: argmax over the batch (dim=0) runs without error but gives 1/3, not 1.
    cases.append((torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.3, 0.7, 0.0]]), torch.tensor([1, 0, 1])))
    for logits, y in cases:
        truth = (logits.argmax(dim=1) == y).double().mean().item()
        try:
            got = fn(logits.clone(), y.clone())
        except Exception as err:
            return _wrong(f"for logits of shape {tuple(logits.shape)} it raised {type(err).__name__}: {err}",
                          "the prediction for each row is the class with the largest score.")
        if isinstance(got, torch.Tensor):
            return _wrong("it returned a tensor.", "call .item() to turn a one-element tensor into a float.")
        if not isinstance(got, numbers.Real) or isinstance(got, bool):
            return _wrong(f"it returned {type(got).__name__}, expected a float.")
        if math.isclose(got, 100 * truth, rel_tol=1e-6) and truth not in (0.0,):
            if not math.isclose(got, truth, rel_tol=1e-6):
                return _wrong(f"it returned {got}, a percentage.", "return a fraction in [0, 1].")
        if not math.isclose(got, truth, rel_tol=1e-6, abs_tol=1e-9):
            return _wrong(f"for logits of shape {tuple(logits.shape)} it returned {got:.4f}, expected {truth:.4f}.",
                          "take the argmax over the class dimension (dim=1), then the mean of the matches.")
    return _right("it matches the reference on all test cases, including a single example.")


# Each later chapter keeps its checks in a module of its own; they are re-exported here so that
# every chapter writes ``from dlkit.exercises import check_...``.
from dlkit.exercises.ch02 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch03 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch04 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch05 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch06 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch07 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch08 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch09 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch10 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch11 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch13 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch14 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch15 import *  # noqa: E402,F401,F403
