"""The :class:`ImageSet` container and the canonical order of a labelled image set.

Used in chapter 01 (quickstart) and in every chapter that loads data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

__all__ = ["ImageSet", "SPLITS", "canonical_order", "Index", "PathLike"]

#: The splits every named image set has.
SPLITS: tuple[str, ...] = ("train", "test")

PathLike = Union[str, "os.PathLike[str]"]
Index = Union[int, slice, Sequence[int], np.ndarray, torch.Tensor]


@dataclass(frozen=True, eq=False, repr=False)
class ImageSet:
    """A labelled set of ``uint8`` images, validated on construction.

    Used in chapter 01 (quickstart) and in every chapter that loads data.

    Attributes:
        images: ``uint8`` tensor of shape ``N x C x H x W``.
        labels: ``int64`` tensor of shape ``N`` with values in
            ``[0, len(classes))``.
        classes: Class names; ``classes[k]`` names label ``k``.
        name: Dataset name, e.g. ``"cifar10"``.
        split: ``"train"`` or ``"test"`` (free text for hand-made sets).

    Raises:
        TypeError: If a field has the wrong type or dtype.
        ValueError: If shapes disagree or a label is out of range.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    split: str

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dtype != torch.uint8:
            raise TypeError(f"images must have dtype torch.uint8, got {images.dtype}")
        if images.dim() != 4:
            raise ValueError(
                f"images must be 4-D (N x C x H x W), got shape {tuple(images.shape)}"
            )
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.dtype != torch.int64:
            raise TypeError(f"labels must have dtype torch.int64, got {labels.dtype}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels must be 1-D with N={images.shape[0]} entries (one per image), "
                f"got shape {tuple(labels.shape)}"
            )
        if isinstance(self.classes, str) or not all(isinstance(c, str) for c in self.classes):
            raise TypeError(f"classes must be a list of str, got {self.classes!r}")
        if len(self.classes) == 0:
            raise ValueError("classes must name at least one class, got an empty list")
        # Frozen dataclass: store a private list so callers' lists can't alias it.
        object.__setattr__(self, "classes", list(self.classes))
        if labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= len(self.classes):
                raise ValueError(
                    f"label values must be in [0, {len(self.classes)}) for "
                    f"{len(self.classes)} classes, got values in [{lo}, {hi}]"
                )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: Index) -> tuple[torch.Tensor, int] | ImageSet:
        """Return ``(image, label)`` for an integer, a new :class:`ImageSet` otherwise.

        Args:
            index: An int (also a numpy integer or 0-d tensor), a slice, a
                sequence of ints, or an integer/boolean index tensor or array.

        Returns:
            ``(image C x H x W uint8 tensor, int label)`` for an integer index,
            else the selected images as a new :class:`ImageSet`.

        Raises:
            IndexError: If an integer index is out of range.
        """
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            return self.images[index], int(self.labels[index])
        if isinstance(index, torch.Tensor) and index.dim() == 0 and not index.is_floating_point():
            i = int(index)
            return self.images[i], int(self.labels[i])
        return self.subset(index)

    def subset(self, indices: Index) -> ImageSet:
        """Return the images selected by ``indices`` as a new :class:`ImageSet`.

        Used in chapter 02 (data) to take small training subsets.

        Args:
            indices: A slice, a sequence of ints, or an integer/boolean index
                tensor or array.

        Returns:
            A new :class:`ImageSet` with the same classes, name and split.
            Slices share memory with this set; index lists copy.
        """
        if not isinstance(indices, (slice, torch.Tensor)):
            indices = torch.as_tensor(np.asarray(indices))
            if indices.numel() == 0:
                indices = indices.long()
        return ImageSet(self.images[indices], self.labels[indices], self.classes, self.name, self.split)

    def class_counts(self) -> list[int]:
        """Return the number of images of each class, in class order."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def summary(self) -> str:
        """Return a short, stable multi-line description (used in notebook outputs).

        Used in chapter 01 (quickstart).

        Returns:
            Name, split, number of images, image shape, dtype, number of
            classes and the count of every class, one per line.
        """
        c, h, w = self.images.shape[1:]
        dtype = str(self.images.dtype).replace("torch.", "")
        width = max(len(name) for name in self.classes)
        lines = [
            f"ImageSet {self.name} ({self.split})",
            f"  images:  {len(self)}",
            f"  shape:   {c}x{h}x{w} (C x H x W)",
            f"  dtype:   {dtype}",
            f"  classes: {len(self.classes)}",
            "  per-class counts:",
        ]
        lines += [f"    {name:<{width}}  {n}" for name, n in zip(self.classes, self.class_counts())]
        return "\n".join(lines)

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape[1:])
        return (
            f"ImageSet(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape={shape}, classes={len(self.classes)})"
        )



def canonical_order(images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Return the permutation that puts images into the canonical order.

    The canonical order sorts by label, then by the raw bytes of each image
    (in the layout given, ``C x H x W`` for :class:`ImageSet`), compared
    lexicographically; the sort is stable. :func:`load` applies it so the same
    data from an ``.npz`` file or from torchvision's files gives identical
    tensors. Used in chapter 02 (data).

    Args:
        images: ``uint8`` array or tensor of shape ``N x ...``.
        labels: Integer array or tensor of shape ``N``.

    Returns:
        An ``int64`` tensor ``perm`` such that ``images[perm]`` is canonical.

    Raises:
        ValueError: If the images are not ``uint8`` or the lengths differ.
    """
    x = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if x.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {x.dtype}")
    if y.ndim != 1 or x.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"expected images N x ... and labels of shape (N,), got {x.shape} and {y.shape}"
        )
    n = x.shape[0]
    row_bytes = int(np.prod(x.shape[1:], dtype=np.int64))
    if n == 0 or row_bytes == 0:
        return torch.from_numpy(np.argsort(y, kind="stable").astype(np.int64))
    # One opaque "void" scalar per image: numpy compares these with memcmp,
    # i.e. lexicographically by byte, which is fast even for 50,000 images.
    rows = np.ascontiguousarray(x.reshape(n, row_bytes))
    keys = rows.view(np.dtype((np.void, row_bytes))).ravel()
    by_bytes = np.argsort(keys, kind="stable")
    order = by_bytes[np.argsort(y[by_bytes], kind="stable")]
    return torch.from_numpy(order.astype(np.int64))
