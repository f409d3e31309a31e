"""Exercise checks of chapter 06 (optimizers)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["check_adam_step", "check_critical_lr"]


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
                          "m and v start at zero, so early averages are too small: by what factor does "
                          "t steps of a constant gradient shrink the average, and how do you undo it?")
        if not torch.allclose(m, mq, rtol=1e-9, atol=1e-12):
            return _wrong(f"after step {t} the first moment m is wrong.",
                          "m is an exponential moving average of the gradients, weighted by beta1.")
        if not torch.allclose(v, vq, rtol=1e-9, atol=1e-12):
            return _wrong(f"after step {t} the second moment v is wrong.",
                          "v is an exponential moving average of the squared gradients, weighted by beta2.")
        return _wrong(f"step {t} gives a parameter different from torch.optim.Adam.",
                      "compare your update with the chapter's Adam algorithm, one term at a time.")
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
    return _wrong(f"{value:g} is not the threshold.",
                  "each coordinate converges while |1 − η λ_i| < 1: which λ_i limits η first?")
