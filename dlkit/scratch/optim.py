"""Five optimizers written from their update equations: SGD, Adagrad, RMSprop, Adam and AdamW.

Chapter 06 (optimizers) derives each update rule; this module is the derivation as code. Each
class is a :class:`torch.optim.Optimizer` with the same constructor arguments, defaults, update
and state names as its :mod:`torch.optim` twin, so it works with :func:`dlkit.train.fit`, with
learning-rate schedulers, and with ``state_dict()`` / ``load_state_dict()`` (in both directions).

How to read it: each class docstring gives the update of one parameter tensor ``theta`` whose
gradient at step ``t = 1, 2, ...`` is ``g_t``; the ``step`` method below it is the same equations,
line by line, with the same names. The operations are written in the order :mod:`torch.optim`
performs them (its ``_single_tensor_*`` functions) because floating-point arithmetic is not
associative: ``(a * b) / c`` and ``a * (b / c)`` can differ in the last bit, and over hundreds of
steps such bits grow. In that order the trajectories match torch's to the bit (the tests check
it on every option combination).

Left out on purpose: torch's extra flags (``maximize``, ``foreach``, ``fused``, ``capturable``,
``differentiable``), tensor learning rates, complex parameters and sparse gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


# --------------------------------------------------------------------------- #
# The bookkeeping every step shares
# --------------------------------------------------------------------------- #
def _expect(ok: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``ok`` (written so that NaN arguments fail too)."""
    if not ok:
        raise ValueError(message)


def _evaluate(closure: Callable[[], float] | None) -> float | None:
    """Return ``closure()`` (the loss), or ``None`` without a closure."""
    if closure is None:
        return None
    # step() runs under no_grad, but the closure must build a graph to call backward().
    with torch.enable_grad():
        return closure()


def _params_with_grad(group: dict[str, Any], name: str) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(parameter, gradient)`` for each parameter of ``group`` that has a gradient.

    Raises:
        RuntimeError: On a sparse gradient or a complex parameter, which these updates do not
            handle (``g * g`` would be wrong for complex numbers).
    """
    for p in group["params"]:
        if p.grad is None:
            continue  # unused in the last forward pass, or frozen: no gradient, no update
        if p.grad.is_sparse:
            raise RuntimeError(
                f"scratch {name} does not support sparse gradients (e.g. from "
                "nn.Embedding(sparse=True)); use a dense layer or torch.optim.SparseAdam"
            )
        if torch.is_complex(p):
            raise RuntimeError(f"scratch {name} does not support complex parameters")
        yield p, p.grad


def _next_step(state: dict[str, Any]) -> int:
    """Advance the parameter's step counter and return the new ``t`` (1 on the first step)."""
    # int() also accepts the 0-d tensor that torch.optim stores, so its state dicts load here.
    state["step"] = int(state["step"]) + 1
    return state["step"]


# --------------------------------------------------------------------------- #
# SGD
# --------------------------------------------------------------------------- #
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    Used in chapter 06 (optimizers). Same arguments, defaults and update as
    :class:`torch.optim.SGD`; state per parameter: ``momentum_buffer`` (when momentum != 0).

    Update, each step t::

        g_t     <- g_t + weight_decay * theta_{t-1}                       (L2 penalty)
        b_t     <- g_t                                           if t = 1  (momentum != 0)
        b_t     <- momentum * b_{t-1} + (1 - dampening) * g_t    if t > 1
        d_t     <- g_t + momentum * b_t    if nesterov,   else   b_t
        theta_t <- theta_{t-1} - lr * d_t                      (d_t = g_t without momentum)

    The Nesterov form is that of Sutskever et al. (2013): look one momentum step ahead.

    Args:
        params: Tensors to optimize, or dicts defining parameter groups.
        lr: Learning rate.
        momentum: Momentum factor (0 for plain SGD).
        dampening: Fraction of the gradient left out of the momentum buffer.
        weight_decay: L2 penalty coefficient, added to the gradient.
        nesterov: Use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).

    Raises:
        ValueError: On a negative ``lr``, ``momentum`` or ``weight_decay``, or ``nesterov``
            without momentum or with dampening.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
    ) -> None:
        _expect(lr >= 0, f"Invalid learning rate: {lr} (expected lr >= 0)")
        _expect(momentum >= 0, f"Invalid momentum value: {momentum} (expected momentum >= 0)")
        _expect(
            weight_decay >= 0,
            f"Invalid weight_decay value: {weight_decay} (expected weight_decay >= 0)",
        )
        _expect(
            not nesterov or (momentum > 0 and dampening == 0),
            "Nesterov momentum requires a momentum and zero dampening "
            f"(expected momentum > 0 and dampening == 0, got {momentum} and {dampening})",
        )
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient.

        Args:
            closure: Optional function that clears the gradients, recomputes the loss, calls
                ``backward()`` and returns the loss; called before the update.

        Returns:
            The closure's loss, or ``None`` without a closure.
        """
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            for p, g in _params_with_grad(group, "SGD"):
                if weight_decay != 0:
                    g = g.add(p, alpha=weight_decay)  # a new tensor: p.grad stays untouched
                if momentum != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        # b_1 = g_1, undamped. A copy: p.grad is overwritten by the next backward.
                        state["momentum_buffer"] = g.clone()
                    else:
                        state["momentum_buffer"].mul_(momentum).add_(g, alpha=1 - dampening)
                    b = state["momentum_buffer"]
                    g = g.add(b, alpha=momentum) if nesterov else b
                p.add_(g, alpha=-lr)
        return loss


# --------------------------------------------------------------------------- #
# Adagrad
# --------------------------------------------------------------------------- #
class Adagrad(Optimizer):
    """Adagrad: a per-coordinate step size that shrinks with the sum of squared gradients.

    Used in chapter 06 (optimizers). Same arguments, defaults and update as
    :class:`torch.optim.Adagrad` (Duchi et al., 2011); state per parameter: ``step``, ``sum``.

    Update, each step t::

        g_t     <- g_t + weight_decay * theta_{t-1}                       (L2 penalty)
        lr_t     = lr / (1 + (t - 1) * lr_decay)
        s_t     <- s_{t-1} + g_t^2                       s_0 = initial_accumulator_value
        theta_t <- theta_{t-1} - lr_t * g_t / (sqrt(s_t) + eps)

    Squares, square roots and divisions act element by element. Coordinates with large past
    gradients take small steps; since ``s_t`` only grows, every step size decays to zero.

    Args:
        params: Tensors to optimize, or dicts defining parameter groups.
        lr: Learning rate.
        lr_decay: Decay of the learning rate with the step count.
        weight_decay: L2 penalty coefficient, added to the gradient.
        initial_accumulator_value: Starting value of the sum of squared gradients.
        eps: Added to the denominator so that it is never zero.

    Raises:
        ValueError: If any argument is negative.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
    ) -> None:
        _expect(lr >= 0, f"Invalid learning rate: {lr} (expected lr >= 0)")
        _expect(lr_decay >= 0, f"Invalid lr_decay value: {lr_decay} (expected lr_decay >= 0)")
        _expect(
            weight_decay >= 0,
            f"Invalid weight_decay value: {weight_decay} (expected weight_decay >= 0)",
        )
        _expect(
            initial_accumulator_value >= 0,
            f"Invalid initial_accumulator_value value: {initial_accumulator_value} "
            "(expected initial_accumulator_value >= 0)",
        )
        _expect(eps >= 0, f"Invalid epsilon value: {eps} (expected eps >= 0)")
        defaults = dict(
            lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient.

        Args:
            closure: Optional function that clears the gradients, recomputes the loss, calls
                ``backward()`` and returns the loss; called before the update.

        Returns:
            The closure's loss, or ``None`` without a closure.
        """
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, lr_decay, eps = group["lr"], group["lr_decay"], group["eps"]
            weight_decay = group["weight_decay"]
            for p, g in _params_with_grad(group, "Adagrad"):
                state = self.state[p]
                if not state:  # first update of this parameter
                    state["step"] = 0
                    state["sum"] = torch.full_like(p, group["initial_accumulator_value"])
                t = _next_step(state)
                if weight_decay != 0:
                    g = g.add(p, alpha=weight_decay)
                lr_t = lr / (1 + (t - 1) * lr_decay)
                s = state["sum"]
                s.addcmul_(g, g, value=1)
                p.addcdiv_(g, s.sqrt().add_(eps), value=-lr_t)
        return loss


# --------------------------------------------------------------------------- #
# RMSprop
# --------------------------------------------------------------------------- #
class RMSprop(Optimizer):
    """RMSprop: Adagrad with a moving average of squared gradients instead of their sum.

    Used in chapter 06 (optimizers). Same arguments, defaults and update as
    :class:`torch.optim.RMSprop` (Hinton's Coursera lecture 6e, 2012); state per parameter:
    ``step``, ``square_avg``, and ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered).

    Update, each step t (all moving averages start at 0)::

        g_t     <- g_t + weight_decay * theta_{t-1}                       (L2 penalty)
        v_t     <- alpha * v_{t-1} + (1 - alpha) * g_t^2
        m_t     <- alpha * m_{t-1} + (1 - alpha) * g_t                    (centered only)
        den_t    = sqrt(v_t - m_t^2) + eps    if centered,   else   sqrt(v_t) + eps
        b_t     <- momentum * b_{t-1} + g_t / den_t                       (momentum > 0)
        theta_t <- theta_{t-1} - lr * b_t      (lr * g_t / den_t without momentum)

    Forgetting old gradients (``alpha < 1``) keeps the step size from decaying to zero as in
    Adagrad. Centering divides by an estimate of the gradient's standard deviation rather than
    of its root mean square.

    Args:
        params: Tensors to optimize, or dicts defining parameter groups.
        lr: Learning rate.
        alpha: Smoothing constant of the moving averages.
        eps: Added to the denominator so that it is never zero.
        weight_decay: L2 penalty coefficient, added to the gradient.
        momentum: Momentum factor (0 for none).
        centered: Normalize by the estimated variance instead of the second moment.

    Raises:
        ValueError: If ``lr``, ``alpha``, ``eps``, ``weight_decay`` or ``momentum`` is negative.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
    ) -> None:
        _expect(lr >= 0, f"Invalid learning rate: {lr} (expected lr >= 0)")
        _expect(eps >= 0, f"Invalid epsilon value: {eps} (expected eps >= 0)")
        _expect(momentum >= 0, f"Invalid momentum value: {momentum} (expected momentum >= 0)")
        _expect(
            weight_decay >= 0,
            f"Invalid weight_decay value: {weight_decay} (expected weight_decay >= 0)",
        )
        _expect(alpha >= 0, f"Invalid alpha value: {alpha} (expected alpha >= 0)")
        defaults = dict(
            lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
            weight_decay=weight_decay,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient.

        Args:
            closure: Optional function that clears the gradients, recomputes the loss, calls
                ``backward()`` and returns the loss; called before the update.

        Returns:
            The closure's loss, or ``None`` without a closure.
        """
        loss = _evaluate(closure)
        for group in self.param_groups:
            lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
            weight_decay, momentum, centered = (
                group["weight_decay"], group["momentum"], group["centered"]
            )
            for p, g in _params_with_grad(group, "RMSprop"):
                state = self.state[p]
                if not state:  # first update of this parameter
                    state["step"] = 0
                    state["square_avg"] = torch.zeros_like(p)
                    if momentum > 0:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    if centered:
                        state["grad_avg"] = torch.zeros_like(p)
                _next_step(state)  # the update does not use t; counted as torch.optim does
                if weight_decay != 0:
                    g = g.add(p, alpha=weight_decay)
                v = state["square_avg"]
                v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
                if centered:
                    m = state["grad_avg"]
                    m.lerp_(g, 1 - alpha)  # m + (1 - alpha) (g - m), the average written as lerp
                    den = v.addcmul(m, m, value=-1).sqrt_().add_(eps)
                else:
                    den = v.sqrt().add_(eps)
                if momentum > 0:
                    b = state["momentum_buffer"]
                    b.mul_(momentum).addcdiv_(g, den)
                    p.add_(b, alpha=-lr)
                else:
                    p.addcdiv_(g, den, value=-lr)
        return loss


# --------------------------------------------------------------------------- #
# Adam and AdamW
# --------------------------------------------------------------------------- #
class Adam(Optimizer):
    """Adam: momentum on the gradient, RMSprop on its scale, both corrected for their zero start.

    Used in chapter 06 (optimizers). Same arguments, defaults and update as
    :class:`torch.optim.Adam` (Kingma & Ba, 2015); state per parameter: ``step``, ``exp_avg``,
    ``exp_avg_sq``, and ``max_exp_avg_sq`` (amsgrad).

    Update, each step t (m_0 = v_0 = vmax_0 = 0)::

        g_t     <- g_t + weight_decay * theta_{t-1}                       (L2 penalty)
        m_t     <- beta1 * m_{t-1} + (1 - beta1) * g_t                    (first moment)
        v_t     <- beta2 * v_{t-1} + (1 - beta2) * g_t^2                  (second moment)
        vmax_t  <- max(vmax_{t-1}, v_t),  used in place of v_t below      (amsgrad only)
        mhat_t   = m_t / (1 - beta1^t)                                    (bias corrections)
        vhat_t   = v_t / (1 - beta2^t)
        theta_t <- theta_{t-1} - lr * mhat_t / (sqrt(vhat_t) + eps)

    The corrections undo the pull of the zero start: with a constant gradient g,
    ``m_t = (1 - beta1^t) g``, so ``mhat_t = g`` from the first step on.
    AMSGrad (Reddi et al., 2018) keeps the denominator from shrinking, which restores a
    convergence guarantee that plain Adam lacks.

    Args:
        params: Tensors to optimize, or dicts defining parameter groups.
        lr: Learning rate.
        betas: ``(beta1, beta2)``, the smoothing constants of the two moving averages.
        eps: Added to the denominator so that it is never zero.
        weight_decay: L2 penalty coefficient, added to the gradient (see :class:`AdamW` for the
            decoupled form).
        amsgrad: Use the running maximum of the second moment.

    Raises:
        ValueError: On a negative ``lr``, ``eps`` or ``weight_decay``, or a beta outside
            ``[0, 1)``.
    """

    # AdamW differs only here: it shrinks the weights instead of adding an L2 term to g_t.
    _decoupled_weight_decay = False

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
    ) -> None:
        _expect(lr >= 0, f"Invalid learning rate: {lr} (expected lr >= 0)")
        _expect(eps >= 0, f"Invalid epsilon value: {eps} (expected eps >= 0)")
        beta1, beta2 = betas
        _expect(
            0 <= beta1 < 1,
            f"Invalid beta parameter at index 0: {beta1} (expected 0 <= beta1 < 1)",
        )
        _expect(
            0 <= beta2 < 1,
            f"Invalid beta parameter at index 1: {beta2} (expected 0 <= beta2 < 1)",
        )
        _expect(
            weight_decay >= 0,
            f"Invalid weight_decay value: {weight_decay} (expected weight_decay >= 0)",
        )
        defaults = dict(
            lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a gradient.

        Args:
            closure: Optional function that clears the gradients, recomputes the loss, calls
                ``backward()`` and returns the loss; called before the update.

        Returns:
            The closure's loss, or ``None`` without a closure.
        """
        loss = _evaluate(closure)
        name = type(self).__name__
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
            for p, g in _params_with_grad(group, name):
                state = self.state[p]
                if not state:  # first update of this parameter
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if amsgrad:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                t = _next_step(state)
                if weight_decay != 0:
                    if self._decoupled_weight_decay:
                        p.mul_(1 - lr * weight_decay)  # AdamW: outside the adaptive scaling
                    else:
                        g = g.add(p, alpha=weight_decay)  # Adam: divided by sqrt(v) like g
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(g, 1 - beta1)  # m + (1 - beta1) (g - m), the average written as lerp
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                if amsgrad:
                    torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                    v = state["max_exp_avg_sq"]
                # lr * mhat / (sqrt(vhat) + eps), arranged as torch.optim does: 1 / (1 - beta1^t)
                # joins the scalar step size, and sqrt(vhat) = sqrt(v) / sqrt(1 - beta2^t).
                bias_correction1 = 1 - beta1**t
                bias_correction2 = 1 - beta2**t
                den = (v.sqrt() / bias_correction2**0.5).add_(eps)
                p.addcdiv_(m, den, value=-lr / bias_correction1)
        return loss


class AdamW(Adam):
    """AdamW: Adam with weight decay applied to the weights, not added to the gradient.

    Used in chapter 06 (optimizers). Same arguments, defaults and update as
    :class:`torch.optim.AdamW` (Loshchilov & Hutter, 2019); same state as :class:`Adam`.

    Update, each step t: first shrink the weights, then take a plain Adam step (with
    ``weight_decay = 0``) from the shrunk weights::

        theta_{t-1} <- (1 - lr * weight_decay) * theta_{t-1}
        m_t, v_t, mhat_t, vhat_t  as in Adam
        theta_t     <- theta_{t-1} - lr * mhat_t / (sqrt(vhat_t) + eps)

    In Adam the L2 term ``weight_decay * theta`` passes through ``1 / sqrt(vhat_t)``, so
    weights with large gradients are barely decayed; here every weight decays at the same rate.

    Args:
        params: Tensors to optimize, or dicts defining parameter groups.
        lr: Learning rate.
        betas: ``(beta1, beta2)``, the smoothing constants of the two moving averages.
        eps: Added to the denominator so that it is never zero.
        weight_decay: Fraction ``lr * weight_decay`` of each weight removed per step.
        amsgrad: Use the running maximum of the second moment.

    Raises:
        ValueError: On a negative ``lr``, ``eps`` or ``weight_decay``, or a beta outside
            ``[0, 1)``.
    """

    _decoupled_weight_decay = True

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
