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
    from dlkit.train import History

__all__ = ["show_images", "plot_history", "plot_confusion_matrix"]

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
