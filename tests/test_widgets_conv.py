"""Tests of chapter 04's convolution explorer: the maps are the reference cross-correlation."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from dlkit.widgets import KERNELS, apply_kernel, conv_explorer, demo_image, plot_convolution, to_gray


@pytest.mark.parametrize("name", list(KERNELS))
def test_apply_kernel_is_scipy_cross_correlation_with_zero_padding(name):
    img = torch.rand(9, 11, generator=torch.Generator().manual_seed(0))
    k = KERNELS[name]
    ref = correlate2d(img.double().numpy(), k.double().numpy(), mode="same", boundary="fill")
    np.testing.assert_allclose(apply_kernel(img, k).numpy(), ref, atol=1e-5)
    valid = correlate2d(img.double().numpy(), k.double().numpy(), mode="valid")
    np.testing.assert_allclose(apply_kernel(img, k, padding=0).numpy(), valid, atol=1e-5)
    np.testing.assert_allclose(apply_kernel(img, k, stride=2).numpy(), ref[::2, ::2], atol=1e-5)


def test_kernels_behave_as_named():
    img = demo_image()
    torch.testing.assert_close(apply_kernel(img, KERNELS["identity"]), img)
    flat = torch.full((6, 6), 0.4)
    inner = (slice(1, -1), slice(1, -1))  # away from the zero padding
    for name in ("Sobel x", "Sobel y", "Laplacian"):  # derivatives vanish on a flat image
        assert apply_kernel(flat, KERNELS[name])[inner].abs().max() < 1e-6
    for name in ("box blur", "Gaussian blur", "sharpen"):  # weights sum to 1: flat stays flat
        torch.testing.assert_close(apply_kernel(flat, KERNELS[name])[inner], flat[inner])
    ramp = torch.arange(8.0).repeat(8, 1)  # brightness grows to the right
    assert (apply_kernel(ramp, KERNELS["Sobel x"])[inner] == 8).all()
    assert (apply_kernel(ramp, KERNELS["Sobel y"])[inner] == 0).all()


def test_to_gray_forms():
    rgb = torch.zeros(3, 4, 5, dtype=torch.uint8)
    rgb[1] = 255
    torch.testing.assert_close(to_gray(rgb), torch.full((4, 5), 0.587))
    assert to_gray(torch.rand(1, 4, 5)).shape == (4, 5)
    with pytest.raises(ValueError, match="H×W"):
        to_gray(torch.rand(2, 4, 5))
    with pytest.raises(ValueError, match="2-D"):
        apply_kernel(torch.rand(1, 4, 4), KERNELS["identity"])


def test_plot_convolution_has_three_panels():
    fig = plot_convolution(demo_image(16), KERNELS["sharpen"], stride=2, padding=0)
    assert len(fig.axes) == 4  # three panels and a colour bar
    assert "output 7×7" in fig.axes[2].get_title()


def test_explorer_redraws_with_the_custom_grid():
    images = {"a": torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8), "b": demo_image(12)}
    ex = conv_explorer(images, kernel="custom (the grid)", custom=[0, 0, 0, 0, 1, 0, 0, 0, 0])
    bundle = ex._repr_mimebundle_()
    assert {"image/png", "text/plain"} <= set(bundle)
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    first = ex.png
    ex.controls["w4"].value = -1.0
    assert ex.png != first
    ex.controls["kernel"].value = "Sobel y"
    ex.controls["image"].value = "b"
    ex.controls["stride"].value = 2
    assert ex.output.outputs[0]["output_type"] == "display_data"
    with pytest.raises(ValueError, match="unknown kernel"):
        conv_explorer(kernel="blur")
    with pytest.raises(ValueError, match="nine"):
        conv_explorer(custom=[1, 2, 3])
