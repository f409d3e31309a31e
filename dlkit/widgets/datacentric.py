"""Browser of chapter 15 (data-centric deep learning): labels a detector suspects are wrong."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as W
import torch
from matplotlib.figure import Figure

from dlkit.widgets.core import Explorer, _ShownFigure

__all__ = ["plot_label_issues", "label_issue_browser"]


def _check(images: torch.Tensor, given: torch.Tensor, probs: torch.Tensor, ranked: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected N x C x H x W images, got shape {tuple(images.shape)}")
    if given.shape != (len(images),) or probs.shape[0] != len(images):
        raise ValueError(f"given labels ({tuple(given.shape)}) and probabilities ({tuple(probs.shape)}) "
                         f"must have one row per image ({len(images)})")
    if ranked.ndim != 1 or (len(ranked) and (ranked.min() < 0 or ranked.max() >= len(images))):
        raise ValueError("ranked must be a vector of image indices")


def plot_label_issues(images: torch.Tensor, given: torch.Tensor, probs: torch.Tensor,
                      ranked: torch.Tensor, classes: Sequence[str], *, page: int = 0,
                      per_page: int = 16, only_class: int | None = None, ncols: int = 8) -> Figure:
    """A page of suspected label errors, most suspicious first, with the given and suggested class.

    Used in chapter 15. Each title reads ``given → suggested`` with the model's probability of
    each, so a reader can judge who is right: the label or the model.

    Args:
        images: ``N x C x H x W`` uint8 images.
        given: ``N`` labels as found in the data.
        probs: ``N x K`` out-of-sample probabilities.
        ranked: Indices of the suspected images, most suspicious first (cleanlab's ranking).
        classes: Class names.
        page: Which page of ``per_page`` images.
        per_page: Images per page.
        only_class: Show only suspects whose given label is this class.
        ncols: Images per row.

    Returns:
        The figure.
    """
    _check(images, given, probs, ranked)
    if only_class is not None:
        ranked = ranked[given[ranked] == only_class]
    shown = ranked[page * per_page:(page + 1) * per_page]
    n = max(len(shown), 1)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = _ShownFigure(figsize=(1.45 * ncols, 1.55 * nrows + 0.3), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, shown.tolist()):
        g, s = int(given[i]), int(probs[i].argmax())
        ax.imshow(images[i].permute(1, 2, 0).squeeze(-1).numpy(),
                  cmap="gray" if images.shape[1] == 1 else None)
        ax.set_title(f"#{i}\n{classes[g]} {probs[i, g]:.2g}\n→ {classes[s]} {probs[i, s]:.2g}", fontsize=7)
    if not len(shown):
        axes[0].text(0.5, 0.5, "no suspects on this page", ha="center", va="center")
    which = "" if only_class is None else f" labelled {classes[only_class]}"
    fig.suptitle(f"Suspected label errors{which}: page {page + 1} "
                 f"(given label and probability → the model's class)", fontsize=9)
    return fig


def label_issue_browser(images: torch.Tensor, given: torch.Tensor, probs: torch.Tensor,
                        ranked: torch.Tensor, classes: Sequence[str], per_page: int = 16) -> Explorer:
    """Page through :func:`plot_label_issues`, optionally for one given class.

    Used in chapter 15. In the built book the first page is shown.
    """
    _check(images, given, probs, ranked)
    pages = max(1, -(-len(ranked) // per_page))
    controls = {
        "only_class": W.Dropdown(options=[("all classes", None)] + [(c, i) for i, c in enumerate(classes)],
                                 value=None, description="given"),
        "page": W.IntSlider(value=0, min=0, max=pages - 1, description="page", continuous_update=False),
    }

    def draw(only_class: int | None, page: int) -> Figure:
        return plot_label_issues(images, given, probs, ranked, classes, page=page,
                                 per_page=per_page, only_class=only_class)

    return Explorer(controls, draw, f"Suspected label errors ({len(ranked)} in all)")
