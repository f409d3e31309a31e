"""Tests of chapter 03's explorer and figures (dlkit.widgets.augment)."""

from __future__ import annotations

import base64
import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from dlkit import augment as A
from dlkit.widgets import OPERATIONS, augment_explorer, augment_images, plot_policies, plot_scenes
from dlkit.widgets.augment import plot_augmentations


def _images(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_every_operation_keeps_dtype_and_shape(operation, one_thread):
    X = _images()
    out = augment_images(X, operation, magnitude=0.7, draws=2, seed=1)
    assert out.dtype == torch.uint8 and out.shape == (2, *X.shape)
    assert not torch.equal(out[0], X) or operation.startswith("horizontal flip")


def test_zero_magnitude_is_the_identity_for_geometric_operations():
    X = _images()
    for op in ("crop (padding up to 8 px)", "horizontal flip (p)", "rotation (up to 45°)"):
        assert torch.equal(augment_images(X, op, magnitude=0.0, draws=2)[1], X), op


def test_draws_are_seeded_and_leave_the_global_state_alone():
    X = _images()
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = augment_images(X, "rotation (up to 45°)", 0.8, seed=3)
    assert torch.rand(1) == before  # the global generator was not advanced
    assert torch.equal(a, augment_images(X, "rotation (up to 45°)", 0.8, seed=3))
    assert not torch.equal(a, augment_images(X, "rotation (up to 45°)", 0.8, seed=4))


def test_mixup_rows_are_convex_combinations_of_two_originals():
    X = _images(6)
    out = augment_images(X, "MixUp (α = 2·magnitude)", 0.5, draws=1)[0].float()
    Xf = X.float()
    for i in range(6):  # each output lies on the segment between X[i] and some X[j]
        errors = []
        for j in range(6):
            if j == i:
                continue
            a, b = (Xf[i] - Xf[j]).flatten(), (out[i] - Xf[j]).flatten()
            lam = (a @ b / (a @ a)).clamp(0, 1)
            errors.append((b - lam * a).abs().max().item())
        assert min(errors) <= 1.0  # only rounding to uint8 is left


def test_bad_arguments_raise():
    X = _images()
    with pytest.raises(ValueError, match="unknown operation"):
        augment_images(X, "shear", 0.5)
    with pytest.raises(ValueError, match="magnitude"):
        augment_images(X, "rotation (up to 45°)", 1.5)
    with pytest.raises(ValueError, match="uint8 images"):
        augment_explorer(X.float())


def test_figures_have_one_row_per_policy_and_draw():
    X = _images()
    fig = plot_policies(X, ["standard", "strong"])
    assert len(fig.axes) == 3 * 4
    fig = plot_augmentations(X, "colour jitter", 0.5, draws=2)
    assert len(fig.axes) == 3 * 4
    assert plt.get_fignums() == []  # drawn outside pyplot


def test_scene_figure_draws_every_box():
    img, boxes, masks = A.synthetic_scene(64, 0)
    fig = plot_scenes({"a": (img, boxes, masks), "b": (img, boxes, masks)})
    assert len(fig.axes) == 2 and all(len(ax.patches) == 2 for ax in fig.axes)
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_explorer_shows_a_png_and_redraws_on_change(one_thread):
    ex = augment_explorer(_images(6), draws=2)
    bundle = ex._repr_mimebundle_()
    assert {"application/vnd.jupyter.widget-view+json", "image/png"} <= set(bundle)
    img = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    assert img.width > 300 and len(np.unique(np.asarray(img.convert("L")))) > 20
    before = ex.png
    ex.controls["operation"].value = "CutMix (α = 2·magnitude)"
    assert ex.png != before and ex.output.outputs[0]["output_type"] == "display_data"
    ex.controls["seed"].value = 7
    ex.controls["draws"].value = 1
    assert ex.output.outputs[0]["output_type"] == "display_data"
