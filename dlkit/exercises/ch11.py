"""Exercise checks of chapter 11 (generative models)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["check_gaussian_kl", "check_reparameterize", "check_q_coefficients"]


def _kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=1)


def _call(fn: Callable, *args: object) -> tuple[object, Feedback | None]:
    try:
        return fn(*args), None
    except Exception as err:  # noqa: BLE001 (the learner's code may fail in any way)
        return None, _wrong(f"it raised {type(err).__name__}: {err}",
                            "work on whole tensors with torch operations (torch.exp, .sum(dim=1)).")


def check_gaussian_kl(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check ``fn(mu, logvar)``: KL(N(mu, diag(exp(logvar))) || N(0, I)), one value per row.

    The reference is ``0.5 * sum_j (mu_j² + σ_j² - 1 - log σ_j²)``. Used in chapter 11.

    Args:
        fn: The learner's function of two N × D tensors, returning N values.

    Returns:
        The :class:`Feedback`.
    """
    g = torch.Generator().manual_seed(11)
    mu, logvar = torch.randn(6, 3, generator=g, dtype=torch.float64), \
        torch.randn(6, 3, generator=g, dtype=torch.float64)
    got, error = _call(fn, mu.clone(), logvar.clone())
    if error:
        return error
    if not isinstance(got, torch.Tensor):
        return _wrong(f"it returned {type(got).__name__}, expected a tensor of 6 values.")
    truth = _kl(mu, logvar)
    if got.shape != truth.shape:
        if got.numel() == 1 and torch.isclose(got.double().reshape(()), truth.sum()):
            return _wrong("it returned one number for the whole batch.",
                          "sum over the latent dimensions only (dim=1): one KL per example.")
        return _wrong(f"it returned shape {tuple(got.shape)}, expected ({len(mu)},): one KL "
                      "per row.", "sum over the latent dimensions (dim=1).")
    got = got.double()
    if torch.allclose(got, truth):
        zero, _ = _call(fn, torch.zeros(2, 4), torch.zeros(2, 4))
        if isinstance(zero, torch.Tensor) and zero.shape == (2,) and bool(
                (zero.double().abs() < 1e-7).all()):
            return _right("it matches the closed form, and is 0 when q is the prior.")
        return _wrong("it matches on random inputs but is not 0 for mu = 0, logvar = 0 (q equal "
                      "to the prior).")
    if torch.allclose(got, 2 * truth):
        return _wrong("it is twice the reference.", "the closed form has a factor 1/2 in front.")
    if torch.allclose(got, 0.5 * (mu.square() + logvar.exp() ** 2 - 1 - logvar).sum(1)):
        return _wrong("it uses σ⁴ where the variance σ² belongs.",
                      "logvar is log σ², so σ² = exp(logvar), not exp(logvar)².")
    if torch.allclose(got, -truth):
        return _wrong("it has the wrong sign: a KL divergence is never negative.")
    return _wrong(f"for the first row it gave {got[0].item():.4f}, expected {truth[0].item():.4f}.",
                  "per dimension: mean² + variance − 1 − log variance, halved, then summed.")


def check_reparameterize(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                      torch.Tensor]) -> Feedback:
    """Check ``fn(mu, logvar, eps)``: the reparameterised sample ``mu + σ ε``, σ = exp(logvar / 2).

    Also checks that gradients reach ``mu`` and ``logvar`` (the point of the trick). Used in
    chapter 11.

    Args:
        fn: The learner's function of three N × D tensors.

    Returns:
        The :class:`Feedback`.
    """
    g = torch.Generator().manual_seed(12)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64).requires_grad_()
    logvar = torch.randn(4, 3, generator=g, dtype=torch.float64).requires_grad_()
    eps = torch.randn(4, 3, generator=g, dtype=torch.float64)
    got, error = _call(fn, mu, logvar, eps)
    if error:
        return error
    if not isinstance(got, torch.Tensor) or got.shape != mu.shape:
        return _wrong(f"expected a tensor of shape {tuple(mu.shape)}, got "
                      f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}.")
    with torch.no_grad():
        truth = mu + (0.5 * logvar).exp() * eps
        if not torch.allclose(got.detach().double(), truth):
            if torch.allclose(got.detach().double(), mu + logvar.exp() * eps):
                return _wrong("it scales ε by the variance.",
                              "the standard deviation is the square root of the variance: "
                              "halve logvar before exponentiating.")
            if torch.allclose(got.detach().double(), mu + logvar * eps):
                return _wrong("it scales ε by logvar itself.",
                              "logvar is a logarithm: exponentiate (half of) it first.")
            return _wrong(f"the first entry is {got.flatten()[0].item():.4f}, expected "
                          f"{truth.flatten()[0].item():.4f}.")
    if not got.requires_grad:
        return _wrong("the values are right, but no gradient flows back to mu and logvar.",
                      "build the sample from mu and logvar with differentiable operations "
                      "(no .detach(), no torch.no_grad()).")
    dmu, dlogvar = torch.autograd.grad(got.sum(), (mu, logvar), allow_unused=True)
    if dmu is None or dlogvar is None:
        return _wrong("no gradient reaches " + ("mu" if dmu is None else "logvar") + ".")
    if not torch.allclose(dlogvar, 0.5 * (0.5 * logvar).exp() * eps):
        return _wrong("the gradient with respect to logvar is not the reference's.")
    return _right("the sample is mu + σ ε and gradients flow to mu and logvar.")


def check_q_coefficients(fn: Callable[[torch.Tensor, int], tuple[float, float]]) -> Feedback:
    """Check ``fn(betas, t)``: the closed form's ``(sqrt(ᾱ_t), sqrt(1 - ᾱ_t))`` of q(x_t | x_0).

    ``ᾱ_t`` is the product of ``1 - β_s`` for s = 0 .. t (indices from 0, ``t`` included). Used
    in chapter 11.

    Args:
        fn: The learner's function of a 1-D tensor of betas and a step index.

    Returns:
        The :class:`Feedback`.
    """
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    a = torch.cumprod(1 - betas, 0)
    for t in (0, 10, 500, 999):
        got, error = _call(fn, betas.clone(), t)
        if error:
            return error
        try:
            signal, noise = (float(v) for v in got)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            return _wrong(f"it returned {got!r}, expected a pair (signal, noise) of numbers.")
        want = (math.sqrt(a[t]), math.sqrt(1 - a[t]))
        if math.isclose(signal, want[0], rel_tol=1e-6) and math.isclose(noise, want[1],
                                                                        rel_tol=1e-6):
            continue
        if math.isclose(signal, a[t].item(), rel_tol=1e-6):
            return _wrong(f"at t={t} the signal coefficient is ᾱ_t, not its square root.",
                          "the mean is sqrt(ᾱ_t) x_0 and the variance 1 − ᾱ_t.")
        if math.isclose(signal, math.sqrt(a[t - 1]) if t > 0 else 1.0, rel_tol=1e-6):
            return _wrong(f"at t={t} the product stops one step early.",
                          "include step t itself in the product.")
        if math.isclose(signal, math.sqrt(1 - betas[t]), rel_tol=1e-6):
            return _wrong(f"at t={t} it uses the one-step coefficient sqrt(1 − β_t).",
                          "the closed form composes every step up to t: a running product.")
        return _wrong(f"at t={t} it returned ({signal:.5f}, {noise:.5f}), expected "
                      f"({want[0]:.5f}, {want[1]:.5f}).")
    return _right("it gives sqrt(ᾱ_t) and sqrt(1 − ᾱ_t) at every step tried, first and last included.")
