"""Interactive explorers: live widgets in a running notebook, static figures in the built book.

An :class:`Explorer` holds a few controls and an output area showing a matplotlib figure drawn
by a pure function of the controls' values. Its MIME bundle carries both the widget view and a
PNG of the current figure: a live Jupyter frontend shows the widget, while the book (rendered
without a kernel, with ``image/png`` ranked first in ``_config.yml``) shows the PNG.

Chapter 06 (optimizers) uses :func:`trajectory_explorer` to race the scratch optimizers of
:mod:`dlkit.scratch.optim` across 2-D test functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from dlkit.scratch import optim as scratch
from dlkit.widgets.core import Explorer, _png, _ShownFigure  # noqa: F401

__all__ = ["Explorer", "Objective", "OBJECTIVES", "OPTIMIZERS", "run_trajectory",
           "plot_trajectories", "trajectory_explorer"]

# --------------------------------------------------------------------------- #
# Optimizer trajectories (chapter 06)
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Objective:
    """A 2-D test function with where to start, where to look and where the minimum is.

    ``f`` reads ``xy[..., 0]`` and ``xy[..., 1]``, so it takes one point (a 2-vector, giving a
    0-d tensor) or a whole grid of points (``...×2``, for contour plots).
    """

    f: Callable[[Tensor], Tensor]
    start: tuple[float, float]
    minimum: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    log_levels: bool = False
    default_lr: float = 1e-2


def _quadratic(xy: Tensor) -> Tensor:
    return 0.5 * (xy[..., 0] ** 2 + 25 * xy[..., 1] ** 2)


def _rosenbrock(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


#: ``quadratic``: 0.5 (x^2 + 25 y^2), Hessian eigenvalues 1 and 25 (condition number 25): a lr
#: stable across the steep y direction (lr < 2/25) crawls along x. ``rosenbrock``: the banana
#: valley (1 - x)^2 + 100 (y - x^2)^2 of Rosenbrock (1960), minimum f(1, 1) = 0: the valley
#: floor is easy to reach and slow to follow.
OBJECTIVES: dict[str, Objective] = {
    "quadratic": Objective(_quadratic, start=(-4.5, 1.5), minimum=(0.0, 0.0),
                           xlim=(-5.0, 5.0), ylim=(-2.0, 2.0), default_lr=7e-2),
    "rosenbrock": Objective(_rosenbrock, start=(-1.5, 2.0), minimum=(1.0, 1.0),
                            xlim=(-2.0, 2.0), ylim=(-1.0, 3.0), log_levels=True, default_lr=1e-3),
}

# name -> (class, defaults that make it that variant); the explorer lists them in this order.
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "SGD": (scratch.SGD, {}),
    "Momentum": (scratch.SGD, {"momentum": 0.9}),
    "Nesterov": (scratch.SGD, {"momentum": 0.9, "nesterov": True}),
    "Adagrad": (scratch.Adagrad, {}),
    "RMSprop": (scratch.RMSprop, {}),
    "Adam": (scratch.Adam, {}),
    "AdamW": (scratch.AdamW, {}),
}

_BOX = 1e6  # a point this far out has diverged; a few more steps would overflow float64


def _check(name: str, choices: Mapping[str, Any], what: str) -> None:
    if name not in choices:
        raise ValueError(f"unknown {what} {name!r}; expected one of {', '.join(choices)}")


def run_trajectory(
    objective: str,
    optimizer: str,
    lr: float,
    steps: int = 100,
    start: tuple[float, float] | None = None,
    **hparams: Any,
) -> Tensor:
    """Minimize a 2-D objective from one point and return every iterate.

    Used in chapter 06 (optimizers). The point is the single parameter of a scratch optimizer
    and its gradient comes from autograd, so this is exactly a training loop on two weights.

    Args:
        objective: A key of :data:`OBJECTIVES`.
        optimizer: A key of :data:`OPTIMIZERS`: ``SGD``, ``Momentum`` (SGD, momentum 0.9),
            ``Nesterov`` (the same with ``nesterov=True``), ``Adagrad``, ``RMSprop``, ``Adam``,
            ``AdamW``.
        lr: Learning rate (> 0).
        steps: Number of updates (>= 1).
        start: Starting point; the objective's default start when ``None``.
        **hparams: Further constructor arguments of the optimizer (they override the
            variant's defaults, e.g. ``momentum=0.5`` for ``Momentum``).

    Returns:
        float64 tensor of shape (steps + 1, 2): the start, then the point after each update. On
        divergence (a coordinate non-finite or beyond 1e6) the run stops and only the points
        before it are returned, so there may be fewer rows, all of them finite.

    Raises:
        ValueError: On an unknown objective or optimizer, ``lr <= 0`` or ``steps < 1``.
    """
    _check(objective, OBJECTIVES, "objective")
    _check(optimizer, OPTIMIZERS, "optimizer")
    if not lr > 0:  # written so that NaN fails too
        raise ValueError(f"lr must be > 0, got {lr}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    obj = OBJECTIVES[objective]
    cls, defaults = OPTIMIZERS[optimizer]
    xy = torch.tensor(start if start is not None else obj.start, dtype=torch.float64,
                      requires_grad=True)
    opt = cls([xy], lr=lr, **{**defaults, **hparams})
    points = [xy.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        obj.f(xy).backward()
        opt.step()
        if not (torch.isfinite(xy).all() and xy.abs().max() <= _BOX):
            break
        points.append(xy.detach().clone())
    return torch.stack(points)


def plot_trajectories(
    objective: str, runs: Mapping[str, Tensor], ax: Axes | None = None, title: str | None = None
) -> Figure:
    """Contour plot of a 2-D objective with optimizer trajectories on top.

    Used in chapter 06 (optimizers). The start is a black circle, the minimum a red star; each
    legend entry gives the run's final loss and its number of steps (fewer than the others:
    it diverged and was stopped).

    Args:
        objective: A key of :data:`OBJECTIVES`.
        runs: Label -> trajectory, as returned by :func:`run_trajectory`.
        ax: Axes to draw on; a new figure (not registered with pyplot) when ``None``.
        title: Axes title; the objective's name when ``None``.

    Returns:
        The figure.
    """
    _check(objective, OBJECTIVES, "objective")
    obj = OBJECTIVES[objective]
    (x0, x1), (y0, y1) = obj.xlim, obj.ylim
    own_figure = ax is None
    if own_figure:  # size the axes to the window's shape, plus room for the legend
        width = min(5.5, 4.2 * (x1 - x0) / (y1 - y0))
        size = (width + 3.0, width * (y1 - y0) / (x1 - x0) + 0.9)
        ax = _ShownFigure(figsize=size, layout="constrained").add_subplot()
    xs = torch.linspace(*obj.xlim, 300, dtype=torch.float64)
    ys = torch.linspace(*obj.ylim, 300, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    z = obj.f(torch.stack([gx, gy], dim=-1)).numpy()
    if obj.log_levels:  # the valley floor is orders of magnitude below its walls
        levels = np.logspace(-1, math.log10(z.max()), 15)
    else:
        levels = np.linspace(0, z.max(), 15)[1:]
    ax.contour(gx.numpy(), gy.numpy(), z, levels=levels, cmap="viridis", linewidths=0.8,
               alpha=0.7)
    for i, (label, path) in enumerate(runs.items()):
        p = path.detach().cpu().double()
        loss = obj.f(p[-1]).item()
        # Sparse markers and the first runs on top: a fast run's path must not hide a slow one's.
        ax.plot(p[:, 0], p[:, 1], marker="o", markersize=3, markevery=max(1, len(p) // 40),
                linewidth=1.5, zorder=2 + len(runs) - i,
                label=f"{label}: f = {loss:.2e} ({len(p) - 1} steps)")
    ax.plot(*obj.start, "ko", markersize=7, label="start")
    ax.plot(*obj.minimum, "r*", markersize=14, label="minimum")
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y", title=title or objective)
    if own_figure:  # "outside" places it beside the axes, in room that the layout reserves
        ax.figure.legend(loc="outside right upper", fontsize=8)
    else:
        ax.legend(fontsize=8)
    return ax.figure  # type: ignore[return-value]


def _variant_hparams(name: str, momentum: float, beta2: float) -> dict[str, Any]:
    """The explorer's two sliders, as constructor arguments of optimizer ``name``."""
    if name == "Momentum":
        return {"momentum": momentum}
    if name == "Nesterov":  # torch refuses Nesterov without momentum; at 0 it is plain SGD
        return {"momentum": momentum, "nesterov": momentum > 0}
    if name in ("Adam", "AdamW"):
        return {"betas": (momentum, beta2)}
    if name == "RMSprop":
        return {"alpha": beta2}  # RMSprop's alpha is Adam's beta2: the squared-gradient average
    return {}


def trajectory_explorer(
    objective: str = "rosenbrock",
    optimizers: Sequence[str] = ("SGD", "Momentum", "Adam"),
    lr: float | None = None,
    steps: int = 300,
) -> Explorer:
    """Race optimizers from the same start on a 2-D objective, with sliders for their settings.

    Used in chapter 06 (optimizers). Every selected optimizer gets the same learning rate, so
    the figure shows how each one turns one lr into steps. The default lr is the objective's
    ``default_lr``, chosen so the default figure makes the point. On ``rosenbrock`` (lr 1e-3,
    near the largest lr that SGD survives at the start) SGD creeps down the valley, Momentum
    follows it nearly to the minimum, and Adam, whose steps are about lr per coordinate
    whatever the gradient's size, barely moves (raise the lr towards 0.1 to see it go). On
    ``quadratic`` (lr 0.07, just under SGD's limit 2/25) SGD zigzags across the steep y
    direction while Momentum overshoots in wide swings and Adam slides down smoothly.

    The "momentum / β1" slider sets Momentum's and Nesterov's momentum and Adam's and AdamW's
    β1; "β2" sets their β2 and RMSprop's alpha. Sliders redraw on release, not while dragged.

    Args:
        objective: A key of :data:`OBJECTIVES`.
        optimizers: Keys of :data:`OPTIMIZERS` selected at first.
        lr: Initial learning rate; the objective's ``default_lr`` when ``None``.
        steps: Initial number of steps.

    Returns:
        The explorer; display it (last line of a cell) to get the widget, or its PNG in the book.
    """
    _check(objective, OBJECTIVES, "objective")
    for name in optimizers:
        _check(name, OPTIMIZERS, "optimizer")
    lr = OBJECTIVES[objective].default_lr if lr is None else lr
    # continuous_update=False: redrawing while a slider is dragged would queue dozens of runs.
    slider = {"continuous_update": False, "style": {"description_width": "initial"}}
    controls = {
        "names": W.SelectMultiple(options=list(OPTIMIZERS), value=tuple(optimizers),
                                  rows=len(OPTIMIZERS), description="optimizers"),
        "lr": W.FloatLogSlider(value=lr, base=10, min=-5, max=0, step=0.1,
                               readout_format=".1e", description="lr", **slider),
        "momentum": W.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01,
                                  description="momentum / β1", **slider),
        "beta2": W.FloatSlider(value=0.999, min=0.9, max=0.9999, step=1e-4,
                               readout_format=".4f", description="β2", **slider),
        "steps": W.IntSlider(value=steps, min=min(10, steps), max=1000, step=10,
                             description="steps", **slider),
    }
    sliders = W.VBox([controls[k] for k in ("lr", "momentum", "beta2", "steps")])
    layout = W.HBox([controls["names"], sliders])

    def draw(names: Sequence[str], lr: float, momentum: float, beta2: float,
             steps: int) -> Figure:
        runs = {n: run_trajectory(objective, n, lr, steps, **_variant_hparams(n, momentum, beta2))
                for n in names}
        return plot_trajectories(objective, runs, title=f"{objective}, lr = {lr:.1e}")

    return Explorer(controls, draw,
                    f"Optimizer trajectories on {objective} ({', '.join(optimizers)})", layout)


# Later chapters' explorers live in modules of their own, re-exported here.
from dlkit.widgets.augment import *  # noqa: E402,F401,F403
from dlkit.widgets.conv import *  # noqa: E402,F401,F403
