"""From an :class:`~dlkit.data.ImageSet` to a model's input: normalised tensors and batch loaders.

* :func:`to_tensors` (chapters 01 and 02): ``uint8`` images to normalised ``float32``;
* :func:`make_loader` (chapter 03): a DataLoader that fetches whole batches at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from dlkit.data._checks import _check_count
from dlkit.data.imageset import ImageSet

__all__ = ["to_tensors", "make_loader"]


def _per_channel(value: Any, c: int, what: str, default: float) -> torch.Tensor:
    if value is None:
        return torch.full((c,), default, dtype=torch.float32)
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() != c:
        raise ValueError(f"{what} must have one value per channel (C={c}), got {t.numel()} values")
    return t


def to_tensors(
    ds: ImageSet,
    mean: Sequence[float] | torch.Tensor | None = None,
    std: Sequence[float] | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn an :class:`ImageSet` into a normalised float32 tensor and its labels.

    ``X = (images / 255 - mean) / std`` per channel. Used in chapter 01
    (quickstart) and chapter 02 (data).

    Args:
        ds: The images to convert.
        mean: Per-channel means in [0, 1] units (length ``C``); default 0.
        std: Per-channel stds (length ``C``, all > 0); default 1, so with
            neither given the images are only scaled to [0, 1].

    Returns:
        ``(X, y)``: float32 ``N x C x H x W`` and int64 ``N`` (a copy).

    Raises:
        ValueError: If ``mean`` or ``std`` does not have ``C`` values, or a
            std is not positive.
    """
    c = ds.images.shape[1]
    m = _per_channel(mean, c, "mean", 0.0)
    s = _per_channel(std, c, "std", 1.0)
    if not bool((s > 0).all()):
        raise ValueError(f"std values must be > 0, got {s.tolist()}")
    x = ds.images.to(torch.float32).div_(255.0)
    # In place: a float copy of CIFAR-10 is already 600 MB.
    x.sub_(m.view(1, c, 1, 1)).div_(s.view(1, c, 1, 1))
    return x, ds.labels.clone()


def make_loader(
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int | None = None,
) -> DataLoader:
    """A :class:`~torch.utils.data.DataLoader` that fetches whole batches at once.

    The sampler yields lists of indices and the dataset is indexed with the
    whole list, so each step is one fancy-indexing operation instead of
    ``batch_size`` item fetches plus a collate: much faster for in-memory
    tensors. ``len(loader)`` is the number of batches. Used in chapter 03
    (training loop).

    Args:
        X: Inputs, first dimension ``N``.
        y: Targets, first dimension ``N``.
        batch_size: Items per batch (>= 1).
        shuffle: Reshuffle every epoch.
        drop_last: Drop the last incomplete batch.
        seed: If given, shuffling is deterministic: a new loader with the same
            seed yields the same sequence of epochs.

    Returns:
        A DataLoader yielding ``(X_batch, y_batch)`` tuples.

    Raises:
        ValueError: If ``X`` and ``y`` differ in length or ``batch_size`` < 1.
        TypeError: If ``X`` or ``y`` is not a tensor or ``batch_size`` not an int.
    """
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"X and y must be tensors, got {type(X).__name__} and {type(y).__name__}")
    if X.dim() == 0 or y.dim() == 0 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y must have the same length, got shapes {tuple(X.shape)} and {tuple(y.shape)}"
        )
    batch_size = _check_count(batch_size, "batch_size", 1, 2**62)
    ds = TensorDataset(X, y)
    if shuffle:
        generator = None
        if seed is not None:
            generator = torch.Generator()
            generator.manual_seed(int(seed))
        base = RandomSampler(ds, generator=generator)
    else:
        base = SequentialSampler(ds)
    sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(ds, batch_size=None, sampler=sampler)

