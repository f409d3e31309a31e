"""Explorer of chapter 11 (generative models): classifier-free guidance on a trained diffusion model."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as W
import torch
from matplotlib.figure import Figure
from torch import nn

from dlkit.generative.diffusion import NoiseSchedule, sample
from dlkit.widgets.core import Explorer, _ShownFigure

__all__ = ["plot_guidance", "guidance_explorer"]


def plot_guidance(model: nn.Module, schedule: NoiseSchedule, classes: Sequence[str], label: int,
                  scales: Sequence[float], steps: int = 20, seed: int = 0, n: int = 8) -> Figure:
    """Samples of one class at several guidance scales, the same starting noise in every row.

    Used in chapter 11. Row ``i`` shows ``n`` samples drawn with guidance ``scales[i]`` from the
    same seed, so the rows differ only by the guidance (0: the unconditional model, 1: the plain
    conditional one).

    Args:
        model: A class-conditional ε-prediction network (``model(x_t, t, y)``).
        schedule: Its training schedule (respaced here to ``steps``).
        classes: Class names; the null class is ``len(classes)``.
        label: The class asked for.
        scales: Guidance scales, one row each.
        steps: Sampling steps.
        seed: Seed of the noise.
        n: Samples per row.

    Returns:
        The figure.
    """
    sampler = schedule.respace(steps)
    labels = torch.full((n,), int(label))
    fig = _ShownFigure(figsize=(1.0 * n, 1.05 * len(scales) + 0.4), layout="constrained")
    axes = fig.subplots(len(scales), n, squeeze=False)
    for row, scale in zip(axes, scales):
        images = sample(model, sampler, (n, 1, 28, 28), labels=labels, guidance=float(scale),
                        num_classes=len(classes), generator=torch.Generator().manual_seed(seed))
        for k, ax in enumerate(row):
            ax.imshow(images[k, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"s = {scale:g}", fontsize=9)
    fig.suptitle(f"{classes[int(label)]}: guidance scale s by row ({steps} steps, seed {seed})",
                 fontsize=10)
    return fig


def guidance_explorer(model: nn.Module, schedule: NoiseSchedule, classes: Sequence[str],
                      label: int = 0, scale: float = 3.0, steps: int = 20) -> Explorer:
    """Controls for the class, the guidance scale, the steps and the seed of :func:`plot_guidance`.

    Used in chapter 11. Each redraw compares the chosen scale with 0 and 1 (three rows of eight
    samples). In the built book the figure for the initial settings is shown.

    Args:
        model: A class-conditional ε-prediction network.
        schedule: Its training schedule.
        classes: Class names.
        label: Initial class.
        scale: Initial guidance scale.
        steps: Initial number of sampling steps.

    Returns:
        The explorer.
    """
    slider = {"continuous_update": False}
    controls = {
        "label": W.Dropdown(options=[(name, i) for i, name in enumerate(classes)], value=label,
                            description="class"),
        "scale": W.FloatSlider(value=scale, min=0.0, max=8.0, step=0.5, description="guidance",
                               **slider),
        "steps": W.IntSlider(value=steps, min=5, max=100, step=5, description="steps", **slider),
        "seed": W.IntSlider(value=0, min=0, max=20, description="seed", **slider),
    }

    def draw(label: int, scale: float, steps: int, seed: int) -> Figure:
        return plot_guidance(model, schedule, classes, label, (0.0, 1.0, scale), steps, seed)

    return Explorer(controls, draw, f"Guidance explorer ({classes[label]}, s = {scale:g})")
