"""Tests for dlkit.widgets: optimizer trajectories, their plot, and the explorer's two faces."""

from __future__ import annotations

import base64
import io

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from dlkit.widgets import (
    OBJECTIVES, OPTIMIZERS, Explorer, plot_trajectories, run_trajectory, trajectory_explorer,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# A learning rate per optimizer that makes progress on both objectives in 200 steps
# (SGD-like ones are capped by Rosenbrock's steep walls, adaptive ones move ~lr per step).
GOOD_LR = {"SGD": 1e-3, "Momentum": 1e-3, "Nesterov": 1e-3, "Adagrad": 0.5, "RMSprop": 1e-2,
           "Adam": 5e-2, "AdamW": 5e-2}


def _torch_trajectory(objective: str, make_opt, steps: int) -> torch.Tensor:
    f = OBJECTIVES[objective].f
    xy = torch.tensor(OBJECTIVES[objective].start, dtype=torch.float64, requires_grad=True)
    opt = make_opt([xy])
    points = [xy.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        f(xy).backward()
        opt.step()
        points.append(xy.detach().clone())
    return torch.stack(points)


# --------------------------------------------------------------------------- #
# run_trajectory
# --------------------------------------------------------------------------- #
def test_sgd_on_quadratic_is_closed_form_gradient_descent():
    lr, steps = 0.03, 5
    path = run_trajectory("quadratic", "SGD", lr, steps)
    assert path.shape == (steps + 1, 2) and path.dtype == torch.float64
    # grad of 0.5 (x^2 + 25 y^2) is (x, 25 y): x_{t+1} = x_t - lr x_t, y_{t+1} = y_t - 25 lr y_t
    x, y = OBJECTIVES["quadratic"].start
    expected = [(x, y)]
    for _ in range(steps):
        x, y = x - lr * x, y - lr * 25 * y
        expected.append((x, y))
    torch.testing.assert_close(path, torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-14, atol=0)


@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize(("name", "make_torch", "lr"), [
    ("Adam", lambda p, lr: torch.optim.Adam(p, lr=lr), 1e-2),
    ("Momentum", lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9), 1e-3),
    ("Nesterov", lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True), 1e-3),
])
def test_matches_torch_optim(objective, name, make_torch, lr):
    ours = run_trajectory(objective, name, lr, 50)
    theirs = _torch_trajectory(objective, lambda p: make_torch(p, lr), 50)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def test_hparams_override_variant_defaults_and_start():
    ours = run_trajectory("quadratic", "Momentum", 0.01, 20, start=(1.0, -1.0), momentum=0.5)
    assert ours[0].tolist() == [1.0, -1.0]
    f = OBJECTIVES["quadratic"].f
    xy = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([xy], lr=0.01, momentum=0.5)
    for _ in range(20):
        opt.zero_grad()
        f(xy).backward()
        opt.step()
    torch.testing.assert_close(ours[-1], xy.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_reduces_the_objective(objective, name):
    path = run_trajectory(objective, name, GOOD_LR[name], 200)
    f = OBJECTIVES[objective].f
    assert len(path) == 201
    assert f(path[-1]) < 0.5 * f(path[0])


@pytest.mark.parametrize("name", ["SGD", "Momentum", "Nesterov"])
def test_divergence_stops_early_with_finite_points(name):
    path = run_trajectory("rosenbrock", name, 0.5, 100)
    assert 1 <= len(path) < 101
    assert torch.isfinite(path).all() and path.abs().max() <= 1e6


@pytest.mark.parametrize(("args", "match"), [
    (("banana", "SGD", 0.1), "unknown objective 'banana'.*quadratic, rosenbrock"),
    (("quadratic", "LBFGS", 0.1), "unknown optimizer 'LBFGS'.*SGD, Momentum, Nesterov"),
    (("quadratic", "SGD", 0.0), "lr must be > 0"),
    (("quadratic", "SGD", float("nan")), "lr must be > 0"),
    (("quadratic", "SGD", 0.1, 0), "steps must be >= 1"),
])
def test_bad_arguments_raise(args, match):
    with pytest.raises(ValueError, match=match):
        run_trajectory(*args)


# --------------------------------------------------------------------------- #
# plot_trajectories
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_plot_has_one_line_per_run(objective):
    runs = {n: run_trajectory(objective, n, GOOD_LR[n], 20) for n in ("SGD", "Adam")}
    fig = plot_trajectories(objective, runs)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert sum(label.startswith(("SGD:", "Adam:")) for label in labels) == 2
    assert len(ax.lines) == 2 + 2  # the runs, the start, the minimum
    np.testing.assert_array_equal(ax.lines[0].get_xydata(), runs["SGD"].numpy())
    assert "(20 steps)" in labels[0]


def test_plot_on_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_trajectories("quadratic", {"SGD": run_trajectory("quadratic", "SGD", 0.03, 5)},
                             ax=ax) is fig


# --------------------------------------------------------------------------- #
# Explorer
# --------------------------------------------------------------------------- #
def _decode(png_b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(png_b64)))


def test_explorer_bundle_has_widget_png_and_text():
    ex = trajectory_explorer("rosenbrock", steps=30)
    bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"}
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view == {"model_id": ex.box.model_id, "version_major": 2, "version_minor": 0}
    assert ex.output in ex.box.children
    img = _decode(bundle["image/png"])
    assert img.width > 300 and img.height > 200
    assert len(np.unique(np.asarray(img.convert("L")))) > 10  # a drawing, not a blank canvas
    assert "rosenbrock" in bundle["text/plain"]
    assert set(ex._repr_mimebundle_(include=["image/png"])) == {"image/png"}
    assert "image/png" not in ex._repr_mimebundle_(exclude=["image/png"])


def test_changing_a_control_redraws():
    ex = trajectory_explorer("quadratic", optimizers=("SGD", "Adam"), steps=30)
    before = ex.output.outputs
    assert before[0]["data"]["image/png"] == ex.png
    ex.controls["lr"].value = 0.01
    after = ex.output.outputs
    assert after != before and after[0]["output_type"] == "display_data"
    assert after[0]["data"]["image/png"] == ex._repr_mimebundle_()["image/png"]
    ex.controls["names"].value = ("Momentum", "RMSprop", "Adagrad")
    ex.controls["beta2"].value = 0.95
    assert ex.output.outputs[0]["output_type"] == "display_data"
    ex.controls["names"].value = ("Nesterov",)
    ex.controls["momentum"].value = 0.0  # Nesterov without momentum: plain SGD, not an error
    assert ex.output.outputs[0]["output_type"] == "display_data"
    assert plt.get_fignums() == []  # figures are drawn without pyplot: nothing leaks


def test_errors_during_a_live_update_show_in_the_output():
    def draw(n: int) -> Figure:
        if n < 0:
            raise RuntimeError("negative n")
        fig = Figure()
        fig.add_subplot().plot(range(n))
        return fig

    ex = Explorer({"n": W.IntSlider(value=3, min=-5, max=5)}, draw, "test")
    ex.controls["n"].value = -1
    assert "negative n" in ex.output.outputs[0]["text"]


def test_explorer_rejects_bad_names():
    with pytest.raises(ValueError, match="unknown optimizer 'Lion'"):
        trajectory_explorer(optimizers=("SGD", "Lion"))
    with pytest.raises(ValueError, match="unknown objective"):
        trajectory_explorer("himmelblau")


def test_plot_trajectories_figure_displays_itself_as_png():
    from dlkit.widgets import plot_trajectories, run_trajectory

    fig = plot_trajectories("quadratic", {"SGD": run_trajectory("quadratic", "SGD", lr=0.05, steps=5)})
    assert fig._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")
