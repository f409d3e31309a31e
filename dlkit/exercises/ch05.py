"""Exercise checks of chapter 05 (backpropagation)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["check_relu_backward", "check_softmax_ce_grad"]


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
        return _wrong("the gradient passes through everywhere.",
                      "ReLU is flat wherever it outputs 0: what is its slope there, and what does the "
                      "chain rule make of grad_out at those positions?")
    if torch.allclose(got, (x > 0).to(got.dtype)):
        return _wrong("it returns ReLU's local derivative only.",
                      "the chain rule combines it with the gradient that arrives from above.")
    if torch.allclose(got, grad_out * (x >= 0)):
        return _wrong("at x = 0 it lets the gradient through.",
                      "ReLU has no derivative at 0; PyTorch takes the slope there to be that of the "
                      "flat side.")
    return _wrong("the values differ from autograd's gradient of ReLU.",
                  "work out ReLU's slope for x < 0 and for x > 0 separately, then apply the chain rule.")


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
                          "softmax(z) equals softmax(z − c) for any constant c per row: choose c so "
                          "that exp() never sees a large positive number.")
        if torch.allclose(got, truth, atol=1e-10):
            continue
        n = len(y)
        if torch.allclose(got, truth * n, atol=1e-10):
            return _wrong("this is the gradient of the summed loss.",
                          f"F.cross_entropy averages the loss over the batch of N = {n} examples.")
        if torch.allclose(got, -truth, atol=1e-10):
            return _wrong("the sign is flipped.",
                          "raising the true class's logit lowers the loss, so its partial derivative is "
                          "negative.")
        p = logits.softmax(dim=1)
        if torch.allclose(got, p / n, atol=1e-10) or torch.allclose(got, p, atol=1e-10):
            return _wrong("it is missing the term of the true class.",
                          "differentiate −log p_y with respect to z_y and with respect to another logit "
                          "z_j: the two cases differ by one term.")
        return _wrong("the values differ from autograd's gradient of F.cross_entropy.",
                      "derive ∂L/∂z_j for one example first, then average over the batch.")
    return _right("(softmax(logits) − onehot(y)) / N, stable for large logits.")
