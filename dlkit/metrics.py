"""Classification metrics written from their definitions, and k-fold cross-validation.

Each metric returns the same numbers as scikit-learn (the tests check it). Chapter 01 uses
:func:`accuracy` and :func:`confusion_matrix`; chapter 07 derives the rest and estimates a
model's accuracy with :func:`cross_validate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["accuracy", "confusion_matrix", "precision_recall_f1", "CVResult", "cross_validate"]

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


@dataclasses.dataclass
class CVResult:
    """Scores of a k-fold cross-validation, returned by :func:`cross_validate`.

    ``scores`` maps a metric name (``"accuracy"``, ``"macro_f1"``, ``"loss"``) to its value on
    each held-out fold, in fold order.
    """

    scores: dict[str, list[float]]

    def mean(self, metric: str = "accuracy") -> float:
        """Mean of ``metric`` over the folds."""
        return float(np.mean(self._column(metric)))

    def std(self, metric: str = "accuracy") -> float:
        """Sample standard deviation (ddof=1) of ``metric`` over the folds."""
        values = self._column(metric)
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def _column(self, metric: str) -> list[float]:
        if metric not in self.scores:
            raise KeyError(f"no metric {metric!r}; recorded: {sorted(self.scores)}")
        return self.scores[metric]

    def __str__(self) -> str:
        k = len(next(iter(self.scores.values())))
        parts = [f"{m} {self.mean(m):.4f} ± {self.std(m):.4f}" for m in self.scores]
        return f"{k}-fold CV: " + ", ".join(parts)


def cross_validate(
    model_factory: Callable[[], nn.Module],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    num_folds: int = 5,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    prepare: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    device: torch.device | str | None = None,
    **fit_kwargs: Any,
) -> CVResult:
    """Stratified k-fold cross-validation of a freshly built model per fold.

    The examples are split into ``num_folds`` folds with the same class proportions
    (scikit-learn's ``StratifiedKFold``, shuffled with ``seed``). For each fold a new model from
    ``model_factory`` (seeded with ``seed + fold``) is trained with :func:`dlkit.train.fit` on
    the other folds and scored on the held-out one. Used in chapter 07.

    Args:
        model_factory: Builds an untrained model; called once per fold.
        X: Inputs, first dimension N.
        y: Integer class labels, length N.
        num_folds: Number of folds k (at least 2, at most the size of the smallest class).
        epochs: Training epochs per fold.
        batch_size: Mini-batch size.
        seed: Seeds the fold assignment, the model initialisations and the shuffling.
        prepare: Optional ``prepare(X_train, X_val) -> (X_train, X_val)`` run per fold, for
            preprocessing whose statistics must come from the training folds only (e.g.
            standardisation): computing them on all of X would leak the held-out fold.
        device: Where to train; defaults to :func:`dlkit.env.pick_device`.
        **fit_kwargs: Passed on to :func:`dlkit.train.fit` (``lr``, ``optimizer`` is not
            allowed since each fold needs its own).

    Returns:
        A :class:`CVResult` with per-fold ``accuracy``, ``macro_f1`` and ``loss``.

    Raises:
        ValueError: If shapes disagree, ``num_folds`` is out of range, or ``optimizer`` is
            passed in ``fit_kwargs``.
    """
    from sklearn.model_selection import StratifiedKFold

    from dlkit.data import make_loader
    from dlkit.train import evaluate, fit, predict

    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"X and y must be tensors, got {type(X).__name__} and {type(y).__name__}")
    labels = _as_labels(y, "y")
    if X.shape[0] != labels.shape[0]:
        raise ValueError(f"X and y must have the same length, got {X.shape[0]} and {len(labels)}")
    if len(labels) == 0 or labels.min() < 0:
        raise ValueError("y must hold at least one example and non-negative class indices")
    counts = torch.bincount(labels)
    smallest = int(counts[counts > 0].min())
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or not 2 <= num_folds <= smallest:
        raise ValueError(
            f"num_folds must be an integer in [2, {smallest}] (the size of the smallest class), "
            f"got {num_folds!r}"
        )
    if "optimizer" in fit_kwargs or "scheduler" in fit_kwargs:
        raise ValueError("pass lr (and other fit options) instead of an optimizer or scheduler: "
                         "each fold trains a new model that needs its own")
    fit_kwargs.setdefault("progress", False)
    fit_kwargs.setdefault("verbose", False)
    num_classes = int(labels.max()) + 1
    folds = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    scores: dict[str, list[float]] = {"accuracy": [], "macro_f1": [], "loss": []}
    for fold, (train_idx, val_idx) in enumerate(folds.split(np.zeros(len(labels)), labels.numpy())):
        tr, va = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        X_train, X_val = X[tr], X[va]
        if prepare is not None:
            X_train, X_val = prepare(X_train, X_val)
        torch.manual_seed(seed + fold)
        model = model_factory()
        train_loader = make_loader(X_train, y[tr], batch_size, shuffle=True, seed=seed + fold)
        val_loader = make_loader(X_val, y[va], max(batch_size, 256))
        fit(model, train_loader, epochs=epochs, device=device, **fit_kwargs)
        result = evaluate(model, val_loader, loss_fn=fit_kwargs.get("loss_fn"), device=device)
        pred = predict(model, X_val, device=device).labels
        scores["accuracy"].append(result["accuracy"])
        scores["loss"].append(result["loss"])
        scores["macro_f1"].append(precision_recall_f1(y[va], pred, num_classes, "macro")[2])
    return CVResult(scores)
