"""Explorers of chapter 04 (CNN design): one 3×3 kernel slid over an image.

:func:`conv_explorer` lets a reader pick a classic kernel (blur, sharpen, Sobel edges, ...) or
type the nine weights of their own, and shows the image, the kernel and the output map that a
single-channel ``nn.Conv2d`` with those weights computes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import ipywidgets as W
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torch.nn import functional as F

from dlkit.widgets.core import Explorer, _ShownFigure, _png  # noqa: F401

__all__ = ["KERNELS", "apply_kernel", "to_gray", "demo_image", "plot_convolution", "conv_explorer"]

#: Classic 3×3 kernels (as PyTorch applies them: cross-correlation, no flipping). The Sobel
#: kernels respond to horizontal change (``x``: vertical edges) and vertical change (``y``).
KERNELS: dict[str, Tensor] = {
    "identity": torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "box blur": torch.full((3, 3), 1 / 9),
    "Gaussian blur": torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16,
    "sharpen": torch.tensor([[0.0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "Sobel x": torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
    "Sobel y": torch.tensor([[-1.0, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "Laplacian": torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    "emboss": torch.tensor([[-2.0, -1, 0], [-1, 1, 1], [0, 1, 2]]),
}
_CUSTOM = "custom (the grid)"


def to_gray(image: Tensor) -> Tensor:
    """One image as a float H×W tensor in [0, 1] (luma of RGB, ITU-R BT.601 weights).

    Used in chapter 04 (CNN design).

    Args:
        image: ``H×W``, ``1×H×W`` or ``3×H×W``; uint8 (0-255) or float in [0, 1].

    Returns:
        Float32 ``H×W``.

    Raises:
        ValueError: For any other shape.
    """
    x = image.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if x.ndim == 3 and x.shape[0] == 3:
        x = (torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1) * x).sum(0)
    elif x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"expected an image H×W, 1×H×W or 3×H×W, got shape {tuple(image.shape)}")
    return x


def demo_image(size: int = 32) -> Tensor:
    """A procedural gray image with edges in every direction: a square, a disc and a ramp.

    Used in chapter 04 when no photo is given to :func:`conv_explorer`.
    """
    r = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    img = 0.15 + 0.5 * (xx / (size - 1)) * (yy > 0.75 * size)  # ramp along the bottom
    q = size // 8
    img[q:4 * q, q:4 * q] = 0.9  # square
    disc = (xx - 0.68 * size) ** 2 + (yy - 0.35 * size) ** 2 < (0.18 * size) ** 2
    return torch.where(disc, torch.tensor(0.6), img)


def apply_kernel(image: Tensor, kernel: Tensor, stride: int = 1, padding: int = 1) -> Tensor:
    """Slide ``kernel`` over a gray image with ``F.conv2d``: what one conv channel computes.

    Used in chapter 04 (CNN design). PyTorch's convolution is a cross-correlation: output
    pixel ``(i, j)`` is ``sum_{u,v} kernel[u, v] * padded[i*s + u, j*s + v]``, without
    flipping the kernel.

    Args:
        image: Gray image ``H×W`` (see :func:`to_gray`).
        kernel: ``k×k`` weights.
        stride: Step between positions.
        padding: Zeros added on each side.

    Returns:
        The output map, ``H'×W'`` with ``H' = (H + 2p - k) // s + 1``.

    Raises:
        ValueError: If the image or kernel is not 2-D.
    """
    if image.ndim != 2 or kernel.ndim != 2:
        raise ValueError(f"expected a 2-D image and a 2-D kernel, got shapes {tuple(image.shape)} "
                         f"and {tuple(kernel.shape)}")
    out = F.conv2d(image[None, None].float(), kernel[None, None].float(), stride=stride,
                   padding=padding)
    return out[0, 0]


def plot_convolution(image: Tensor, kernel: Tensor, stride: int = 1, padding: int = 1,
                     title: str | None = None) -> Figure:
    """Three panels: the image, the kernel with its weights written in, and the output map.

    Used in chapter 04 (CNN design) by :func:`conv_explorer`. The output uses a diverging
    colour map centred on 0, since edge kernels give negative and positive responses.

    Args:
        image: Gray image ``H×W``.
        kernel: ``k×k`` weights.
        stride: Step between positions.
        padding: Zeros added on each side.
        title: Figure title.

    Returns:
        The figure (outside pyplot; it displays itself in Jupyter).
    """
    out = apply_kernel(image, kernel, stride, padding)
    fig = _ShownFigure(figsize=(9.5, 3.4), layout="constrained")
    ax_in, ax_k, ax_out = fig.subplots(1, 3)
    ax_in.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
    ax_in.set_title(f"input {image.shape[0]}×{image.shape[1]}")
    lim = float(kernel.abs().max()) or 1.0
    ax_k.imshow(kernel.numpy(), cmap="coolwarm", vmin=-lim, vmax=lim)
    for (i, j), v in ((ij, float(kernel[ij])) for ij in
                      ((i, j) for i in range(kernel.shape[0]) for j in range(kernel.shape[1]))):
        ax_k.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=11)
    ax_k.set_title(f"kernel {kernel.shape[0]}×{kernel.shape[1]}")
    o = float(out.abs().max()) or 1.0
    im = ax_out.imshow(out.numpy(), cmap="coolwarm", vmin=-o, vmax=o)
    ax_out.set_title(f"output {out.shape[0]}×{out.shape[1]} (stride {stride}, padding {padding})")
    fig.colorbar(im, ax=ax_out, shrink=0.8)
    for ax in (ax_in, ax_k, ax_out):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


def conv_explorer(
    images: Mapping[str, Tensor] | Tensor | None = None,
    kernel: str = "Sobel x",
    custom: Sequence[float] | None = None,
) -> Explorer:
    """Pick or type a 3×3 kernel and see what it does to an image.

    Used in chapter 04 (CNN design). The kernel menu holds :data:`KERNELS` plus
    "custom (the grid)", which uses the nine numbers typed into the 3×3 grid of boxes (row by
    row). Stride and padding sliders show how the output shrinks.

    Args:
        images: Images by name (any form :func:`to_gray` takes), one image, or ``None`` for
            :func:`demo_image`.
        kernel: The initial menu entry: a key of :data:`KERNELS` or ``"custom (the grid)"``.
        custom: The grid's initial nine weights, row by row; the Laplacian's when ``None``.

    Returns:
        The explorer; display it (last line of a cell) to get the widget, or its PNG in the book.

    Raises:
        ValueError: On an unknown kernel name, a grid without nine numbers, or a bad image.
    """
    if images is None:
        images = {"demo": demo_image()}
    elif isinstance(images, Tensor):
        images = {"image": images}
    grays = {name: to_gray(img) for name, img in images.items()}
    if not grays:
        raise ValueError("images is empty: give at least one image")
    names = [*KERNELS, _CUSTOM]
    if kernel not in names:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {', '.join(names)}")
    grid = list(custom) if custom is not None else KERNELS["Laplacian"].flatten().tolist()
    if len(grid) != 9 or not all(math.isfinite(float(v)) for v in grid):
        raise ValueError(f"custom must hold nine finite numbers, got {grid!r}")
    controls: dict[str, W.ValueWidget] = {
        "image": W.Dropdown(options=list(grays), value=next(iter(grays)), description="image"),
        "kernel": W.Dropdown(options=names, value=kernel, description="kernel"),
        "stride": W.IntSlider(value=1, min=1, max=3, description="stride"),
        "padding": W.IntSlider(value=1, min=0, max=3, description="padding"),
    }
    cells = {f"w{i}": W.FloatText(value=float(v), layout=W.Layout(width="4.5em"))
             for i, v in enumerate(grid)}
    controls.update(cells)
    grid_box = W.VBox([W.HBox([cells[f"w{3 * r + c}"] for c in range(3)]) for r in range(3)])
    layout = W.HBox([W.VBox([controls[k] for k in ("image", "kernel", "stride", "padding")]),
                     W.VBox([W.Label("custom kernel"), grid_box])])

    def draw(image: str, kernel: str, stride: int, padding: int, **weights: float) -> Figure:
        if kernel == _CUSTOM:
            k = torch.tensor([weights[f"w{i}"] for i in range(9)], dtype=torch.float32).view(3, 3)
        else:
            k = KERNELS[kernel]
        return plot_convolution(grays[image], k, stride, padding, title=f"{kernel} on {image}")

    return Explorer(controls, draw, f"Convolution explorer ({kernel})", layout)
