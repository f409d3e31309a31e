"""Explorers and figures of chapter 03 (augmentation).

:func:`augment_explorer` shows a grid of CIFAR-10 images under one augmentation whose strength
a slider sets; :func:`plot_policies` puts every policy of :mod:`dlkit.augment` side by side on the
same images; :func:`plot_scenes` draws images with their boxes and masks after geometric
transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor
from torchvision.transforms import v2

from dlkit import augment as A
from dlkit.widgets.core import Explorer, _png, _ShownFigure  # noqa: F401

__all__ = ["OPERATIONS", "augment_images", "plot_augmentations", "plot_policies", "plot_scenes",
           "augment_explorer"]

#: Operation -> builder ``(magnitude in [0, 1], image size) -> transform``. MixUp and CutMix act
#: on a whole batch (``(X, y) -> (X, soft_y)``); the others on one image at a time.
OPERATIONS: dict[str, Callable[[float, int], Any]] = {
    "crop (padding up to 8 px)": lambda m, s: v2.RandomCrop(s, padding=round(8 * m)),
    "horizontal flip (p)": lambda m, s: v2.RandomHorizontalFlip(p=m),
    "rotation (up to 45°)": lambda m, s: v2.RandomRotation(degrees=45 * m),
    "colour jitter": lambda m, s: v2.ColorJitter(brightness=m, contrast=m, saturation=m,
                                                 hue=m / 2),
    "random erasing (area up to 50 %)": lambda m, s: v2.RandomErasing(
        p=1.0, scale=(0.02, max(0.02, 0.5 * m)), value=0),
    "RandAugment (magnitude 0-30)": lambda m, s: v2.RandAugment(num_ops=2, magnitude=round(30 * m)),
    "TrivialAugmentWide (no magnitude)": lambda m, s: v2.TrivialAugmentWide(),
    "AutoAugment CIFAR-10 (no magnitude)": lambda m, s: v2.AutoAugment(
        v2.AutoAugmentPolicy.CIFAR10),
    "MixUp (α = 2·magnitude)": lambda m, s: A.mixup_cutmix(2, mixup_alpha=max(2 * m, 1e-3),
                                                             cutmix_alpha=0),
    "CutMix (α = 2·magnitude)": lambda m, s: A.mixup_cutmix(2, mixup_alpha=0,
                                                              cutmix_alpha=max(2 * m, 1e-3)),
}
_BATCH_OPS = ("MixUp", "CutMix")


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images)
        raise ValueError(f"expected uint8 images N×C×H×W, got {got}")


def augment_images(images: Tensor, operation: str, magnitude: float = 0.5, draws: int = 3,
                   seed: int = 0) -> Tensor:
    """Several independent draws of one operation on the same images.

    Used in chapter 03 (augmentation) by :func:`plot_augmentations` and the explorer. The
    global random state is saved and restored, so calling this does not change later results.

    Args:
        images: ``uint8`` N×C×H×W.
        operation: A key of :data:`OPERATIONS`.
        magnitude: Strength in [0, 1], mapped to each operation's own scale.
        draws: Number of augmented versions of each image (>= 1).
        seed: Seed of the draws.

    Returns:
        ``uint8`` tensor draws×N×C×H×W.

    Raises:
        ValueError: On an unknown operation, a magnitude outside [0, 1], ``draws`` < 1 or
            images that are not ``uint8`` N×C×H×W.
    """
    _check_images(images)
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; expected one of {', '.join(OPERATIONS)}")
    if not 0.0 <= magnitude <= 1.0:
        raise ValueError(f"magnitude must be in [0, 1], got {magnitude}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    transform = OPERATIONS[operation](magnitude, images.shape[-1])
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(draws):
            if operation.startswith(_BATCH_OPS):
                # Pair each image with the next one of a shuffled batch, as training does.
                perm = torch.randperm(len(images))
                X = images[perm].float() / 255
                mixed, _ = transform(X, torch.zeros(len(images), dtype=torch.long))
                batch = torch.empty_like(mixed)
                batch[perm] = mixed
                out.append((batch * 255).round().to(torch.uint8))
            else:
                out.append(A.apply_per_image(transform, images))
    return torch.stack(out)


def _imshow(ax: Any, image: Tensor) -> None:
    ax.imshow(image.permute(1, 2, 0).numpy().squeeze(), cmap="gray" if image.shape[0] == 1 else None,
              vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(rows: Sequence[tuple[str, Tensor]], title: str, scale: float = 1.1) -> Figure:
    ncols = rows[0][1].shape[0]
    fig = _ShownFigure(figsize=(1.2 + scale * ncols, 0.4 + scale * len(rows)), layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), ncols, squeeze=False))
    for r, (label, images) in enumerate(rows):
        for c in range(ncols):
            _imshow(axes[r, c], images[c])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_augmentations(images: Tensor, operation: str, magnitude: float = 0.5, draws: int = 3,
                       seed: int = 0) -> Figure:
    """The originals in the top row, then ``draws`` rows of the operation applied to them.

    Used in chapter 03 (augmentation).

    Args:
        images: ``uint8`` N×C×H×W (a few, e.g. 8).
        operation: A key of :data:`OPERATIONS`.
        magnitude: Strength in [0, 1].
        draws: Rows of augmented versions.
        seed: Seed of the draws.

    Returns:
        The figure (outside pyplot; it displays itself in Jupyter).
    """
    augmented = augment_images(images, operation, magnitude, draws, seed)
    rows = [("original", images)] + [(f"draw {i + 1}", a) for i, a in enumerate(augmented)]
    return _grid(rows, f"{operation}, magnitude {magnitude:.2f}")


def plot_policies(images: Tensor, policies: Sequence[str] | Mapping[str, Callable[[Tensor], Tensor]],
                  seed: int = 0) -> Figure:
    """Each policy applied once to the same images, one row per policy.

    Used in chapter 03 (augmentation).

    Args:
        images: ``uint8`` N×C×H×W.
        policies: Names of :data:`dlkit.augment.POLICIES`, or label -> per-image transform.
        seed: Seed of the draws (the global random state is restored afterwards).

    Returns:
        The figure.
    """
    _check_images(images)
    named = {p: A.policy(p) for p in policies} if not isinstance(policies, Mapping) else policies
    rows = [("original", images)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rows += [(label, A.apply_per_image(t, images)) for label, t in named.items()]
    return _grid(rows, "The same images under each policy")


_COLOURS = ("#ffd500", "#00e5ff", "#ff5cf4", "#7CFC00")


def plot_scenes(panels: Mapping[str, tuple[Tensor, Tensor, Tensor]], scale: float = 2.6) -> Figure:
    """Images with their masks shaded and their boxes drawn, one panel each.

    Used in chapter 03 (augmentation) to show boxes and masks following flips, crops and
    rotations. Boxes are drawn at their exact (sub-pixel) XYXY coordinates.

    Args:
        panels: Title -> ``(image uint8 C×H×W, boxes K×4 XYXY, masks K×H×W)``.
        scale: Inches per panel.

    Returns:
        The figure.
    """
    fig = _ShownFigure(figsize=(scale * len(panels), scale + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, (image, boxes, masks)) in zip(axes, panels.items()):
        shown = image.as_subclass(Tensor).float().clone()
        for k, mask in enumerate(masks.as_subclass(Tensor).bool()):
            colour = torch.tensor([int(_COLOURS[k % 4][i:i + 2], 16) for i in (1, 3, 5)]).float()
            shown[:, mask] = 0.5 * shown[:, mask] + 0.5 * colour[:, None]
        _imshow(ax, shown.round().to(torch.uint8))
        for k, (x0, y0, x1, y1) in enumerate(boxes.as_subclass(Tensor).tolist()):
            # imshow puts pixel (r, c) at [c - 0.5, c + 0.5]: shift XYXY edges by half a pixel.
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=_COLOURS[k % 4], linewidth=1.5))
        ax.set_title(title, fontsize=9)
    return fig


def augment_explorer(images: Tensor, operation: str = "rotation (up to 45°)",
                     magnitude: float = 0.5, draws: int = 3) -> Explorer:
    """Pick an augmentation and its strength; see it applied to a grid of images.

    Used in chapter 03 (augmentation). The top row shows the originals, each row below one
    independent draw. The seed slider redraws with other random parameters. In the built book
    (no kernel) the explorer shows the figure for its initial settings.

    Args:
        images: ``uint8`` N×C×H×W (8 to 10 images fit a row).
        operation: Initial key of :data:`OPERATIONS`.
        magnitude: Initial strength in [0, 1].
        draws: Initial number of augmented rows.

    Returns:
        The explorer; display it (last line of a cell).

    Raises:
        ValueError: On an unknown operation or images that are not ``uint8`` N×C×H×W.
    """
    _check_images(images)
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; expected one of {', '.join(OPERATIONS)}")
    slider = {"continuous_update": False, "style": {"description_width": "initial"}}
    controls = {
        "operation": W.Dropdown(options=list(OPERATIONS), value=operation, description="operation",
                                layout=W.Layout(width="380px")),
        "magnitude": W.FloatSlider(value=magnitude, min=0.0, max=1.0, step=0.05,
                                   description="magnitude", **slider),
        "draws": W.IntSlider(value=draws, min=1, max=5, description="draws", **slider),
        "seed": W.IntSlider(value=0, min=0, max=99, description="seed", **slider),
    }
    layout = W.VBox([controls["operation"],
                     W.HBox([controls["magnitude"], controls["draws"], controls["seed"]])])

    def draw(operation: str, magnitude: float, draws: int, seed: int) -> Figure:
        return plot_augmentations(images, operation, magnitude, draws, seed)

    return Explorer(controls, draw, f"Augmentation explorer ({operation})", layout)
