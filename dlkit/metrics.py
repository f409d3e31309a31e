"""Classification metrics written from their definitions.

Each metric returns the same numbers as scikit-learn (the tests check it). Chapter 01 uses
:func:`accuracy` and :func:`confusion_matrix`; chapter 07 derives the rest. This module holds
pure metrics only and imports nothing else from ``dlkit``: k-fold cross-validation trains
models, so it lives with the training loop in :mod:`dlkit.train.cv`. Chapter 07 still reads
``from dlkit.metrics import cross_validate``: the module-level :func:`__getattr__` below hands
out ``cross_validate`` and ``CVResult`` from there when asked, so importing this module never
imports the loop (no import circle).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["accuracy", "confusion_matrix", "precision_recall_f1"]

_MOVED = {"cross_validate": "dlkit.train.cv", "CVResult": "dlkit.train.cv"}

_AVERAGES = ("macro", "micro", "weighted", None)

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


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # zero_division=0, as in scikit-learn: a class never predicted has precision 0, not nan.
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))


def precision_recall_f1(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    num_classes: int,
    average: str | None = "macro",
) -> tuple[Any, Any, Any]:
    """Precision, recall and F1 score from the confusion matrix.

    For class k with true positives TP, false positives FP and false negatives FN:
    precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2·TP / (2·TP + FP + FN) (the
    harmonic mean of the two). A ratio whose denominator is 0 counts as 0. Every class in
    ``range(num_classes)`` is included, also those absent from ``y_true`` or ``y_pred``: the
    numbers equal scikit-learn's ``precision_recall_fscore_support(y_true, y_pred,
    labels=range(num_classes), average=average, zero_division=0)``. Used in chapter 07.

    Args:
        y_true: True class indices in ``[0, num_classes)``.
        y_pred: Predicted class indices in ``[0, num_classes)``.
        num_classes: Number of classes K.
        average: ``"macro"`` (unweighted mean of the per-class scores: every class counts the
            same), ``"micro"`` (scores of the summed TP, FP, FN over classes: equal to accuracy
            when every label is in range), ``"weighted"`` (mean weighted by each class's number
            of true examples) or ``None`` (per-class scores).

    Returns:
        ``(precision, recall, f1)``: three floats, or with ``average=None`` three float64
        tensors of length K.

    Raises:
        ValueError: If ``average`` is not one of the names above, or the inputs are invalid
            (see :func:`confusion_matrix`).
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {list(_AVERAGES)}, got {average!r}")
    cm = confusion_matrix(y_true, y_pred, num_classes).double()
    tp = cm.diagonal()
    predicted = cm.sum(dim=0)  # TP + FP, per class
    actual = cm.sum(dim=1)  # TP + FN, per class (the support)
    if average == "micro":
        tp, predicted, actual = tp.sum(), predicted.sum(), actual.sum()
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, actual)
    f1 = _safe_div(2 * tp, predicted + actual)
    if average is None:
        return precision, recall, f1
    if average == "macro":
        return precision.mean().item(), recall.mean().item(), f1.mean().item()
    if average == "weighted":
        total = actual.sum()
        if total == 0:
            return 0.0, 0.0, 0.0
        w = actual / total
        return (w * precision).sum().item(), (w * recall).sum().item(), (w * f1).sum().item()
    return precision.item(), recall.item(), f1.item()


def __getattr__(name: str) -> Any:
    """``cross_validate`` and ``CVResult`` moved to :mod:`dlkit.train.cv`; still served here.

    Python calls this only for names the module does not define (PEP 562), so the training
    loop is imported on first use of the alias, never when ``dlkit.metrics`` is imported.
    """
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
