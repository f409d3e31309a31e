"""Exercise checks of chapter 03 (augmentation)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["check_flip_boxes", "check_batch_flip", "check_cutmix_weight"]


def _run(fn: Callable, *args: object) -> tuple[object, Feedback | None]:
    try:
        return fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args)), None
    except Exception as err:  # the learner's code may fail in any way: explain, don't raise
        return None, _wrong(f"it raised {type(err).__name__}: {err}")


def check_flip_boxes(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> Feedback:
    """Check ``fn(boxes, width)``, the XYXY boxes of an image after a horizontal flip.

    The reference is ``torchvision.transforms.v2.functional.horizontal_flip`` on
    ``tv_tensors.BoundingBoxes``. Used in chapter 03 (augmentation).

    Args:
        fn: The learner's function of K×4 float boxes ``(x0, y0, x1, y1)`` (pixel edges: a box
            around column c alone spans ``[c, c + 1]``) and the image width.

    Returns:
        The :class:`Feedback`.
    """
    boxes = torch.tensor([[3.0, 2.0, 9.0, 5.0], [0.0, 7.0, 1.0, 8.0], [10.5, 0.0, 16.0, 4.25]])
    width = 16
    truth = TF.horizontal_flip(
        tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(10, width))).as_subclass(torch.Tensor)
    got, problem = _run(fn, boxes, width)
    if problem is not None:
        return problem
    if not isinstance(got, torch.Tensor) or got.shape != boxes.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return _wrong(f"expected a tensor of shape {tuple(boxes.shape)}, got {shape}.")
    got = got.float()
    if torch.allclose(got, truth):
        return _right("the mirrored boxes equal torchvision's, left and right edges in order; y is untouched.")
    x0, y0, x1, y1 = boxes.unbind(1)
    if torch.allclose(got, torch.stack([width - x0, y0, width - x1, y1], 1)):
        return _wrong("the boxes have x0 > x1: the left edge became the right one.",
                      "in a mirror image, which of the two old edges ends up on the left?")
    if torch.allclose(got, truth - torch.tensor([1.0, 0.0, 1.0, 0.0])):
        return _wrong("the boxes are one pixel too far left.",
                      "box edges are coordinates between pixels, not pixel indices: where does the "
                      "edge at x = 0 go in a mirror of width W?")
    if torch.allclose(got[:, [0, 2]], boxes[:, [0, 2]]):
        return _wrong("the x coordinates did not change.", "a horizontal flip mirrors x, not y.")
    return _wrong("the boxes differ from torchvision's horizontal flip.",
                  "try one box by hand on squared paper: mirror both of its x edges, then ask which "
                  "edge is now the left one. Edges are coordinates (a box around column c spans "
                  "[c, c + 1]), not pixel indices.")


def check_batch_flip(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check ``fn(X, flip)``: mirror left-right exactly the images of the batch where ``flip`` is True.

    Used in chapter 03 (augmentation).

    Args:
        fn: The learner's function of an N×C×H×W batch and a boolean tensor of length N.

    Returns:
        The :class:`Feedback`.
    """
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8, generator=g)
    flip = torch.tensor([True, False, False, True, True, False])
    original = X.clone()
    truth = torch.where(flip[:, None, None, None], X.flip(-1), X)
    try:
        got = fn(X, flip.clone())
    except Exception as err:
        return _wrong(f"it raised {type(err).__name__}: {err}",
                      "a mask of N values must be reshaped before it can select whole N×C×H×W images.")
    if not torch.equal(X, original):
        return _wrong("it changed the input batch in place.", "return a new tensor; leave X alone.")
    if not isinstance(got, torch.Tensor) or got.shape != X.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return _wrong(f"expected a batch of shape {tuple(X.shape)}, got {shape}.")
    if got.dtype != X.dtype:
        return _wrong(f"the dtype changed from {X.dtype} to {got.dtype}.",
                      "augmentation must keep uint8 images uint8.")
    if torch.equal(got, truth):
        return _right("only the selected images are mirrored, dtype and shape kept.")
    if torch.equal(got, X.flip(-1)):
        return _wrong("every image was flipped.",
                      "use the mask to choose, image by image, between the flipped and the original "
                      "batch, in one tensor operation, without a Python loop.")
    if torch.equal(got, torch.where(flip[:, None, None, None], X.flip(-2), X)):
        return _wrong("the selected images were flipped upside down.",
                      "which dimension of N×C×H×W runs left to right?")
    if torch.equal(got, torch.where(~flip[:, None, None, None], X.flip(-1), X)):
        return _wrong("the images where flip is False were flipped.",
                      "the mask is inverted: True marks the images to mirror.")
    return _wrong("the result differs from mirroring the selected images.")


def check_cutmix_weight(fn: Callable[[tuple[int, int, int, int], int, int], float]) -> Feedback:
    """Check ``fn(box, H, W)``: CutMix's weight of an image's own label after pasting ``box``.

    ``box = (x0, y0, x1, y1)`` in pixel edges is the pasted rectangle; the own label keeps the
    share of the image's pixels that are still its own, measured here by pasting the box into a
    mask. Used in chapter 03 (augmentation).

    Args:
        fn: The learner's function.

    Returns:
        The :class:`Feedback`.
    """
    for box, h, w in (((2, 3, 10, 7), 16, 20), ((0, 0, 32, 32), 32, 32), ((5, 5, 5, 9), 12, 12)):
        x0, y0, x1, y1 = box
        own = torch.ones(h, w, dtype=torch.float64)  # measured: paste the box, count what is left
        own[y0:y1, x0:x1] = 0
        truth = own.mean().item()
        pasted = 1 - truth
        got, problem = _run(fn, box, h, w)
        if problem is not None:
            return problem
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            return _wrong(f"expected a number, got {type(got).__name__}.")
        if math.isclose(got, truth, abs_tol=1e-6):
            continue
        if math.isclose(got, pasted, abs_tol=1e-6):
            return _wrong(f"for box {box} it returned the pasted fraction {got:.4f}.",
                          "that is the weight of the other image's label; the own label keeps 1 − it.")
        if math.isclose(got, 1 - (x1 - x0 + 1) * (y1 - y0 + 1) / (h * w), abs_tol=1e-6):
            return _wrong("it counts one pixel too many in each direction.",
                          "with pixel edges the box is x1 − x0 pixels wide, not x1 − x0 + 1.")
        return _wrong(f"for box {box} in a {h}×{w} image it returned {got}, expected {truth:.4f}.",
                      "the label weights follow the pixels: what share of the image still shows "
                      "the image itself?")
    return _right("the own label keeps the share of pixels not covered by the pasted box.")
