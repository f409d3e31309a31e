"""Denoising diffusion (DDPM): the forward process, the ε-prediction loss and ancestral sampling.

Used in chapter 11 (generative models). The forward process adds Gaussian noise in ``T`` small
steps, ``q(x_t | x_{t-1}) = N(sqrt(1 - β_t) x_{t-1}, β_t I)``; composing them gives the closed
form that training relies on (Ho et al. 2020, eq. 4)::

    q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I),   ᾱ_t = ∏_{s ≤ t} (1 - β_s)

so a noisy image at any step is one draw, ``x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε``
(:func:`q_sample`). A network learns to predict ``ε`` from ``(x_t, t)`` with a mean squared
error (:class:`DiffusionStep`), and sampling runs the process backwards from pure noise
(:func:`sample`), each step drawing from the Gaussian posterior ``q(x_{t-1} | x_t, x̂_0)``.

Sampling with fewer steps keeps the trained network and takes a subsequence ``τ_1 < … < τ_S``
of its timesteps (:meth:`NoiseSchedule.respace`): the respaced process has
``ᾱ'_i = ᾱ_{τ_i}``, hence ``β'_i = 1 - ᾱ'_i / ᾱ'_{i-1}`` (Nichol and Dhariwal 2021), and the same
ancestral sampler runs on it.

Class-conditional models are trained with the label replaced by a "null" class some of the
time, so one network gives both ``ε(x_t, t, y)`` and ``ε(x_t, t, ∅)``; classifier-free guidance
(Ho and Salimans 2022) samples with ``ε_∅ + s (ε_y - ε_∅)``: ``s = 1`` is the conditional model,
``s = 0`` the unconditional one, ``s > 1`` trades diversity for fidelity to the class.

Images live in ``[0, 1]`` outside this module and in ``[-1, 1]`` inside it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit._util import eval_mode
from dlkit.train.loop import StepOutput, TrainStep

__all__ = ["NoiseSchedule", "q_sample", "DiffusionStep", "diffusion_validate", "sample",
           "to_model_range", "to_image_range"]


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Images in ``[0, 1]`` to the model's ``[-1, 1]``."""
    return x * 2 - 1


def to_image_range(x: torch.Tensor) -> torch.Tensor:
    """The model's ``[-1, 1]`` back to images in ``[0, 1]`` (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
    """The variances ``β_1 … β_T`` of the forward process and the quantities derived from them.

    Index ``t`` runs from 0 to ``T - 1`` here (the paper's step ``t + 1``).

    Attributes:
        betas: ``β_t``, float64, shape ``(T,)``, each in ``(0, 1)``.
        timesteps: The original timestep of each entry: ``arange(T)`` for a trained schedule,
            the kept subsequence for a respaced one (what the network is told).
    """

    betas: torch.Tensor
    timesteps: torch.Tensor

    def __post_init__(self) -> None:
        b = self.betas
        if b.ndim != 1 or len(b) == 0 or not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must be a non-empty 1-D tensor with every value in (0, 1)")
        if self.timesteps.shape != b.shape:
            raise ValueError(f"timesteps {tuple(self.timesteps.shape)} must match betas "
                             f"{tuple(b.shape)}")

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> NoiseSchedule:
        """Ho et al.'s linear schedule: ``β_t`` from ``beta_start`` to ``beta_end`` in ``T`` steps."""
        if T < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64),
                   torch.arange(T))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008) -> NoiseSchedule:
        """Nichol and Dhariwal's cosine schedule: ``ᾱ_t`` follows ``cos²``, ``β_t`` ≤ 0.999."""
        if T < 1:
            raise ValueError(f"T must be at least 1, got {T}")
        u = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((u + s) / (1 + s) * torch.pi / 2) ** 2
        return cls((1 - f[1:] / f[:-1]).clamp(max=0.999), torch.arange(T))

    @property
    def T(self) -> int:  # noqa: N802  (the paper's name)
        """Number of steps."""
        return len(self.betas)

    @property
    def alphas(self) -> torch.Tensor:
        """``α_t = 1 - β_t``."""
        return 1 - self.betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        """``ᾱ_t = ∏_{s ≤ t} α_s``: how much of ``x_0`` survives at step ``t``."""
        return torch.cumprod(self.alphas, 0)

    def coefficients(self, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """The closed form's ``(sqrt(ᾱ_t), sqrt(1 - ᾱ_t))`` at index ``t``, in float64."""
        a = self.alpha_bars[torch.as_tensor(t)]
        return a.sqrt(), (1 - a).sqrt()

    def respace(self, steps: int) -> NoiseSchedule:
        """A schedule of ``steps`` evenly strided timesteps, for faster sampling.

        Keeps ``τ_i`` (the last one is always ``T - 1``) and sets ``β'_i = 1 - ᾱ_{τ_i} /
        ᾱ_{τ_{i-1}}``, so the respaced process has the same ``ᾱ`` at the kept steps.

        Raises:
            ValueError: If ``steps`` is not between 1 and ``T``.
        """
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps must be between 1 and T={self.T}, got {steps}")
        keep = torch.linspace(0, self.T - 1, steps, dtype=torch.float64).round().long()
        a = self.alpha_bars[keep]
        previous = torch.cat([torch.ones(1, dtype=a.dtype), a[:-1]])
        return NoiseSchedule(1 - a / previous, self.timesteps[keep])


def q_sample(x0: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule,
             noise: torch.Tensor) -> torch.Tensor:
    """Draw ``x_t ~ q(x_t | x_0)`` in one step: ``sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε``.

    Args:
        x0: Clean images in the model's range, N×C×H×W.
        t: Step index per image, shape ``(N,)``.
        schedule: The forward process.
        noise: ``ε``, the same shape as ``x0``.

    Returns:
        ``x_t``, the dtype of ``x0``.
    """
    if noise.shape != x0.shape or t.shape != x0.shape[:1]:
        raise ValueError(f"expected noise of shape {tuple(x0.shape)} and t of shape "
                         f"({x0.shape[0]},), got {tuple(noise.shape)} and {tuple(t.shape)}")
    signal, sigma = schedule.coefficients(t.cpu())
    view = (-1,) + (1,) * (x0.ndim - 1)
    signal = signal.to(x0.device, x0.dtype).view(view)
    sigma = sigma.to(x0.device, x0.dtype).view(view)
    return signal * x0 + sigma * noise


class DiffusionStep(TrainStep):
    """One DDPM training step: a random ``t`` per image, ``x_t`` in closed form, MSE on ``ε``.

    Batches are ``(images in [0, 1], labels)``; the model is called as ``model(x_t, t, y)``.
    With ``p_uncond > 0`` each label is replaced by the null class ``num_classes`` with that
    probability (classifier-free guidance needs both); labels are ignored when ``num_classes``
    is ``None``. Chapter 11.

    Args:
        schedule: The forward process the model learns to reverse.
        num_classes: Number of real classes (the null class is ``num_classes``), or ``None``.
        p_uncond: Probability of dropping a label.
        seed: Seed of the step's own generator (timesteps, noise, label dropout).
    """

    def __init__(self, schedule: NoiseSchedule, num_classes: int | None = None,
                 p_uncond: float = 0.1, seed: int = 0) -> None:
        if not 0 <= p_uncond <= 1:
            raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
        self.schedule, self.num_classes, self.p_uncond = schedule, num_classes, p_uncond
        self.generator = torch.Generator().manual_seed(seed)

    def targets(self, x0: torch.Tensor, y: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Draw the training inputs for clean images ``x0`` (model range).

        Returns:
            ``(x_t, t, labels or None, ε)``.
        """
        g, n = self.generator, x0.shape[0]
        t = torch.randint(0, self.schedule.T, (n,), generator=g)
        noise = torch.randn(x0.shape, generator=g).to(x0.device, x0.dtype)
        labels = None
        if self.num_classes is not None:
            if y is None:
                raise ValueError("a class-conditional DiffusionStep needs (images, labels) batches")
            drop = (torch.rand(n, generator=g) < self.p_uncond).to(y.device)
            labels = torch.where(drop, torch.full_like(y, self.num_classes), y)
        t = t.to(x0.device)
        return q_sample(x0, t, self.schedule, noise), t, labels, noise

    def __call__(self, loop: Any, X: torch.Tensor, y: torch.Tensor | None) -> StepOutput:
        x_t, t, labels, noise = self.targets(to_model_range(X), y)
        with loop.autocast():
            loss = F.mse_loss(loop.forward(x_t, t, labels).float(), noise)
        loop.zero_grad()
        loop.backward(loss)
        loop.optimizer_step()
        return StepOutput(loss, None)


def diffusion_validate(schedule: NoiseSchedule, num_classes: int | None = None,
                       seed: int = 0) -> Any:
    """A ``validate`` function for :func:`dlkit.train.fit`: the ε-prediction MSE on validation data.

    The timesteps and noise are drawn from a generator reset to ``seed`` at every call, so the
    validation loss of two epochs is measured on the same draws and is comparable.
    """

    def validate(model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        step = DiffusionStep(schedule, num_classes, p_uncond=0.0, seed=seed)
        total, n = 0.0, 0
        for X, y in loader:
            X, y = X.to(device), y.to(device)
            x_t, t, labels, noise = step.targets(to_model_range(X), y)
            total += F.mse_loss(model(x_t, t, labels).float(), noise, reduction="sum").item()
            n += X.numel()
        return {"loss": total / n}

    return validate


@torch.no_grad()
def sample(model: nn.Module, schedule: NoiseSchedule, shape: Sequence[int], *,
           labels: torch.Tensor | None = None, guidance: float = 1.0,
           num_classes: int | None = None, generator: torch.Generator | None = None,
           device: torch.device | str | None = None, clip: bool = True,
           return_steps: Sequence[int] = ()) -> torch.Tensor | tuple[torch.Tensor, list]:
    """Ancestral sampling: from ``x_T ~ N(0, I)`` down to ``x_0``, one posterior draw per step.

    At each step the network's ``ε̂`` gives ``x̂_0 = (x_t - sqrt(1 - ᾱ_t) ε̂) / sqrt(ᾱ_t)``
    (clamped to ``[-1, 1]`` when ``clip``), and ``x_{t-1}`` is drawn from the Gaussian posterior
    ``q(x_{t-1} | x_t, x̂_0)`` with mean ``c_0 x̂_0 + c_t x_t`` and variance
    ``β̃_t = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) β_t`` (Ho et al. 2020, eqs. 6-7); no noise is added at
    the last step. Without clipping the mean equals the paper's
    ``(x_t - β_t / sqrt(1 - ᾱ_t) ε̂) / sqrt(α_t)``.

    Args:
        model: Called as ``model(x_t, timesteps, labels)``, returns ``ε̂``.
        schedule: The trained schedule, or a :meth:`~NoiseSchedule.respace`\\ d one.
        shape: ``(N, C, H, W)`` of the batch to draw.
        labels: Class per image for a conditional model (``None``: unconditional).
        guidance: Classifier-free guidance scale ``s`` (needs ``labels`` and
            ``num_classes``): ``ε_∅ + s (ε_y - ε_∅)``; 1 means plain conditional sampling.
        num_classes: The null class's index (the number of real classes), for guidance.
        generator: Seeds the initial noise and every step's noise (on the CPU).
        device: Where the model runs (default: where its parameters are).
        clip: Clamp ``x̂_0`` to ``[-1, 1]``.
        return_steps: Indices into ``schedule`` (0 = the last, least noisy) whose ``x_t``
            are returned too, as images in ``[0, 1]``.

    Returns:
        Images in ``[0, 1]`` (on the CPU), and, if ``return_steps``, the list of
        ``(timestep, images)`` kept along the way.
    """
    if labels is not None and len(labels) != shape[0]:
        raise ValueError(f"expected {shape[0]} labels, got {len(labels)}")
    if guidance != 1.0 and (labels is None or num_classes is None):
        raise ValueError("guidance other than 1 needs labels and num_classes (the null class)")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    g = generator or torch.Generator().manual_seed(0)
    a_bar = schedule.alpha_bars
    a_prev = torch.cat([torch.ones(1, dtype=a_bar.dtype), a_bar[:-1]])
    betas = schedule.betas
    x = torch.randn(tuple(shape), generator=g).to(device)
    y = labels.to(device) if labels is not None else None
    null = torch.full_like(y, num_classes) if guidance != 1.0 else None
    kept = []
    with eval_mode(model):
        for i in reversed(range(schedule.T)):
            t = torch.full((shape[0],), int(schedule.timesteps[i]), device=device)
            if null is not None:  # one batch of 2N: conditional and unconditional
                eps_y, eps_0 = model(torch.cat([x, x]), torch.cat([t, t]),
                                     torch.cat([y, null])).float().chunk(2)
                eps = eps_0 + guidance * (eps_y - eps_0)
            else:
                eps = model(x, t, y).float()
            ab, ap, b = float(a_bar[i]), float(a_prev[i]), float(betas[i])
            x0 = (x - (1 - ab) ** 0.5 * eps) / ab ** 0.5
            if clip:
                x0 = x0.clamp(-1, 1)
            mean = (ap ** 0.5 * b / (1 - ab)) * x0 + ((1 - b) ** 0.5 * (1 - ap) / (1 - ab)) * x
            if i > 0:
                var = (1 - ap) / (1 - ab) * b
                x = mean + var ** 0.5 * torch.randn(x.shape, generator=g).to(device)
            else:
                x = mean
            if i in return_steps:
                kept.append((int(schedule.timesteps[i]), to_image_range(x).cpu()))
    images = to_image_range(x).cpu()
    return (images, kept) if return_steps else images
