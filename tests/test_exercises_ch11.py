"""Chapter 11's exercise checks accept the right answers and explain the usual wrong ones."""

from __future__ import annotations

import math

import torch

from dlkit.exercises import check_gaussian_kl, check_q_coefficients, check_reparameterize
from dlkit.generative import NoiseSchedule, gaussian_kl, reparameterize


def test_gaussian_kl_accepts_dlkits_closed_form_and_explains_mistakes():
    assert check_gaussian_kl(gaussian_kl).ok
    assert check_gaussian_kl(lambda mu, lv: 0.5 * (mu**2 + lv.exp() - 1 - lv).sum(1)).ok
    fb = check_gaussian_kl(lambda mu, lv: (mu**2 + lv.exp() - 1 - lv).sum(1))
    assert not fb.ok and "1/2" in fb.hint
    fb = check_gaussian_kl(lambda mu, lv: 0.5 * (mu**2 + lv.exp() ** 2 - 1 - lv).sum(1))
    assert not fb.ok and "σ⁴" in fb.message
    fb = check_gaussian_kl(lambda mu, lv: 0.5 * (mu**2 + lv.exp() - 1 - lv).sum())
    assert not fb.ok and "dim=1" in fb.hint
    fb = check_gaussian_kl(lambda mu, lv: 0.5 * (mu**2 + lv.exp() - 1 - lv).sum(1) + (mu == 0).all())
    assert not fb.ok and "not 0" in fb.message
    assert not check_gaussian_kl(lambda mu, lv: 1 / 0).ok
    assert not check_gaussian_kl(lambda mu, lv: "kl").ok


def test_reparameterize_accepts_dlkits_and_needs_gradients():
    assert check_reparameterize(lambda mu, lv, eps: reparameterize(mu, lv, eps)).ok
    fb = check_reparameterize(lambda mu, lv, eps: mu + lv.exp() * eps)
    assert not fb.ok and "variance" in fb.message
    fb = check_reparameterize(lambda mu, lv, eps: mu + lv * eps)
    assert not fb.ok and "logvar itself" in fb.message
    fb = check_reparameterize(lambda mu, lv, eps: (mu + (0.5 * lv).exp() * eps).detach())
    assert not fb.ok and "no gradient" in fb.message
    assert not check_reparameterize(lambda mu, lv, eps: mu).ok


def test_q_coefficients_accepts_the_running_product_and_names_the_usual_slips():
    def right(betas, t):
        a = torch.cumprod(1 - betas, 0)[t]
        return a.sqrt().item(), (1 - a).sqrt().item()

    assert check_q_coefficients(right).ok
    # dlkit's schedule gives the same numbers.
    s = NoiseSchedule(torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), torch.arange(1000))
    assert check_q_coefficients(lambda b, t: tuple(v.item() for v in s.coefficients(t))).ok

    def no_root(betas, t):
        a = torch.cumprod(1 - betas, 0)[t]
        return a.item(), (1 - a).item()

    def early(betas, t):
        a = torch.prod(1 - betas[:t])
        return math.sqrt(a), math.sqrt(1 - a)

    def one_step(betas, t):
        return math.sqrt(1 - betas[t]), math.sqrt(betas[t])

    assert "square root" in check_q_coefficients(no_root).message
    assert "one step early" in check_q_coefficients(early).message
    assert "one-step" in check_q_coefficients(one_step).message
    assert not check_q_coefficients(lambda b, t: 0.5).ok
