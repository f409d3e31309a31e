"""Per-channel statistics of ``uint8`` images, for normalisation constants.

* :func:`channel_stats` (chapter 02): mean and std of a tensor in memory, in one pass;
* :class:`RunningChannelStats` (chapter 02): the same, updated batch by batch over a stream.
"""

from __future__ import annotations

import numpy as np
import torch

from dlkit.data._checks import _check_count
from dlkit.data.imageset import ImageSet

__all__ = ["channel_stats", "RunningChannelStats"]


def channel_stats(
    images: torch.Tensor | ImageSet, batch_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of ``uint8`` images, in [0, 1] units.

    One streaming pass over chunks of ``batch_size`` images with float64
    accumulators, so memory stays bounded and the result is exact to float64
    precision. The std is the population std (divides by the pixel count).
    Used in chapter 02 (data) to compute normalisation constants.

    Args:
        images: ``uint8`` tensor ``N x C x H x W`` or an :class:`ImageSet`.
        batch_size: Images per chunk.

    Returns:
        ``(mean, std)``, two float32 tensors of length ``C``.

    Raises:
        ValueError: If the images are not 4-D ``uint8`` or empty, or
            ``batch_size`` < 1.
    """
    x = images.images if isinstance(images, ImageSet) else images
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"images must be a uint8 tensor N x C x H x W, got {got}")
    if x.shape[0] == 0 or x[0].numel() == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(x.shape)}")
    batch_size = _check_count(batch_size, "batch_size", 1, 2**62)
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size].to(torch.float64)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square_().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    # Sums of integers are exact in float64, so E[x^2] - E[x]^2 loses nothing here.
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    return (mean / 255.0).float(), (var.sqrt() / 255.0).float()


class RunningChannelStats:
    """Per-channel mean and std of ``uint8`` images, updated batch by batch.

    Keeps three integer counters per channel (count, sum, sum of squares) in
    ``int64``: exact for up to ~10^14 pixels, and the memory used does not
    depend on the data size. ``std`` is the population std over all pixels,
    the convention of published normalisation constants. Used in chapter 02
    (data collection) on a stream of shards.

    Example::

        stats = RunningChannelStats()
        for images, _ in shard_batches:
            stats.update(images)
        mean, std = stats.mean, stats.std
    """

    def __init__(self) -> None:
        self.count = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None

    def update(self, images: torch.Tensor | np.ndarray) -> RunningChannelStats:
        """Add a batch of ``uint8`` images ``N x C x H x W``; returns ``self``.

        Raises:
            ValueError: If the batch is not 4-D ``uint8`` or its channel count changes.
        """
        x = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {x.dtype} {x.shape}")
        if self._sum is not None and x.shape[1] != self._sum.shape[0]:
            raise ValueError(f"expected {self._sum.shape[0]} channels as before, got {x.shape[1]}")
        v = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1).astype(np.int64)
        s, sq = v.sum(axis=1), np.einsum("ij,ij->i", v, v)
        if self._sum is None:
            self._sum, self._sumsq = s, sq
        else:
            self._sum += s
            self._sumsq += sq
        self.count += v.shape[1]
        return self

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sum is None or self._sumsq is None or self.count == 0:
            raise ValueError("no images seen yet: call update() first")
        return self._sum, self._sumsq

    @property
    def mean(self) -> torch.Tensor:
        """Per-channel mean in [0, 1] units (float64)."""
        s, _ = self._check()
        return torch.from_numpy(s / self.count / 255.0)

    @property
    def std(self) -> torch.Tensor:
        """Per-channel population std in [0, 1] units (float64)."""
        s, sq = self._check()
        # n * sumsq - sum^2 is an exact integer (Python ints do not overflow).
        var = np.array([(self.count * int(b) - int(a) ** 2) for a, b in zip(s, sq)], dtype=np.float64)
        return torch.from_numpy(np.sqrt(var) / self.count / 255.0)
