"""A small U-Net that predicts the noise of a diffusion model, conditioned on the step and a class.

Used in chapter 11 (generative models). The shape follows Ho et al. (2020) at a size that
trains on a laptop CPU: residual blocks with group normalisation at two resolutions, a
sinusoidal embedding of the timestep and a learned embedding of the class (plus one "null"
class for classifier-free guidance), both added to every block's features, and skip
connections from the encoder to the decoder at each resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["timestep_embedding", "TinyUNet"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of integer timesteps (the Transformer's position encoding).

    Args:
        t: Timesteps, shape ``(N,)``.
        dim: Number of features (even).

    Returns:
        ``(N, dim)``: ``[cos(t ω_k), sin(t ω_k)]`` for frequencies ``ω_k`` from 1 down to
        ``1 / max_period``.
    """
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class _Block(nn.Module):
    """GroupNorm → SiLU → conv, twice, with the embedding added in between and a shortcut."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int = 8) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class TinyUNet(nn.Module):
    """ε-prediction network for 1×28×28 (or any size divisible by 4) images.

    Args:
        channels: Image channels.
        width: Channels at full resolution; ``2 * width`` at half and quarter resolution.
        num_classes: Real classes for a conditional model (embedding ``num_classes + 1``
            entries, the last one the null class), or ``None``.
        emb_dim: Size of the timestep and class embeddings.
    """

    def __init__(self, channels: int = 1, width: int = 32, num_classes: int | None = 10,
                 emb_dim: int = 128) -> None:
        super().__init__()
        w1, w2 = width, 2 * width
        self.emb_dim, self.num_classes = emb_dim, num_classes
        self.time = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(),
                                  nn.Linear(emb_dim, emb_dim))
        self.label = nn.Embedding(num_classes + 1, emb_dim) if num_classes is not None else None
        self.inp = nn.Conv2d(channels, w1, 3, padding=1)
        self.down1 = _Block(w1, w1, emb_dim)                     # H
        self.pool1 = nn.Conv2d(w1, w1, 3, stride=2, padding=1)   # H/2
        self.down2 = _Block(w1, w2, emb_dim)
        self.pool2 = nn.Conv2d(w2, w2, 3, stride=2, padding=1)   # H/4
        self.mid = _Block(w2, w2, emb_dim)
        self.up2 = _Block(w2 + w2, w2, emb_dim)                  # H/2
        self.up1 = _Block(w2 + w1, w1, emb_dim)                  # H
        self.out = nn.Sequential(nn.GroupNorm(8, w1), nn.SiLU(), nn.Conv2d(w1, channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # start by predicting ε = 0 (a calm first loss)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise in ``x`` (N×C×H×W) at steps ``t`` (N) for classes ``y`` (N)."""
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"image height and width must be divisible by 4, got {tuple(x.shape)}")
        emb = self.time(timestep_embedding(t, self.emb_dim))
        if self.label is not None:
            if y is None:  # no label given: the null class, i.e. the unconditional model
                y = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long)
            emb = emb + self.label(y)
        h1 = self.down1(self.inp(x), emb)
        h2 = self.down2(self.pool1(h1), emb)
        h = self.mid(self.pool2(h2), emb)
        h = F.interpolate(h, size=h2.shape[-2:], mode="nearest")
        h = self.up2(torch.cat([h, h2], 1), emb)
        h = F.interpolate(h, size=h1.shape[-2:], mode="nearest")
        h = self.up1(torch.cat([h, h1], 1), emb)
        return self.out(h)
