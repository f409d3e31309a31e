"""Tests for dlkit.plot: image grids, learning curves and confusion matrices."""

from __future__ import annotations

import math

import matplotlib.colors as mcolors
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from dlkit.plot import plot_confusion_matrix, plot_history, show_images
from dlkit.train.history import History  # the record alone, without the loop


def _images(n: int = 5, c: int = 3, hw: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, hw, hw), dtype=torch.uint8, generator=g)


def _shown(fig: Figure) -> list[np.ndarray]:
    """The arrays drawn by imshow, one per axis that shows an image."""
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]


def _history(n: int = 3, val: bool = True) -> History:
    nan = [math.nan] * n
    return History(
        epoch=list(range(1, n + 1)),
        train_loss=[1.0 / e for e in range(1, n + 1)],
        train_acc=[0.5 + 0.1 * e for e in range(n)],
        val_loss=[1.2 / e for e in range(1, n + 1)] if val else nan,
        val_acc=[0.4 + 0.1 * e for e in range(n)] if val else nan,
        lr=[1e-3] * n, time=[1.0] * n, images_per_s=[100.0] * n,
    )


# --------------------------------------------------------------------------- #
# show_images
# --------------------------------------------------------------------------- #
def test_show_images_grid():
    fig = show_images(_images(10), ncols=4, title="Some images")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 12  # 3 rows × 4 columns
    assert sum(bool(ax.images) for ax in fig.axes) == 10
    assert fig._suptitle is not None and fig._suptitle.get_text() == "Some images"
    first = _shown(fig)[0]
    assert first.shape == (6, 6, 3)


def test_show_images_fewer_than_ncols():
    fig = show_images(_images(3), ncols=8)
    assert len(fig.axes) == 3


def test_show_images_titles_from_classes():
    fig = show_images(_images(3), labels=[2, 0, 1], classes=["cat", "dog", "emu"])
    assert [ax.get_title() for ax in fig.axes] == ["emu", "cat", "dog"]
    fig = show_images(_images(2), labels=torch.tensor([4, 7]))
    assert [ax.get_title() for ax in fig.axes] == ["4", "7"]


def _rgb(ax):
    return mcolors.to_rgb(ax.title.get_color())


def test_show_images_marks_right_green_and_wrong_red():
    classes = ["cat", "dog", "emu"]
    fig = show_images(_images(3), labels=[0, 1, 2], classes=classes, predictions=torch.tensor([0, 2, 2]))
    right, wrong, right2 = fig.axes
    assert right.get_title() == "cat\n(cat)"
    assert wrong.get_title() == "emu\n(dog)"
    r, g, _ = _rgb(right)
    assert g > r  # green
    r, g, _ = _rgb(wrong)
    assert r > g  # red
    assert _rgb(right2) == _rgb(right)
    assert wrong.title.get_fontweight() == "bold"


def test_show_images_uint8_float_and_normalized_look_the_same():
    u8 = _images(4)
    f = u8.float() / 255
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    normed = (f - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    a = _shown(show_images(u8))
    b = _shown(show_images(f))
    c = _shown(show_images(normed, mean=mean, std=std))
    d = _shown(show_images(normed))  # without mean/std the picture differs (clipped)
    assert len(a) == len(b) == len(c) == 4
    for x, y, z in zip(a, b, c):
        np.testing.assert_allclose(x, y, atol=1e-6)
        np.testing.assert_allclose(x, z, atol=1e-5)
        assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(a[0], u8[0].permute(1, 2, 0).numpy() / 255, atol=1e-6)
    assert not np.allclose(a[0], d[0], atol=1e-3)


def test_show_images_float_out_of_range_is_clipped():
    x = torch.tensor([-1.0, 0.5, 2.0]).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    shown = _shown(show_images(x))[0]
    np.testing.assert_allclose(shown[0, :, 0], [0.0, 0.5, 1.0])


@pytest.mark.parametrize("images", [
    torch.full((2, 1, 5, 5), 200, dtype=torch.uint8),
    torch.full((2, 5, 5), 200, dtype=torch.uint8),  # N×H×W is grayscale too
])
def test_show_images_grayscale(images):
    fig = show_images(images, labels=[0, 1])
    shown = _shown(fig)
    assert len(shown) == 2
    im = fig.axes[0].images[0]
    assert shown[0].shape == (5, 5)
    np.testing.assert_allclose(shown[0], 200 / 255, atol=1e-6)
    assert im.get_cmap().name == "gray"
    assert im.get_clim() == (0.0, 1.0)


def test_show_images_grayscale_brightness_is_absolute():
    # A uniform image must keep its brightness: white stays white, not contrast-stretched.
    white = torch.full((1, 1, 4, 4), 255, dtype=torch.uint8)
    dark = torch.full((1, 1, 4, 4), 50, dtype=torch.uint8)
    w = show_images(white).axes[0].images[0]
    d = show_images(dark).axes[0].images[0]
    np.testing.assert_allclose(w.to_rgba(w.get_array())[0, 0, :3], [1.0, 1.0, 1.0])
    assert d.to_rgba(d.get_array())[0, 0, 0] == pytest.approx(50 / 255, abs=0.01)


@pytest.mark.parametrize("images, fragment", [
    (torch.zeros(2, 2, 4, 4), r"C = 1 or 3, got \(2, 2, 4, 4\)"),
    (torch.zeros(4, 4), r"N×C×H×W.*got \(4, 4\)"),
    (torch.zeros(1, 2, 3, 4, 4), r"got \(1, 2, 3, 4, 4\)"),
])
def test_show_images_bad_shapes(images, fragment):
    with pytest.raises(ValueError, match=fragment):
        show_images(images)


def test_show_images_other_errors():
    with pytest.raises(TypeError, match="expected uint8 or floating-point images, got torch.int64"):
        show_images(torch.zeros(2, 3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="no images to show"):
        show_images(torch.zeros(0, 3, 4, 4))
    with pytest.raises(ValueError, match="labels has 2 entries for 3 images"):
        show_images(_images(3), labels=[0, 1])
    with pytest.raises(ValueError, match="predictions has 4 entries for 3 images"):
        show_images(_images(3), labels=[0, 1, 2], predictions=[0, 1, 2, 0])
    with pytest.raises(ValueError, match="predictions need labels"):
        show_images(_images(3), predictions=[0, 1, 2])


# --------------------------------------------------------------------------- #
# plot_history
# --------------------------------------------------------------------------- #
def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_plot_history_train_and_val():
    h = _history()
    fig = plot_history(h, title="Run")
    assert len(fig.axes) == 2
    ax_loss, ax_acc = fig.axes
    loss, acc = _lines(ax_loss), _lines(ax_acc)
    assert set(loss) == set(acc) == {"train", "validation"}
    np.testing.assert_allclose(loss["train"].get_xdata(), h.epoch)
    np.testing.assert_allclose(loss["train"].get_ydata(), h.train_loss)
    np.testing.assert_allclose(loss["validation"].get_ydata(), h.val_loss)
    np.testing.assert_allclose(acc["train"].get_ydata(), [100 * a for a in h.train_acc])
    np.testing.assert_allclose(acc["validation"].get_ydata(), [100 * a for a in h.val_acc])
    assert ax_acc.get_ylabel() == "accuracy (%)"
    assert ax_loss.get_ylabel() == "loss"
    assert fig._suptitle.get_text() == "Run"
    assert [t.get_text() for t in ax_loss.get_legend().get_texts()] == ["train", "validation"]


def test_plot_history_train_only_when_val_is_nan():
    h = _history(val=False)
    fig = plot_history(h)
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()] == ["train"]
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), [100 * a for a in h.train_acc])


def test_plot_history_empty_raises():
    with pytest.raises(ValueError, match="the history is empty"):
        plot_history(History())


# --------------------------------------------------------------------------- #
# plot_confusion_matrix
# --------------------------------------------------------------------------- #
def _cell_texts(ax, k):
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == k * k
    return np.array(texts).reshape(k, k)


def test_plot_confusion_matrix_row_normalized():
    cm = torch.tensor([[3, 1, 0], [0, 0, 0], [1, 1, 2]])
    fig = plot_confusion_matrix(cm, ["a", "b", "c"])
    ax = fig.axes[0]
    texts = _cell_texts(ax, 3)
    assert texts.tolist() == [["75", "25", "0"], ["0", "0", "0"], ["25", "25", "50"]]
    shown = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shown[0], [75, 25, 0])
    np.testing.assert_allclose(shown[1], [0, 0, 0])  # an empty row does not divide by zero
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert ax.get_title() == "Confusion matrix (row %)"
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    # The darkest cell gets white text, a light one black.
    assert mcolors.to_rgb(ax.texts[0].get_color()) == (1.0, 1.0, 1.0)
    assert mcolors.to_rgb(ax.texts[2].get_color()) == (0.0, 0.0, 0.0)


def test_plot_confusion_matrix_counts():
    cm = np.array([[5, 2], [1, 7]])
    fig = plot_confusion_matrix(cm, ["x", "y"], normalize=False, title="Counts")
    ax = fig.axes[0]
    assert _cell_texts(ax, 2).tolist() == [["5", "2"], ["1", "7"]]
    assert ax.get_title() == "Counts"


@pytest.mark.parametrize("cm", [np.zeros((2, 2)), np.zeros((3, 2)), np.zeros(9)])
def test_plot_confusion_matrix_wrong_shape(cm):
    with pytest.raises(ValueError, match=r"expected a 3×3 matrix for 3 classes, got shape"):
        plot_confusion_matrix(cm, ["a", "b", "c"])


def test_show_grid_tiles_images_with_a_white_border():
    from dlkit.plot import show_grid

    images = torch.zeros(5, 1, 4, 4)
    images[1] = 1.0
    fig = show_grid(images, ncols=3, title="five")
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (2 * 5 - 1, 3 * 5 - 1)  # 2 rows, 3 columns of 4+1 pixels, last border cut
    assert grid[0:4, 0:4].max() == 0 and grid[0:4, 5:9].min() == 1  # image 0 black, image 1 white
    assert grid[4, :].min() == 1 and grid[:, 4].min() == 1  # the borders
    assert grid[5:9, 10:14].min() == 1  # the empty sixth tile stays white
    import matplotlib.pyplot as plt

    plt.close(fig)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        show_grid(torch.zeros(2, 2, 4, 4))
