"""The variational autoencoder (Kingma and Welling 2014): its loss, its gradients, its step.

Used in chapter 11 (generative models), on Fashion-MNIST images of 1×28×28 with pixels in
[0, 1]. The encoder gives, for each image x, a Gaussian ``q(z|x) = N(mu, diag exp(logvar))``
over the latent code; the decoder gives Bernoulli means for the 784 pixels given z. Training
maximises the evidence lower bound (ELBO),

    log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || p(z)),    p(z) = N(0, I),

that is, minimises ``recon + kl`` (:func:`negative_elbo`), in nats per image.

* :func:`gaussian_kl` is the closed form of the KL term; :func:`gaussian_kl_monte_carlo`
  estimates the same quantity from samples, to check it;
* :func:`reparameterize` writes ``z = mu + sigma * eps``, so gradients reach mu and sigma;
  :func:`reparam_gradient` and :func:`score_function_gradient` compare that estimator with the
  score-function one (REINFORCE) on a one-dimensional toy problem;
* :class:`ConvVAE` is the model, :class:`VAEStep` its training step and :func:`vae_validate`
  its validation for :func:`dlkit.train.fit`; :func:`bits_per_dim` converts nats per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit._util import eval_mode
from dlkit.generative.autoencoder import conv_decoder, conv_encoder
from dlkit.generative.evaluation import model_device
from dlkit.train.inference import split_batch
from dlkit.train.loop import StepOutput, TrainStep

__all__ = ["gaussian_kl", "gaussian_kl_monte_carlo", "reparameterize", "reparam_gradient",
           "score_function_gradient", "ConvVAE", "negative_elbo", "bits_per_dim", "VAEStep",
           "vae_validate"]

_LOG_2PI = math.log(2 * math.pi)


def _check_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> None:
    if mu.ndim != 2 or mu.shape != logvar.shape:
        raise ValueError(f"expected mu and logvar of one shape (N, latent_dim), got "
                         f"{tuple(mu.shape)} and {tuple(logvar.shape)}")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I))`` in closed form, summed over the latent dims.

    Per dimension, with ``s² = exp(logvar)``: ``KL = ½ (mu² + s² - 1 - log s²)``; it is 0
    exactly when mu = 0 and s = 1.

    Args:
        mu, logvar: N × latent_dim means and log-variances.

    Returns:
        The N divergences, in nats.

    Raises:
        ValueError: If the shapes differ or are not N × latent_dim.
    """
    _check_gaussian(mu, logvar)
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)


def gaussian_kl_monte_carlo(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """A Monte-Carlo estimate of :func:`gaussian_kl`: the mean of ``log q(z) - log p(z)``.

    ``KL(q || p) = E_{z~q}[log q(z) - log p(z)]``; drawing ``z = mu + s * eps`` with
    ``eps ~ N(0, I)``, ``log q(z) = -½ sum(eps² + logvar + log 2π)`` and
    ``log p(z) = -½ sum(z² + log 2π)``.

    Args:
        mu, logvar: N × latent_dim means and log-variances.
        n_samples: Samples of z per row.
        generator: Seeded CPU generator of the noise (``None``: torch's global one).

    Returns:
        The N estimates, in nats.

    Raises:
        ValueError: If the shapes differ or ``n_samples`` < 1.
    """
    _check_gaussian(mu, logvar)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    eps = torch.randn((n_samples, *mu.shape), generator=generator).to(mu.device, mu.dtype)
    z = mu + (0.5 * logvar).exp() * eps
    log_q = -0.5 * (eps.square() + logvar + _LOG_2PI).sum(-1)
    log_p = -0.5 * (z.square() + _LOG_2PI).sum(-1)
    return (log_q - log_p).mean(0)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``: a sample of q that autograd
    can differentiate with respect to mu and logvar (the randomness sits in eps alone).

    Args:
        mu, logvar: Means and log-variances (same shape).
        eps: The standard normal noise to use; drawn if ``None``.
        generator: Seeded CPU generator for drawing ``eps`` (``None``: torch's global RNG, on
            ``mu``'s device).

    Returns:
        z, of ``mu``'s shape.

    Raises:
        ValueError: If the shapes of ``mu``, ``logvar`` and ``eps`` differ.
    """
    if mu.shape != logvar.shape or (eps is not None and eps.shape != mu.shape):
        raise ValueError(f"expected mu, logvar (and eps) of one shape, got {tuple(mu.shape)}, "
                         f"{tuple(logvar.shape)}" + ("" if eps is None else f", {tuple(eps.shape)}"))
    if eps is None:
        eps = (torch.randn_like(mu) if generator is None
               else torch.randn(mu.shape, generator=generator).to(mu.device, mu.dtype))
    return mu + (0.5 * logvar).exp() * eps


def reparam_gradient(f: Callable[[torch.Tensor], torch.Tensor], mu: float, log_sigma: float,
                     n: int, generator: torch.Generator | None = None) -> tuple[float, float]:
    """The reparameterisation estimate of the gradient of ``E_{z~N(mu, sigma²)}[f(z)]``.

    Write ``z = mu + sigma * eps`` and differentiate through f:
    ``d/dmu ≈ mean f'(z)`` and ``d/dlog_sigma ≈ mean f'(z) * sigma * eps``. Unbiased, and
    usually of low variance, but it needs a differentiable f.

    Args:
        f: Maps a 1-D tensor of samples to the 1-D tensor of their values (e.g. ``z**2``).
        mu, log_sigma: The parameters of the Gaussian.
        n: Number of samples.
        generator: Seeded CPU generator (``None``: torch's global one).

    Returns:
        ``(d/dmu, d/dlog_sigma)`` estimates.
    """
    mu_t = torch.tensor(float(mu), dtype=torch.float64, requires_grad=True)
    log_sigma_t = torch.tensor(float(log_sigma), dtype=torch.float64, requires_grad=True)
    eps = torch.randn(n, generator=generator, dtype=torch.float64)
    z = mu_t + log_sigma_t.exp() * eps
    f(z).mean().backward()
    return mu_t.grad.item(), log_sigma_t.grad.item()


def score_function_gradient(f: Callable[[torch.Tensor], torch.Tensor], mu: float,
                            log_sigma: float, n: int,
                            generator: torch.Generator | None = None) -> tuple[float, float]:
    """The score-function (REINFORCE) estimate of the gradient of ``E_{z~N(mu, sigma²)}[f(z)]``.

    ``∇ E[f(z)] = E[f(z) ∇ log q(z)]``, with, for ``z = mu + sigma * eps``,
    ``d log q / d mu = eps / sigma`` and ``d log q / d log_sigma = eps² - 1``. Unbiased and
    needs f's values only (f may be a black box), but its variance is usually much larger
    than :func:`reparam_gradient`'s. No baseline is subtracted.

    Args:
        f: Maps a 1-D tensor of samples to the 1-D tensor of their values.
        mu, log_sigma: The parameters of the Gaussian.
        n: Number of samples.
        generator: Seeded CPU generator (``None``: torch's global one).

    Returns:
        ``(d/dmu, d/dlog_sigma)`` estimates.
    """
    sigma = math.exp(log_sigma)
    eps = torch.randn(n, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        fz = f(mu + sigma * eps)
    return (fz * eps / sigma).mean().item(), (fz * (eps.square() - 1)).mean().item()


class ConvVAE(nn.Module):
    """A small convolutional VAE for 1×28×28 images. Chapter 11.

    The encoder (:func:`~dlkit.generative.autoencoder.conv_encoder`) outputs ``mu`` and
    ``logvar``; the decoder (:func:`~dlkit.generative.autoencoder.conv_decoder`) outputs the
    logits of 784 Bernoulli pixels. With the defaults it has 93,825 parameters.

    Args:
        latent_dim: Length of z.
        width: Channels of the first convolution (the second has twice as many).
    """

    def __init__(self, latent_dim: int = 16, width: int = 16) -> None:
        super().__init__()
        if latent_dim < 1 or width < 1:
            raise ValueError(f"latent_dim and width must be >= 1, got {latent_dim}, {width}")
        self.latent_dim = latent_dim
        self.encoder = conv_encoder(2 * latent_dim, width)
        self.decoder = conv_decoder(latent_dim, width)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each N × latent_dim, of images x (N×1×28×28)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(x.shape)}")
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (N×1×28×28) of the pixels given z (N × latent_dim)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits, mu, logvar)``: the decoding of one sample ``z ~ q(z|x)`` per image.

        z is sampled in eval mode too: the ELBO is an expectation over q.
        """
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n new images: ``z ~ N(0, I)`` decoded to the Bernoulli means ``sigmoid(logits)``.

        Args:
            n: Number of images.
            generator: Seeded CPU generator of z (``None``: torch's global one).

        Returns:
            n × 1 × 28 × 28 images in [0, 1], on the model's device.
        """
        z = torch.randn(n, self.latent_dim, generator=generator).to(model_device(self))
        with eval_mode(self):
            return torch.sigmoid(self.decode(z))


def negative_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor,
                  logvar: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """The VAE's loss: ``recon + beta * kl``, in nats per image, averaged over the batch.

    ``recon = -log p(x|z)`` is the Bernoulli negative log-likelihood of the *binarised* image
    ``(x > 0.5)``, summed over its 784 pixels. The ELBO bounds ``log p(x)`` only when
    ``p(x|z)`` is a proper likelihood of the data: a Bernoulli is one for pixels in {0, 1},
    not for grey values in [0, 1] (their "cross-entropy" is not a log-probability of anything,
    and its minimum is not 0). Binarised pixels with a Bernoulli decoder are the standard
    choice; here the threshold is fixed, so the numbers are not comparable with published
    results on stochastically binarised MNIST either. With ``beta = 1``, ``loss`` is the
    negative ELBO, an upper bound on ``-log p(x)``; other values give the beta-VAE objective
    (Higgins et al. 2017), which is no longer a bound.

    Args:
        logits: N×1×28×28 decoder logits.
        x: N×1×28×28 images in [0, 1].
        mu, logvar: N × latent_dim parameters of q(z|x).
        beta: Weight of the KL term (>= 0).

    Returns:
        ``{"loss": mean(recon + beta * kl), "recon": mean recon, "kl": mean kl}``.

    Raises:
        ValueError: If ``logits`` and ``x`` differ in shape, or ``beta`` < 0.
    """
    if logits.shape != x.shape:
        raise ValueError(f"expected logits of the images' shape {tuple(x.shape)}, "
                         f"got {tuple(logits.shape)}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    target = (x > 0.5).float()
    recon = F.binary_cross_entropy_with_logits(logits.float(), target,
                                               reduction="none").flatten(1).sum(1)
    kl = gaussian_kl(mu.float(), logvar.float())
    return {"loss": (recon + beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean()}


def bits_per_dim(nats_per_image: float | torch.Tensor, dims: int = 784) -> float | torch.Tensor:
    """Nats per image as bits per pixel: ``nats / (dims * ln 2)``. Chapter 11."""
    return nats_per_image / (dims * math.log(2))


class VAEStep(TrainStep):
    """The training step of a VAE: one optimizer step on :func:`negative_elbo`. Chapter 11.

    Batches are images ``X`` (a label ``y``, if any, is ignored). Records ``train/recon`` and
    ``train/kl`` besides the loss.

    Args:
        beta: Weight of the KL term (1: the ELBO).
    """

    def __init__(self, beta: float = 1.0) -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def __call__(self, loop: Any, X: torch.Tensor, y: Any) -> StepOutput:
        with loop.autocast():
            logits, mu, logvar = loop.forward(X)
            terms = negative_elbo(logits, X, mu, logvar, beta=self.beta)
        loop.zero_grad()
        loop.backward(terms["loss"])
        loop.optimizer_step()
        return StepOutput(terms, None)


def vae_validate(model: nn.Module, loader: Any, device: torch.device | str) -> dict[str, float]:
    """The mean negative ELBO (beta = 1) of ``model`` over ``loader``, in nats per image.

    The ``validate`` of :func:`dlkit.train.fit` for a VAE; runs in eval mode without gradients
    (one sample of z per image, so it varies a little from run to run). Chapter 11.

    Returns:
        ``{"loss": negative ELBO, "recon": ..., "kl": ...}``, each a mean per image.

    Raises:
        ValueError: If the loader yields no examples.
    """
    sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    n = 0
    with eval_mode(model), torch.no_grad():
        for batch in loader:
            X, _ = split_batch(batch)
            X = X.to(device)
            logits, mu, logvar = model(X)
            terms = negative_elbo(logits, X, mu, logvar)
            for name in sums:
                sums[name] += terms[name].item() * len(X)
            n += len(X)
    if n == 0:
        raise ValueError("the loader yielded no examples")
    return {name: total / n for name, total in sums.items()}
