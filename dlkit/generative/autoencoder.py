"""Autoencoders: a convolutional autoencoder, its denoising variant, and codes for linear probes.

Used in chapter 11 (generative models), on Fashion-MNIST images of 1×28×28 with pixels in
[0, 1]. An autoencoder is not a generative model by itself (nothing says which codes are
likely), but it is the encoder and decoder that the VAE of :mod:`dlkit.generative.vae` turns
into one; the two share :func:`conv_encoder` and :func:`conv_decoder`.

* :class:`ConvAutoencoder` maps an image to a code of ``code_dim`` numbers and back;
* :func:`reconstruction_step` and :func:`reconstruction_validate` train and validate it through
  :func:`dlkit.train.fit` on batches ``(x, target)``, with ``loss_fn=nn.MSELoss()``;
* :func:`add_noise` is the ``train_transform`` of a denoising autoencoder (Vincent et al. 2008):
  the input is noised, the target stays clean;
* :func:`encode_all` encodes a whole tensor of images, e.g. for a linear probe on the codes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dlkit._util import eval_mode
from dlkit.generative.evaluation import model_device
from dlkit.train.inference import split_batch
from dlkit.train.loop import StepOutput

__all__ = ["conv_encoder", "conv_decoder", "ConvAutoencoder", "reconstruction_step",
           "reconstruction_validate", "add_noise", "encode_all"]


def conv_encoder(out_features: int, width: int = 16) -> nn.Sequential:
    """Two stride-2 convolutions and a linear layer: 1×28×28 → ``out_features`` numbers.

    28×28 → 14×14 (``width`` channels) → 7×7 (``2*width`` channels) → a linear layer.
    """
    return nn.Sequential(
        nn.Conv2d(1, width, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * width * 7 * 7, out_features),
    )


def conv_decoder(in_features: int, width: int = 16) -> nn.Sequential:
    """The mirror of :func:`conv_encoder`: ``in_features`` numbers → 1×28×28 *logits*.

    A linear layer to 7×7 (``2*width`` channels), then two stride-2 transposed convolutions
    (7×7 → 14×14 → 28×28). The output is left unbounded; the caller applies a sigmoid.
    """
    return nn.Sequential(
        nn.Linear(in_features, 2 * width * 7 * 7), nn.ReLU(),
        nn.Unflatten(1, (2 * width, 7, 7)),
        nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
    )


class ConvAutoencoder(nn.Module):
    """A convolutional autoencoder: image → code → reconstruction in [0, 1]. Chapter 11.

    With the defaults it has 68,721 parameters.

    Args:
        code_dim: Length of the code (the bottleneck).
        width: Channels of the first convolution (the second has twice as many).
    """

    def __init__(self, code_dim: int = 16, width: int = 16) -> None:
        super().__init__()
        if code_dim < 1 or width < 1:
            raise ValueError(f"code_dim and width must be >= 1, got {code_dim}, {width}")
        self.code_dim = code_dim
        self.encoder = conv_encoder(code_dim, width)
        self.decoder = conv_decoder(code_dim, width)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (N × code_dim) of images (N×1×28×28)."""
        _check_images(x)
        return self.encoder(x)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Images (N×1×28×28, in [0, 1]) of codes (N × code_dim)."""
        return torch.sigmoid(self.decoder(code))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x`` (N×1×28×28, in [0, 1])."""
        return self.decode(self.encode(x))


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(x.shape)}")


def reconstruction_step(loop: Any, X: torch.Tensor, y: torch.Tensor | None) -> StepOutput:
    """A training step for models whose output is an image: ``loss_fn(model(X), target)``.

    The target is ``y``, or ``X`` itself for batches of images alone. Pass it as
    ``fit(model, loader, step=reconstruction_step, loss_fn=nn.MSELoss())``: the default step
    expects class scores or one number per example, not an image. Chapter 11.
    """
    target = X if y is None else y
    with loop.autocast():
        out = loop.forward(X)
        loss = loop.loss_fn(out, target)
    loop.zero_grad()
    loop.backward(loss)
    loop.optimizer_step()
    return StepOutput(loss, None)


def reconstruction_validate(model: nn.Module, loader: Any,
                            device: torch.device | str) -> dict[str, float]:
    """Mean squared error per pixel of ``model``'s reconstructions over ``loader``.

    The ``validate`` of :func:`dlkit.train.fit` for an autoencoder (the loss of
    ``nn.MSELoss()``, averaged over examples). The target is ``y``, or ``X`` for batches of
    images alone. Chapter 11.

    Returns:
        ``{"loss": mean squared error}``.

    Raises:
        ValueError: If the loader yields no examples.
    """
    total = torch.zeros((), dtype=torch.float64)
    n = 0
    with eval_mode(model), torch.no_grad():
        for batch in loader:
            X, y = split_batch(batch)
            X = X.to(device)
            target = X if y is None else y.to(device)
            err = (model(X).float() - target.float()) ** 2
            total += err.flatten(1).mean(1).sum().double().cpu()
            n += X.shape[0]
    if n == 0:
        raise ValueError("the loader yielded no examples")
    return {"loss": total.item() / n}


def add_noise(std: float, seed: int = 0) -> Callable[[torch.Tensor, torch.Tensor | None],
                                                     tuple[torch.Tensor, torch.Tensor]]:
    """A ``train_transform`` for a denoising autoencoder: Gaussian noise on the inputs only.

    The returned ``fn(X, y)`` gives ``(clamp(X + std * noise, 0, 1), y)``: the network sees the
    noisy image and is scored against the clean target ``y``. Train on batches ``(x, x)``; for
    batches of images alone (``y`` is ``None``) the clean ``X`` becomes the target. Pass it as
    ``fit(..., train_transform=add_noise(0.3))``. Chapter 11.

    Args:
        std: Standard deviation of the noise, in pixel units (>= 0).
        seed: Seed of the noise (drawn on the CPU, so runs repeat on any device).

    Returns:
        The transform ``fn(X, y) -> (X_noisy, y)``.

    Raises:
        ValueError: If ``std`` is negative.
    """
    if not std >= 0:
        raise ValueError(f"std must be >= 0, got {std!r}")
    generator = torch.Generator().manual_seed(seed)

    def noisy(X: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(X.shape, generator=generator).to(X.device, X.dtype)
        return (X + std * noise).clamp(0, 1), X if y is None else y

    return noisy


@torch.no_grad()
def encode_all(model: nn.Module, images: torch.Tensor, batch_size: int = 512,
               device: torch.device | str | None = None) -> torch.Tensor:
    """The codes ``model.encode(x)`` of every image, in eval mode, without gradients.

    For a VAE, whose ``encode`` returns ``(mu, logvar)``, the code is the mean ``mu``. Used in
    chapter 11 for the linear probes on the codes.

    Args:
        model: Anything with an ``encode`` method (:class:`ConvAutoencoder`,
            :class:`~dlkit.generative.vae.ConvVAE`); its previous mode is restored.
        images: N×1×28×28 images.
        batch_size: Images encoded at once.
        device: Where to compute (the model is moved there); default: where the model is.

    Returns:
        N × code_dim codes, float32 on the CPU.

    Raises:
        ValueError: If ``batch_size`` < 1 or there are no images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(images) == 0:
        raise ValueError("no images to encode")
    device = model_device(model) if device is None else torch.device(device)
    model.to(device)
    codes = []
    with eval_mode(model):
        for batch in images.split(batch_size):
            code = model.encode(batch.to(device))
            if isinstance(code, (tuple, list)):
                code = code[0]  # a VAE's (mu, logvar): its mean is the code
            codes.append(code.float().cpu())
    return torch.cat(codes)
