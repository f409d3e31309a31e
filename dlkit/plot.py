"""Figures that several chapters draw: image grids, learning curves, confusion matrices.

Each function returns the matplotlib ``Figure`` so a chapter can save or test it; end the
notebook line with ``;`` so Jupyter does not display the figure twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from dlkit.train.history import History

__all__ = ["show_images", "show_grid", "plot_history", "plot_confusion_matrix", "plot_filters",
           "plot_feature_maps"]

_RIGHT, _WRONG = "#1a7f37", "#cf222e"


def _to_display(images: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    """N×C×H×W (uint8 or float) → N×H×W×C floats in [0, 1] for imshow."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected images shaped N×C×H×W with C = 1 or 3, got {tuple(images.shape)}"
        )
    x = images.detach().cpu()
    if x.dtype == torch.uint8:
        x = x.float() / 255
    elif x.is_floating_point():
        x = x.float()
        if mean is not None or std is not None:
            c = x.shape[1]
            m = torch.as_tensor(mean if mean is not None else [0.0] * c).view(1, c, 1, 1)
            s = torch.as_tensor(std if std is not None else [1.0] * c).view(1, c, 1, 1)
            x = x * s + m
    else:
        raise TypeError(f"expected uint8 or floating-point images, got {x.dtype}")
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def show_images(
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor | None = None,
    classes: Sequence[str] | None = None,
    *,
    predictions: Sequence[int] | torch.Tensor | None = None,
    ncols: int = 8,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float = 1.3,
    title: str | None = None,
) -> Figure:
    """Draw a grid of images with their class names.

    With ``predictions``, each title reads ``predicted (true)`` and is green when right, red when
    wrong, so mistakes stand out. Used in chapter 01 and the data chapters.

    Args:
        images: N×C×H×W uint8 images, or floats in [0, 1] (or normalized, with ``mean``/``std``).
        labels: True class indices, length N.
        classes: Class names indexed by label.
        predictions: Predicted class indices, length N.
        ncols: Images per row.
        mean: Per-channel mean that was subtracted, to undo normalization for display.
        std: Per-channel std that was divided by.
        scale: Inches per image.
        title: Figure title.

    Returns:
        The figure.
    """
    pics = _to_display(torch.as_tensor(images), mean, std)
    n = len(pics)
    if n == 0:
        raise ValueError("no images to show")
    for name, seq in (("labels", labels), ("predictions", predictions)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} images")
    if predictions is not None and labels is None:
        raise ValueError("predictions need labels to be marked right or wrong")
    names = (lambda i: classes[int(i)]) if classes is not None else (lambda i: str(int(i)))
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + 0.3), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = pics[k]
        if img.shape[-1] == 1:
            # Fixed limits: without them a 2-D image is contrast-stretched (a white one shows black).
            ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(img)
        if predictions is not None:
            ok = int(predictions[k]) == int(labels[k])  # type: ignore[index]
            ax.set_title(
                f"{names(predictions[k])}\n({names(labels[k])})",  # type: ignore[index]
                fontsize=8,
                color=_RIGHT if ok else _WRONG,
                fontweight="normal" if ok else "bold",
            )
        elif labels is not None:
            ax.set_title(names(labels[k]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_grid(images: torch.Tensor, ncols: int = 10, *, scale: float = 0.5,
              title: str | None = None) -> Figure:
    """Tile many small images into one picture, without titles: samples of a generative model.

    One ``imshow`` of the tiled array (fast for hundreds of images, unlike one axis per image
    in :func:`show_images`). Used in chapter 11.

    Args:
        images: N×C×H×W floats in [0, 1] (clamped) or uint8 images, C = 1 or 3.
        ncols: Images per row.
        scale: Inches per image.
        title: Figure title.

    Returns:
        The figure.

    Raises:
        ValueError: If ``images`` is not a non-empty N×C×H×W batch with 1 or 3 channels.
    """
    images = torch.as_tensor(images).detach().cpu()
    if images.ndim != 4 or len(images) == 0 or images.shape[1] not in (1, 3):
        raise ValueError("expected a non-empty N×C×H×W batch with C = 1 or 3, got shape "
                         f"{tuple(images.shape)}")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    pics = images.float() / 255 if images.dtype == torch.uint8 else images.float().clamp(0, 1)
    n, c, h, w = pics.shape
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    tiles = torch.ones(nrows * ncols, c, h + 1, w + 1)  # a one-pixel white border between images
    tiles[:n, :, :h, :w] = pics
    grid = tiles.view(nrows, ncols, c, h + 1, w + 1).permute(0, 3, 1, 4, 2)
    grid = grid.reshape(nrows * (h + 1), ncols * (w + 1), c)[:-1, :-1]
    fig, ax = plt.subplots(figsize=(scale * ncols, scale * nrows + (0.4 if title else 0.1)))
    ax.axis("off")
    if c == 1:
        ax.imshow(grid[..., 0].numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid.numpy(), interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_history(history: History, title: str | None = None) -> Figure:
    """Learning curves: loss and accuracy per epoch, training vs validation.

    Used in chapter 01 and every training chapter after it.

    Args:
        history: What :func:`dlkit.train.fit` returned.
        title: Figure title.

    Returns:
        The figure (two panels).
    """
    if len(history) == 0:
        raise ValueError("the history is empty: nothing to plot")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    ep = history.epoch
    has_val = not all(math.isnan(v) for v in history.val_loss)
    marker = "o" if len(ep) < 20 else None
    ax_loss.plot(ep, history.train_loss, marker=marker, label="train")
    ax_acc.plot(ep, [100 * a for a in history.train_acc], marker=marker, label="train")
    if has_val:
        ax_loss.plot(ep, history.val_loss, marker=marker, label="validation")
        ax_acc.plot(ep, [100 * a for a in history.val_acc], marker=marker, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    cm: torch.Tensor | np.ndarray,
    classes: Sequence[str],
    *,
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """Heat map of a confusion matrix (rows = true class, columns = predicted class).

    Used in chapter 01 and chapter 07.

    Args:
        cm: K×K counts, e.g. from :func:`dlkit.metrics.confusion_matrix`.
        classes: The K class names.
        normalize: Show each row as percentages of that true class (the diagonal is recall).
        title: Figure title.

    Returns:
        The figure.
    """
    m = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.float64)
    k = len(classes)
    if m.shape != (k, k):
        raise ValueError(f"expected a {k}×{k} matrix for {k} classes, got shape {m.shape}")
    shown = 100 * m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalize else m
    fig, ax = plt.subplots(figsize=(0.55 * k + 2.5, 0.55 * k + 1.8))
    im = ax.imshow(shown, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set(xlabel="predicted class", ylabel="true class")
    threshold = shown.max() / 2
    for i in range(k):
        for j in range(k):
            text = f"{shown[i, j]:.0f}" if normalize else f"{int(m[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if shown[i, j] > threshold else "black")
    fig.colorbar(im, ax=ax, label="% of true class" if normalize else "count", shrink=0.8)
    ax.set_title(title or ("Confusion matrix (row %)" if normalize else "Confusion matrix"))
    fig.tight_layout()
    return fig


def plot_filters(weight: torch.Tensor, ncols: int = 16, scale: float = 0.6,
                 title: str | None = None) -> Figure:
    """The kernels of a first convolution layer, one small image per output channel.

    Used in chapter 04 (CNN design). Each filter is min-max scaled on its own to [0, 1], so the
    pattern (colour blob, edge, ...) shows whatever the size of its weights; RGB filters
    (3 input channels) are drawn in colour, others channel by channel averaged to gray.

    Args:
        weight: ``C_out×C_in×k×k`` weights, e.g. ``model.conv1.weight``.
        ncols: Filters per row.
        scale: Inches per filter.
        title: Figure title.

    Returns:
        The figure.

    Raises:
        ValueError: If ``weight`` is not 4-D.
    """
    if weight.ndim != 4:
        raise ValueError(f"expected convolution weights C_out×C_in×k×k, got {tuple(weight.shape)}")
    w = weight.detach().float().cpu()
    if w.shape[1] != 3:
        w = w.mean(dim=1, keepdim=True)
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    n = w.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + 0.4),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            img = w[k].permute(1, 2, 0).numpy()
            ax.imshow(img if img.shape[-1] == 3 else img[..., 0], cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
    fig.suptitle(title or f"{n} filters of size {weight.shape[1]}×{weight.shape[2]}×{weight.shape[3]}")
    fig.tight_layout()
    return fig


def plot_feature_maps(maps: dict[str, torch.Tensor], n: int = 8, scale: float = 1.1,
                      title: str | None = None) -> Figure:
    """The first ``n`` channels of each layer's output for one image, one row per layer.

    Used in chapter 04 (CNN design) with :func:`dlkit.models.feature_maps`. Each map is
    scaled on its own (bright = strong activation); the row label gives the layer and its
    output shape, so the maps are seen shrinking in size and growing in number.

    Args:
        maps: Layer name -> ``C×H×W`` (or ``1×C×H×W``) activations, in network order.
        n: Channels shown per layer.
        scale: Inches per map.
        title: Figure title.

    Returns:
        The figure.

    Raises:
        ValueError: If ``maps`` is empty or a map is not 3-D.
    """
    if not maps:
        raise ValueError("maps is empty: nothing to plot")
    rows = []
    for name, m in maps.items():
        m = m.detach().float().cpu()
        m = m[0] if m.ndim == 4 and m.shape[0] == 1 else m
        if m.ndim != 3:
            raise ValueError(f"{name}: expected C×H×W activations, got shape {tuple(m.shape)}")
        rows.append((name, m))
    ncols = max(1, min(n, max(m.shape[0] for _, m in rows)))
    fig, axes = plt.subplots(len(rows), ncols, figsize=(scale * ncols + 1.2, scale * len(rows) + 0.4),
                             squeeze=False)
    for r, (name, m) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c < m.shape[0]:
                ax.imshow(m[c].numpy(), cmap="viridis", interpolation="nearest")
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(f"{name}\n{m.shape[0]}×{m.shape[1]}×{m.shape[2]}", fontsize=8,
                              rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
