"""Stratified k-fold cross-validation of a model trained with :func:`dlkit.train.fit`.

Used in chapter 07, which reads it as ``dlkit.metrics.cross_validate`` (an alias kept there).
It lives here, beside the loop it runs, so that :mod:`dlkit.metrics` stays pure metrics and
imports nothing that trains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from dlkit.data import make_loader
from dlkit.metrics import _as_labels, precision_recall_f1
from dlkit.train.inference import evaluate, predict
from dlkit.train.loop import fit

__all__ = ["CVResult", "cross_validate"]


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
