"""Classification metrics written from their definitions.

Each function returns the same numbers as scikit-learn (the tests check it). Chapter 01 uses
:func:`accuracy` and :func:`confusion_matrix`; chapter 07 derives the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["accuracy", "confusion_matrix"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[int]


def _as_labels(values: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    if t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class indices, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    return t.long().cpu()


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {len(t)} and {len(p)}")
    if len(t) == 0:
        raise ValueError("y_true and y_pred are empty")
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of predictions equal to the true class.

    Used in chapter 01 and chapter 07.

    Args:
        y_true: True class indices, length N.
        y_pred: Predicted class indices, length N.

    Returns:
        A float in ``[0, 1]``.
    """
    t, p = _pair(y_true, y_pred)
    return (t == p).double().mean().item()


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> torch.Tensor:
    """Count matrix ``C`` with ``C[i, j]`` = number of examples of true class i predicted as j.

    Rows are true classes, as in scikit-learn. Used in chapter 01 and chapter 07.

    Args:
        y_true: True class indices in ``[0, num_classes)``.
        y_pred: Predicted class indices in ``[0, num_classes)``.
        num_classes: Number of classes K.

    Returns:
        An int64 tensor of shape K×K.

    Raises:
        ValueError: If the inputs differ in length or hold indices outside ``[0, num_classes)``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    t, p = _pair(y_true, y_pred)
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.min() < 0 or v.max() >= num_classes:
            raise ValueError(
                f"{name} holds values in [{v.min().item()}, {v.max().item()}], "
                f"expected class indices in [0, {num_classes})"
            )
    # Each (true, pred) pair becomes one flat index; counting them fills the matrix at once.
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)
