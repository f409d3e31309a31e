"""Tests of chapter 03's exercise checks: right answers pass, each typical mistake gets its hint."""

from __future__ import annotations

import torch

from dlkit.exercises import check_batch_flip, check_cutmix_weight, check_flip_boxes


def test_flip_boxes_accepts_the_mirror_and_names_each_mistake():
    def right(boxes, width):
        x0, y0, x1, y1 = boxes.unbind(1)
        return torch.stack([width - x1, y0, width - x0, y1], 1)

    def unswapped(boxes, width):
        x0, y0, x1, y1 = boxes.unbind(1)
        return torch.stack([width - x0, y0, width - x1, y1], 1)

    def off_by_one(boxes, width):
        return right(boxes, width - 1)

    assert check_flip_boxes(right)
    fb = check_flip_boxes(unswapped)
    assert not fb and "x0 > x1" in fb.message
    fb = check_flip_boxes(off_by_one)
    assert not fb and "not pixel indices" in fb.hint and "W − x" not in fb.hint
    fb = check_flip_boxes(lambda b, w: b)
    assert not fb and "did not change" in fb.message
    fb = check_flip_boxes(lambda b, w: 1 / 0)
    assert not fb and "ZeroDivisionError" in fb.message
    assert not check_flip_boxes(lambda b, w: b[:2])


def test_batch_flip_accepts_the_masked_flip_and_names_each_mistake():
    def right(X, flip):
        return torch.where(flip[:, None, None, None], X.flip(-1), X)

    assert check_batch_flip(right)
    assert "every image" in check_batch_flip(lambda X, f: X.flip(-1)).message
    assert "upside down" in check_batch_flip(
        lambda X, f: torch.where(f[:, None, None, None], X.flip(-2), X)).message
    assert "inverted" in check_batch_flip(
        lambda X, f: torch.where(~f[:, None, None, None], X.flip(-1), X)).hint
    assert "dtype" in check_batch_flip(lambda X, f: right(X, f).float()).message

    def in_place(X, flip):
        X[flip] = X[flip].flip(-1)
        return X

    assert "in place" in check_batch_flip(in_place).message
    assert not check_batch_flip(lambda X, f: X[f])


def test_cutmix_weight_accepts_the_own_share_and_names_each_mistake():
    def right(box, H, W):
        x0, y0, x1, y1 = box
        return 1 - (x1 - x0) * (y1 - y0) / (H * W)

    assert check_cutmix_weight(right)
    assert check_cutmix_weight(lambda b, H, W: torch.tensor(right(b, H, W)))
    assert "pasted fraction" in check_cutmix_weight(lambda b, H, W: 1 - right(b, H, W)).message
    plus_one = lambda b, H, W: 1 - (b[2] - b[0] + 1) * (b[3] - b[1] + 1) / (H * W)  # noqa: E731
    assert "one pixel too many" in check_cutmix_weight(plus_one).message
    assert not check_cutmix_weight(lambda b, H, W: "0.5")
    assert not check_cutmix_weight(lambda b, H, W: 0.5)
