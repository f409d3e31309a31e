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
    "check_relu_backward",
    "check_softmax_ce_grad",
    "check_adam_step",
    "check_critical_lr",
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
                      "round the division up: math.ceil(num_examples / batch_size).")
    if value == num_examples * epochs:
        return _wrong(f"{value:,} counts examples, not batches.", f"each step processes {batch_size} examples.")
    return _wrong(f"{value:,} is not the number of steps.",
                  "steps per epoch = ceil(examples / batch size); multiply by the number of epochs.")


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
                          "(logits.argmax(dim=1) == y) compares each prediction with its label.")
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


def _call(fn: Callable, *args: torch.Tensor) -> tuple[object, Feedback | None]:
    """Call a learner's function on copies of the inputs; turn an exception into feedback."""
    try:
        return fn(*(a.clone() for a in args)), None
    except Exception as err:  # any failure of the learner's code is reported, not raised
        shapes = ", ".join(str(tuple(a.shape)) for a in args)
        return None, _wrong(f"called with inputs of shapes {shapes} it raised {type(err).__name__}: {err}")


def _tensor_like(got: object, like: torch.Tensor, what: str) -> Feedback | None:
    if not isinstance(got, torch.Tensor):
        return _wrong(f"{what} should be a tensor, got {type(got).__name__}.")
    if got.shape != like.shape:
        return _wrong(f"{what} has shape {tuple(got.shape)}, expected {tuple(like.shape)}.",
                      "a gradient has the shape of the tensor it is the gradient of.")
    return None


def check_relu_backward(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check ``fn(x, grad_out)``, the gradient of ReLU with respect to its input.

    Used in chapter 05 (backpropagation).

    Args:
        fn: The learner's function of the layer input ``x`` and the upstream gradient.

    Returns:
        The :class:`Feedback`.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    x[0, :3] = 0.0  # ReLU's kink: PyTorch's convention is a zero gradient there
    grad_out = torch.randn(4, 6, generator=g, dtype=torch.float64)
    got, problem = _call(fn, x, grad_out)
    if problem is not None:
        return problem
    problem = _tensor_like(got, x, "the result")
    if problem is not None:
        return problem
    truth = grad_out * (x > 0)
    if torch.allclose(got, truth):
        return _right("the gradient flows where x > 0 and is zero elsewhere (including x = 0).")
    if torch.allclose(got, grad_out):
        return _wrong("the gradient passes through everywhere.", "multiply grad_out by the mask (x > 0).")
    if torch.allclose(got, (x > 0).to(got.dtype)):
        return _wrong("it returns ReLU's local derivative only.",
                      "chain rule: multiply the local derivative by grad_out.")
    if torch.allclose(got, grad_out * (x >= 0)):
        return _wrong("at x = 0 it lets the gradient through.",
                      "use the mask x > 0, the convention PyTorch uses at the kink.")
    return _wrong("the values differ from grad_out · 1[x > 0].")


def check_softmax_ce_grad(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check ``fn(logits, y)``, the gradient of the mean softmax cross-entropy w.r.t. the logits.

    The reference is autograd on ``F.cross_entropy``. Used in chapter 05 (backpropagation).

    Args:
        fn: The learner's function of N×K logits and N class indices.

    Returns:
        The :class:`Feedback`.
    """
    g = torch.Generator().manual_seed(1)
    cases = [
        (torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (5,), generator=g)),
        # Large logits overflow exp() unless the maximum is subtracted first.
        (torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 800.0, 5.0]], dtype=torch.float64), torch.tensor([0, 2])),
    ]
    for logits, y in cases:
        got, problem = _call(fn, logits, y)
        if problem is not None:
            return problem
        problem = _tensor_like(got, logits, "the gradient")
        if problem is not None:
            return problem
        z = logits.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(z, y).backward()
        truth = z.grad
        assert truth is not None
        if not torch.isfinite(got).all():
            return _wrong("the result contains nan or inf for large logits.",
                          "subtract each row's maximum before exp(): softmax does not change.")
        if torch.allclose(got, truth, atol=1e-10):
            continue
        n = len(y)
        if torch.allclose(got, truth * n, atol=1e-10):
            return _wrong("this is the gradient of the summed loss.", f"the loss is a mean: divide by N = {n}.")
        if torch.allclose(got, -truth, atol=1e-10):
            return _wrong("the sign is flipped.", "the gradient is p − onehot(y), not onehot(y) − p.")
        p = logits.softmax(dim=1)
        if torch.allclose(got, p / n, atol=1e-10) or torch.allclose(got, p, atol=1e-10):
            return _wrong("it is missing the one-hot term.", "subtract 1 at each row's true class: p − onehot(y).")
        return _wrong("the values differ from (softmax(logits) − onehot(y)) / N.")
    return _right("(softmax(logits) − onehot(y)) / N, stable for large logits.")


def check_adam_step(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> Feedback:
    """Check one Adam update ``fn(param, grad, m, v, t, lr, beta1, beta2, eps) -> (param, m, v)``.

    Five steps are run with the learner's function and with ``torch.optim.Adam`` on the same
    gradients; ``t`` counts from 1. Used in chapter 06 (optimizers).

    Args:
        fn: The learner's update.

    Returns:
        The :class:`Feedback`.
    """
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    g = torch.Generator().manual_seed(2)
    start = torch.randn(6, generator=g, dtype=torch.float64)
    grads = [torch.randn(6, generator=g, dtype=torch.float64) for _ in range(5)]
    ref = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=lr, betas=(b1, b2), eps=eps)
    p, m, v = start.clone(), torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    # The same five steps without bias correction, to recognise that mistake.
    q, mq, vq = start.clone(), torch.zeros_like(m), torch.zeros_like(v)
    for t, grad in enumerate(grads, start=1):
        ref.grad = grad.clone()
        opt.step()
        try:
            out = fn(p.clone(), grad.clone(), m.clone(), v.clone(), t, lr, b1, b2, eps)
        except Exception as err:
            return _wrong(f"step {t} raised {type(err).__name__}: {err}")
        if not (isinstance(out, tuple) and len(out) == 3 and all(isinstance(o, torch.Tensor) for o in out)):
            return _wrong("expected the function to return a tuple (param, m, v) of tensors.")
        p, m, v = out
        mq, vq = b1 * mq + (1 - b1) * grad, b2 * vq + (1 - b2) * grad**2
        q = q - lr * mq / (vq.sqrt() + eps)
        if torch.allclose(p, ref.detach(), rtol=1e-9, atol=1e-12):
            continue
        if torch.allclose(p, q, rtol=1e-9, atol=1e-12):
            return _wrong(f"step {t} matches Adam without bias correction.",
                          "divide m by (1 − beta1**t) and v by (1 − beta2**t) before the update.")
        if not torch.allclose(m, mq, rtol=1e-9, atol=1e-12):
            return _wrong(f"after step {t} the first moment m is wrong.", "m = beta1·m + (1 − beta1)·grad.")
        if not torch.allclose(v, vq, rtol=1e-9, atol=1e-12):
            return _wrong(f"after step {t} the second moment v is wrong.", "v = beta2·v + (1 − beta2)·grad².")
        return _wrong(f"step {t} gives a parameter different from torch.optim.Adam.",
                      "θ ← θ − lr · m̂ / (√v̂ + eps), with m̂ and v̂ bias-corrected.")
    return _right("five steps match torch.optim.Adam, bias correction included.")


def check_critical_lr(answer: object, curvatures: Sequence[float]) -> Feedback:
    """Check the largest learning rate at which gradient descent converges on a quadratic.

    For ``f(θ) = ½ Σ_i λ_i θ_i²`` each step multiplies coordinate i by ``1 − η λ_i``; the
    iteration converges iff ``|1 − η λ_i| < 1`` for all i, i.e. ``η < 2 / max λ``. Used in
    chapter 06 (optimizers).

    Args:
        answer: The learner's threshold.
        curvatures: The eigenvalues ``λ_i`` of the Hessian (all positive).

    Returns:
        The :class:`Feedback`.
    """
    lams = [float(v) for v in curvatures]
    if not lams or min(lams) <= 0:
        raise ValueError(f"curvatures must be positive numbers, got {list(curvatures)!r}")
    truth, big, small = 2 / max(lams), max(lams), min(lams)
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real) or not math.isfinite(answer):
        return _wrong(f"expected a number, got {answer!r}.", "each step multiplies θ_i by (1 − η λ_i).")
    value = float(answer)
    if math.isclose(value, truth, rel_tol=1e-6):
        return _right(f"η < 2/λ_max = 2/{big:g} = {truth:g}; above it the steepest direction oscillates "
                      "with growing amplitude.")
    if math.isclose(value, 1 / big, rel_tol=1e-6):
        return _wrong(f"1/λ_max = {value:g} is the step that solves the steepest coordinate in one step, "
                      "not the limit of convergence.", "find where |1 − η λ| reaches 1.")
    if math.isclose(value, 2 / small, rel_tol=1e-6):
        return _wrong("that threshold belongs to the flattest direction.",
                      "every coordinate must converge: the largest λ decides.")
    return _wrong(f"{value:g} is not the threshold.", "solve |1 − η λ_max| < 1 for η.")


# Each later chapter keeps its checks in a module of its own; they are re-exported here so that
# every chapter writes ``from dlkit.exercises import check_...``.
from dlkit.exercises.ch02 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch03 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch04 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch07 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch08 import *  # noqa: E402,F401,F403
from dlkit.exercises.ch09 import *  # noqa: E402,F401,F403
