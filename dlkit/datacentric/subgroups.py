"""Who the model fails: subgroups defined by measurable image properties, and accuracy with intervals (chapter 15).

CIFAR-10 has no demographic labels, so the chapter's subgroups are properties every image has:
:func:`brightness` (mean luma) and :func:`colourfulness` (Hasler and Süsstrunk, 2003).
:func:`wilson_interval` and :func:`difference_interval` (Newcombe, 1998) put a 95% interval
on a subgroup's accuracy and on the gap between two subgroups; :func:`group_table` builds the
table, and :func:`bootstrap_interval` gives paired intervals for two models on the same images. :func:`grayscale` and :func:`scale_brightness` are targeted augmentations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch


def _raw(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected N x 3 x H x W RGB images in 0..255, got shape {tuple(images.shape)}")
    return images.float()


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean luma ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601) of each ``uint8``-range image, 0..255."""
    x = _raw(images)
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2))


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Hasler and Süsstrunk's (2003) colourfulness of each image (0 for a grey image).

    With ``rg = R - G`` and ``yb = (R + G) / 2 - B`` over the pixels:
    ``sqrt(std(rg)² + std(yb)²) + 0.3 sqrt(mean(rg)² + mean(yb)²)`` (population statistics).
    """
    x = _raw(images)
    rg = x[:, 0] - x[:, 1]
    yb = 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
    std = (rg.var(dim=(1, 2), unbiased=False) + yb.var(dim=(1, 2), unbiased=False)).sqrt()
    mean = (rg.mean(dim=(1, 2)) ** 2 + yb.mean(dim=(1, 2)) ** 2).sqrt()
    return std + 0.3 * mean


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's score interval for a proportion ``successes / n`` (95% by default).

    Unlike the ``p ± z·sqrt(p(1-p)/n)`` interval it stays inside ``[0, 1]`` and keeps its
    coverage for small ``n`` and for proportions near 0 or 1.
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(k1: int, n1: int, k2: int, n2: int, z: float = 1.959964) -> tuple[float, float, float]:
    """``p1 - p2`` and Newcombe's (1998) hybrid score interval for it (his method 10).

    Combines the two Wilson intervals:
    ``lower = d - sqrt((p1 - l1)² + (u2 - p2)²)``, ``upper = d + sqrt((u1 - p1)² + (p2 - l2)²)``.
    For independent samples (two disjoint subgroups).

    Returns:
        ``(difference, lower, upper)``.
    """
    p1, p2 = k1 / n1 if n1 else float("nan"), k2 / n2 if n2 else float("nan")
    l1, u1 = wilson_interval(k1, n1, z)
    l2, u2 = wilson_interval(k2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


class GroupRow(NamedTuple):
    """Accuracy of one subgroup with its 95% Wilson interval."""

    group: str
    n: int
    accuracy: float
    low: float
    high: float


def group_table(correct: torch.Tensor, groups: dict[str, torch.Tensor]) -> list[GroupRow]:
    """One :class:`GroupRow` per named boolean mask over ``correct`` (a bool vector per example)."""
    correct = torch.as_tensor(correct).bool()
    rows = []
    for name, mask in groups.items():
        mask = torch.as_tensor(mask).bool()
        if mask.shape != correct.shape:
            raise ValueError(f"group {name!r} has {mask.numel()} entries, expected {correct.numel()}")
        n, k = int(mask.sum()), int((correct & mask).sum())
        if n == 0:
            raise ValueError(f"group {name!r} is empty")
        rows.append(GroupRow(name, n, k / n, *wilson_interval(k, n)))
    return rows


def scale_brightness(images: torch.Tensor, factor: torch.Tensor | float, mean: torch.Tensor,
                     std: torch.Tensor) -> torch.Tensor:
    """Multiply the raw pixel values of normalised ``images`` by ``factor`` (< 1 darkens).

    ``images`` are ``(raw - mean) / std``; the result is ``(raw * factor - mean) / std``, so a
    darkened image is what the camera would have given in dimmer light, normalised as before.

    Args:
        images: ``N x C x H x W`` normalised images.
        factor: A number or one factor per image (``N``).
        mean: Per-channel mean used for normalising (``C`` values).
        std: Per-channel standard deviation (``C`` values).
    """
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    f = torch.as_tensor(factor, dtype=images.dtype, device=images.device)
    if f.ndim == 1:
        f = f.view(-1, 1, 1, 1)
    return ((images * std + mean) * f - mean) / std


def grayscale(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              which: torch.Tensor | None = None) -> torch.Tensor:
    """Replace normalised colour images by their luma (ITU-R BT.601) in all three channels.

    The targeted augmentation of chapter 15 for a subgroup of nearly grey images: it makes grey
    versions of the colour images a model has plenty of.

    Args:
        images: ``N x 3 x H x W`` images normalised as ``(raw - mean) / std``.
        mean: Per-channel mean used for normalising.
        std: Per-channel standard deviation.
        which: ``N`` booleans, the images to convert (all when ``None``).

    Returns:
        The converted images, normalised as before.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected N x 3 x H x W images, got shape {tuple(images.shape)}")
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    raw = images * std + mean
    luma = (0.299 * raw[:, 0:1] + 0.587 * raw[:, 1:2] + 0.114 * raw[:, 2:3]).expand_as(raw)
    grey = (luma - mean) / std
    if which is None:
        return grey
    return torch.where(torch.as_tensor(which, device=images.device).view(-1, 1, 1, 1), grey, images)

def bootstrap_interval(statistic: Callable[..., float], *columns: torch.Tensor, n_boot: int = 2000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``statistic(*columns)`` and a percentile bootstrap interval, resampling rows jointly.

    Resampling the same rows of every column keeps pairs together: two models scored on the same
    test images give a *paired* interval for a difference between them (how much a gap changed
    from one model to the other), much narrower than two separate intervals would suggest.

    Args:
        statistic: Function of the columns returning a number.
        *columns: Tensors with one row per item (the same length).
        n_boot: Bootstrap resamples.
        level: Coverage of the interval.
        seed: Seed of the resampling.

    Returns:
        ``(estimate, lower, upper)``.
    """
    if not columns or any(len(c) != len(columns[0]) for c in columns):
        raise ValueError("bootstrap_interval needs columns of one length")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got {level} and {n_boot}")
    n = len(columns[0])
    gen = torch.Generator().manual_seed(seed)
    values = torch.tensor([float(statistic(*(c[idx] for c in columns)))
                           for idx in (torch.randint(n, (n,), generator=gen) for _ in range(n_boot))])
    low, high = torch.quantile(values.double(), torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    return float(statistic(*columns)), float(low), float(high)
