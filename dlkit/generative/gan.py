"""A generative adversarial network (Goodfellow et al. 2014) in the DCGAN style, and its step.

Used in chapter 11 (generative models), on Fashion-MNIST images of 1×28×28 with pixels in
[0, 1]. The discriminator D outputs a logit ``l`` with ``D(x) = sigmoid(l)``, the probability
that x is real; the generator G maps noise z to images and tries to make D accept them.

* :class:`Generator` and :class:`Discriminator` follow DCGAN (Radford et al. 2016): transposed
  convolutions with batch norm in G, strided convolutions with leaky ReLUs in D; :class:`GAN`
  holds both, so :func:`dlkit.train.fit` moves them together;
* :func:`discriminator_loss` and :func:`generator_loss` are the two players' objectives, in the
  original "minimax" form and the "non-saturating" one the paper recommends in practice;
  :func:`generator_loss_gradient` shows why, in one line each;
* :class:`GANStep` alternates the two updates inside :func:`dlkit.train.fit`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit._util import check_choice, eval_mode
from dlkit.generative.evaluation import model_device
from dlkit.train.loop import StepOutput, TrainStep

__all__ = ["Generator", "Discriminator", "GAN", "discriminator_loss", "generator_loss",
           "generator_loss_gradient", "GANStep", "GENERATOR_LOSSES"]

#: The two generator objectives of :func:`generator_loss`.
GENERATOR_LOSSES = ("non_saturating", "minimax")


class Generator(nn.Module):
    """z (N × latent_dim) → images (N×1×28×28) in [0, 1]. Chapter 11.

    A linear layer to 7×7 (``2*width`` channels), then two stride-2 transposed convolutions
    (7×7 → 14×14 → 28×28), batch norm and ReLU in between. The last layer's output goes
    through a **sigmoid**, so pixels lie in [0, 1] like the data (DCGAN's tanh on [-1, 1] is
    the same function rescaled: ``sigmoid(a) = (tanh(a/2) + 1) / 2``).

    Args:
        latent_dim: Length of z.
        width: Channels at 14×14 (twice as many at 7×7). With the defaults it has 111,969
            parameters.
    """

    def __init__(self, latent_dim: int = 64, width: int = 16) -> None:
        super().__init__()
        if latent_dim < 1 or width < 1:
            raise ValueError(f"latent_dim and width must be >= 1, got {latent_dim}, {width}")
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * 7 * 7, bias=False),
            nn.BatchNorm1d(2 * width * 7 * 7), nn.ReLU(),
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    """Images (N×1×28×28) → one logit per image (N), positive for "real". Chapter 11.

    Two stride-2 convolutions (28×28 → 14×14 → 7×7, ``width`` then ``2*width`` channels) with
    leaky ReLUs (slope 0.2), then a linear layer. No batch norm: D sees real and fake
    batches separately, and batch statistics would let it tell them apart by the batch.

    Args:
        width: Channels of the first convolution. With the default it has 10,065 parameters.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(x.shape)}")
        return self.net(x).squeeze(1)


class GAN(nn.Module):
    """A :class:`Generator` and a :class:`Discriminator` in one module. Chapter 11.

    Train it with ``fit(gan, loader, optimizer=<over gan.generator.parameters()>,
    step=GANStep(d_optimizer=<over gan.discriminator.parameters()>, latent_dim=...))``.

    Args:
        latent_dim: Length of z.
        g_width, d_width: Widths of the generator and the discriminator.
    """

    def __init__(self, latent_dim: int = 64, g_width: int = 16, d_width: int = 16) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.generator = Generator(latent_dim, g_width)
        self.discriminator = Discriminator(d_width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images generated from z."""
        return self.generator(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from ``z ~ N(0, I)``, with the generator in eval mode (batch norm uses its
        running statistics, so an image does not depend on the others in the batch).

        Args:
            n: Number of images.
            generator: Seeded CPU ``torch.Generator`` of z (``None``: torch's global one).

        Returns:
            n × 1 × 28 × 28 images in [0, 1], on the model's device.
        """
        z = torch.randn(n, self.latent_dim, generator=generator).to(model_device(self))
        with eval_mode(self.generator):
            return self.generator(z)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss: binary cross-entropy with real images labelled 1 and fakes labelled 0.

    ``-mean log D(x) - mean log(1 - D(G(z)))``, i.e. ``mean softplus(-l_real) +
    mean softplus(l_fake)``: the negative of the value D maximises in the minimax game.

    Args:
        real_logits: D's logits on real images.
        fake_logits: D's logits on generated images.

    Returns:
        The scalar loss (its minimum is 0; ``2 ln 2`` when D outputs 1/2 everywhere).
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """G's loss on D's logits ``l`` for generated images.

    * ``"minimax"``: G minimises ``mean log(1 - D(G(z))) = -mean softplus(l)``, the value of
      the original game;
    * ``"non_saturating"``: G minimises ``-mean log D(G(z)) = mean softplus(-l)``, which has the
      same fixed point but strong gradients where D rejects the fakes
      (see :func:`generator_loss_gradient`).

    Raises:
        ValueError: If ``kind`` is not one of :data:`GENERATOR_LOSSES`.
    """
    check_choice(kind, "kind", GENERATOR_LOSSES)
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()


def generator_loss_gradient(logit: float | torch.Tensor,
                            kind: str = "non_saturating") -> float | torch.Tensor:
    """``d loss / d l`` of :func:`generator_loss` for one fake's logit l, written out.

    * minimax: ``d/dl [-softplus(l)] = -sigmoid(l)``;
    * non-saturating: ``d/dl softplus(-l) = -sigmoid(-l) = -(1 - sigmoid(l))``.

    Early in training D rejects the fakes confidently (l very negative): the minimax gradient
    ``-sigmoid(l)`` is then close to 0 (G "saturates" and learns nothing), while the
    non-saturating one is close to -1.

    Args:
        logit: A logit, or a tensor of logits (elementwise).
        kind: One of :data:`GENERATOR_LOSSES`.

    Returns:
        The derivative, a float for a float ``logit``.
    """
    check_choice(kind, "kind", GENERATOR_LOSSES)
    value = torch.as_tensor(logit, dtype=torch.float64)
    grad = -torch.sigmoid(value) if kind == "minimax" else -torch.sigmoid(-value)
    return grad if isinstance(logit, torch.Tensor) else grad.item()


class GANStep(TrainStep):
    """One round of the game per batch: ``d_steps`` updates of D, then one of G. Chapter 11.

    1. D: fakes ``G(z)`` made without gradients; D's loss on the real batch and the fakes;
       ``d_optimizer`` steps.
    2. G: fresh fakes, scored by D; G's loss (:func:`generator_loss` of ``kind``); the main
       optimizer (the one given to :func:`~dlkit.train.fit`) steps.

    The G update backpropagates through D, so it leaves gradients on D's parameters too; they
    never reach D's weights, because D's gradients are cleared (set to None) before each D
    update and the main optimizer holds G's parameters alone: :meth:`before_fit` checks both.
    Records ``train/g_loss`` (also the ``loss``), ``train/d_loss``, and ``train/d_real`` and
    ``train/d_fake``, the mean ``D(x)`` on real images and on fakes in the last D update
    (both tend to 1/2 when neither player is ahead). Gradient accumulation is not supported.

    Args:
        d_optimizer: The optimizer of ``model.discriminator.parameters()``.
        latent_dim: Length of z (the model's ``latent_dim``).
        kind: G's loss, one of :data:`GENERATOR_LOSSES`.
        d_steps: D updates per G update.
        seed: Seed of the noise (drawn on the CPU, so runs repeat on any device).
    """

    def __init__(self, d_optimizer: torch.optim.Optimizer, latent_dim: int,
                 kind: str = "non_saturating", d_steps: int = 1, seed: int = 0) -> None:
        check_choice(kind, "kind", GENERATOR_LOSSES)
        if d_steps < 1 or latent_dim < 1:
            raise ValueError(f"d_steps and latent_dim must be >= 1, got {d_steps}, {latent_dim}")
        self.d_optimizer, self.latent_dim = d_optimizer, latent_dim
        self.kind, self.d_steps = kind, d_steps
        self.generator = torch.Generator().manual_seed(seed)

    def before_fit(self, loop: Any) -> None:
        model = loop.model
        if not (hasattr(model, "generator") and hasattr(model, "discriminator")):
            raise ValueError("GANStep trains a model with .generator and .discriminator (a GAN), "
                             f"got {type(model).__name__}")
        d_params = {id(p) for p in model.discriminator.parameters()}
        g_params = {id(p) for p in model.generator.parameters()}
        if _params(loop.optimizer) & d_params:
            raise ValueError("the optimizer given to fit must hold model.generator.parameters() "
                             "only: it would also update the discriminator in the G step")
        if _params(self.d_optimizer) & g_params:
            raise ValueError("d_optimizer must hold model.discriminator.parameters() only")
        if loop.accumulation_steps != 1:
            raise ValueError("GANStep does not support gradient accumulation")

    def _noise(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=self.generator).to(device)

    def __call__(self, loop: Any, X: torch.Tensor, y: Any) -> StepOutput:
        G, D = loop.model.generator, loop.model.discriminator
        n = X.shape[0]
        # 1. The discriminator: real images should score 1, fakes 0.
        for _ in range(self.d_steps):
            with torch.no_grad():
                fake = G(self._noise(n, X.device))
            with loop.autocast():
                real_logits, fake_logits = D(X), D(fake)
                d_loss = discriminator_loss(real_logits.float(), fake_logits.float())
            loop.zero_grad(self.d_optimizer)  # also drops what the last G step left on D
            loop.backward(d_loss)
            loop.optimizer_step(self.d_optimizer)
        # 2. The generator: its fakes should score 1; only G's weights are stepped.
        with loop.autocast():
            g_loss = generator_loss(D(G(self._noise(n, X.device))).float(), self.kind)
        loop.zero_grad()
        loop.backward(g_loss)
        loop.optimizer_step()
        with torch.no_grad():
            d_real = torch.sigmoid(real_logits.float()).mean()
            d_fake = torch.sigmoid(fake_logits.float()).mean()
        return StepOutput({"loss": g_loss, "g_loss": g_loss, "d_loss": d_loss,
                           "d_real": d_real, "d_fake": d_fake}, None)


def _params(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}
