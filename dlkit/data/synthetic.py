"""Synthetic image sets that need no files: ``"shapes"``.

Circles, squares, triangles and crosses on random colours, balanced over the classes and
deterministic for ``(split, seed, n, size)``. Used in chapter 00 (the smoke profile) and
wherever a test or a quick run needs images without a download.
"""

from __future__ import annotations

import numpy as np

from dlkit.data.imageset import SPLITS

__all__ = ["SHAPES_CLASSES"]

SHAPES_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
_SHAPES_DEFAULT_SIZES = {"train": 4000, "test": 1000}


def _shapes(split: str, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Seeding from (seed, split) keeps train and test different for one seed.
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    labels = rng.permutation(np.arange(n, dtype=np.int64) % len(SHAPES_CLASSES))
    r = rng.uniform(0.2, 0.4, n) * size  # half-extent of the shape
    cx = rng.uniform(r, size - r)
    cy = rng.uniform(r, size - r)
    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    mask = np.empty((n, size, size), dtype=bool)
    for k in range(len(SHAPES_CLASSES)):
        sel = labels == k
        dx = np.abs(grid[None, None, :] - cx[sel, None, None].astype(np.float32))
        dy = grid[None, :, None] - cy[sel, None, None].astype(np.float32)  # signed: y grows downwards
        half = r[sel, None, None].astype(np.float32)
        # Sizes are chosen so the four shapes cover similar areas (no "brightness" shortcut).
        if k == 0:  # circle
            mask[sel] = dx**2 + dy**2 <= (0.9 * half) ** 2
        elif k == 1:  # square
            mask[sel] = (dx <= 0.8 * half) & (np.abs(dy) <= 0.8 * half)
        elif k == 2:  # triangle, apex up
            mask[sel] = (np.abs(dy) <= half) & (dx <= (dy + half) / 2)
        else:  # cross
            bar = 0.3 * half
            mask[sel] = ((dx <= bar) & (np.abs(dy) <= half)) | ((np.abs(dy) <= bar) & (dx <= half))
    # One colour from [0, 100] and one from [155, 255] per channel keeps
    # shape and background at least 55 levels apart in every channel.
    dark = rng.uniform(0, 100, (n, 3, 1, 1)).astype(np.float32)
    light = rng.uniform(155, 255, (n, 3, 1, 1)).astype(np.float32)
    light_shape = rng.random(n)[:, None, None, None] < 0.5
    fg = np.where(light_shape, light, dark)
    bg = np.where(light_shape, dark, light)
    img = np.where(mask[:, None], fg, bg)
    img += rng.standard_normal(img.shape, dtype=np.float32) * 6.0
    return np.rint(np.clip(img, 0, 255)).astype(np.uint8), labels

