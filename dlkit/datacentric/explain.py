"""What the model looks at: checks on attribution methods (chapter 15).

The attributions themselves come from Captum (saliency, Integrated Gradients, Grad-CAM). This
module holds what the chapter checks them with: the completeness of Integrated Gradients
(:func:`completeness_gap`), the model-randomisation sanity check of Adebayo et al. (2018)
(:func:`randomized_copy`, :func:`rank_correlation`), and the share of attribution that falls on
a region (:func:`region_share`), which finds a planted spurious cue (:func:`plant_mark`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


@torch.no_grad()
def completeness_gap(model: nn.Module, inputs: torch.Tensor, baselines: torch.Tensor,
                     attributions: torch.Tensor, target: torch.Tensor | int) -> torch.Tensor:
    """Per image: ``sum(attributions) - (f(x) - f(baseline))`` for the ``target`` logit.

    Integrated Gradients satisfies completeness (Sundararajan et al., 2017): the attributions
    add up to the change of the output between the baseline and the input. The gap is the
    error of the Riemann sum that approximates the path integral; it shrinks with more steps.

    Returns:
        ``N`` gaps, in logit units.
    """
    if attributions.shape != inputs.shape or baselines.shape != inputs.shape:
        raise ValueError("inputs, baselines and attributions must have one shape, got "
                         f"{tuple(inputs.shape)}, {tuple(baselines.shape)}, {tuple(attributions.shape)}")
    target = torch.as_tensor(target).expand(len(inputs)) if torch.as_tensor(target).ndim == 0 else torch.as_tensor(target)
    rows = torch.arange(len(inputs))
    delta = model(inputs)[rows, target] - model(baselines)[rows, target]
    return attributions.flatten(1).sum(1).to(delta.dtype) - delta


def region_share(attributions: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Fraction of each image's total absolute attribution that falls inside ``region``.

    Args:
        attributions: ``N x C x H x W`` or ``N x 1 x H x W`` (or ``N x H x W``) maps.
        region: ``H x W`` boolean mask.

    Returns:
        ``N`` shares in ``[0, 1]``; compare with ``region.float().mean()``, the share a map
        spread evenly would give.
    """
    a = attributions.abs().float()
    if a.ndim == 4:
        a = a.sum(1)
    if a.ndim != 3 or a.shape[1:] != region.shape:
        raise ValueError(f"attributions of shape {tuple(attributions.shape)} do not match a region of {tuple(region.shape)}")
    total = a.flatten(1).sum(1).clamp_min(1e-12)
    return (a * region.float()).flatten(1).sum(1) / total


def randomized_copy(model: nn.Module, layers: list[str], seed: int = 0) -> nn.Module:
    """A copy of ``model`` with the named submodules re-initialised (the cascading randomisation test).

    Adebayo et al. (2018) randomise a trained network's layers from the top down and ask whether
    an explanation changes: one that does not depend on the learnt weights explains the input,
    not the model. Each named submodule (and its children) gets ``reset_parameters()``.

    Args:
        model: The trained network (left unchanged).
        layers: Names from ``model.named_modules()``.
        seed: Seed of the new weights.
    """
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    torch.manual_seed(seed)
    for name in layers:
        if name not in modules:
            raise KeyError(f"no submodule {name!r}; expected one of {[n for n in modules if n]}")
        for m in modules[name].modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    return clone


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between the absolute values of two maps, per image.

    Adebayo et al. (2018) compare explanations by the ranks of their absolute values: sign flips
    and rescaling do not count as change.

    Args:
        a: ``N x ...`` maps.
        b: ``N x ...`` maps of the same shape.

    Returns:
        ``N`` correlations in ``[-1, 1]``.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")

    def ranks(x: torch.Tensor) -> torch.Tensor:
        from scipy.stats import rankdata

        return torch.from_numpy(rankdata(x.abs().flatten(1).double().numpy(), axis=1))

    ra, rb = ranks(a), ranks(b)
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)


def plant_mark(images: torch.Tensor, which: torch.Tensor, size: int = 3, value: float = 255.0,
               corner: str = "top-left") -> torch.Tensor:
    """Stamp a ``size x size`` square of ``value`` into a corner of the selected raw images.

    Used to plant a spurious cue: if the mark appears mostly on one class in training, a model
    can learn the mark instead of the object.

    Args:
        images: ``N x C x H x W`` raw images (0..255); not modified.
        which: ``N`` booleans, the images that get the mark.
        size: Side of the square in pixels.
        value: Pixel value of the square in every channel.
        corner: ``"top-left"``, ``"top-right"``, ``"bottom-left"`` or ``"bottom-right"``.

    Returns:
        A marked copy.
    """
    if images.ndim != 4 or which.shape != (len(images),):
        raise ValueError(f"expected N x C x H x W images and N flags, got {tuple(images.shape)} and {tuple(which.shape)}")
    h, w = images.shape[2:]
    if not 1 <= size <= min(h, w):
        raise ValueError(f"mark size must be in 1..{min(h, w)}, got {size}")
    rows = slice(0, size) if corner.startswith("top") else slice(h - size, h)
    cols = slice(0, size) if corner.endswith("left") else slice(w - size, w)
    if corner not in ("top-left", "top-right", "bottom-left", "bottom-right"):
        raise ValueError(f"unknown corner {corner!r}")
    out = images.clone()
    idx = torch.nonzero(torch.as_tensor(which).bool()).squeeze(1)
    patch = out[idx]
    patch[:, :, rows, cols] = value
    out[idx] = patch
    return out


def mark_region(height: int, width: int, size: int = 3, corner: str = "top-left") -> torch.Tensor:
    """The ``H x W`` boolean mask of the square :func:`plant_mark` stamps."""
    if corner not in ("top-left", "top-right", "bottom-left", "bottom-right"):
        raise ValueError(f"unknown corner {corner!r}")
    region = torch.zeros(height, width, dtype=torch.bool)
    rows = slice(0, size) if corner.startswith("top") else slice(height - size, height)
    cols = slice(0, size) if corner.endswith("left") else slice(width - size, width)
    region[rows, cols] = True
    return region
