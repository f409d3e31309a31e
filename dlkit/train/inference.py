"""Running a trained classifier over a loader: :func:`evaluate` and :func:`predict`.

Used in chapter 01 (quickstart) and every chapter that trains; :func:`dlkit.train.fit` calls
:func:`evaluate` after each epoch. The batch helpers here are shared by the loop and its
callbacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from torch import nn

from dlkit._util import eval_mode
from dlkit.env import pick_device

__all__ = ["Prediction", "evaluate", "predict", "evaluate_with_predictions"]


class Prediction(NamedTuple):
    """What :func:`predict` returns: predicted class indices and class probabilities (on CPU)."""

    labels: torch.Tensor
    probs: torch.Tensor


def as_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks one with :func:`dlkit.env.pick_device`."""
    return pick_device() if device is None else torch.device(device)


def split_batch(batch: Any) -> tuple[Any, Any]:
    """A batch as ``(X, y)``; ``y`` is ``None`` for a batch of inputs alone.

    Raises:
        TypeError: If the batch is neither a tensor nor a tuple or list of one or more items.
    """
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, (tuple, list)) and len(batch) == 1:
        return batch[0], None
    raise TypeError(
        "expected each batch to be a tensor X or a pair (X, y) of tensors, "
        f"got {type(batch).__name__}"
    )


def class_targets(y: torch.Tensor) -> torch.Tensor:
    """Class indices of ``y``: soft labels (mixup, N×K) become their argmax."""
    return y.argmax(dim=1) if y.ndim == 2 else y


def check_outputs(out: torch.Tensor, y: torch.Tensor) -> None:
    """Raise a ``ValueError`` that explains the usual cause if ``out`` does not fit ``y``.

    Class targets (integers, or N×K soft labels) need N×K scores; real-valued targets of one
    dimension (a regression, a rating) need outputs with the same first dimension.
    """
    regression = y.is_floating_point() and y.ndim == 1
    if out.ndim == 0 or out.shape[0] != y.shape[0] or (not regression and out.ndim != 2):
        raise ValueError(
            f"the model returned outputs of shape {tuple(out.shape)} for a batch of {y.shape[0]} "
            f"examples; expected ({y.shape[0]}, num_classes). A first dimension that differs from "
            "the batch size usually means a reshape such as x.view(-1, n) with the wrong n: "
            "use x.flatten(1) and derive n from the layer shapes."
        )


def evaluate_with_predictions(
    model: nn.Module,
    loader: Iterable,
    loss_fn: nn.Module | None = None,
    device: torch.device | str | None = None,
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor, int]:
    """Like :func:`evaluate`, and also the predicted and true classes of the same pass.

    Predictions and labels come from one pass over ``loader``, so they stay paired even when
    the loader shuffles (a second pass would see another order). Used by the TensorBoard
    callback's confusion matrix (chapter 07).

    Returns:
        ``(metrics, predicted, true, num_classes)``: the :func:`evaluate` dict, two int64 CPU
        tensors, and the number of classes (the width of the model's output).
    """
    return _pass(model, loader, loss_fn, device, keep=True)


def evaluate(
    model: nn.Module,
    loader: Iterable,
    loss_fn: nn.Module | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Average loss and accuracy of ``model`` over ``loader``, without tracking gradients.

    Used in chapter 01 and every training chapter after it.

    Args:
        model: The network; it is put in eval mode and its previous mode restored afterwards.
        loader: Yields ``(X, y)`` batches; ``y`` holds class indices (or N×K soft labels).
        loss_fn: A loss with ``reduction="mean"``; defaults to ``nn.CrossEntropyLoss()``.
        device: Where to compute; defaults to :func:`dlkit.env.pick_device`.

    Returns:
        ``{"loss": mean loss per example, "accuracy": fraction correct}``.

    Raises:
        ValueError: If the loader yields no examples or the outputs do not match the targets.
    """
    return _pass(model, loader, loss_fn, device, keep=False)[0]


def _pass(model: nn.Module, loader: Iterable, loss_fn: nn.Module | None,
          device: torch.device | str | None, keep: bool) -> Any:
    device = as_device(device)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    model.to(device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    preds, trues, k = [], [], 0
    with eval_mode(model), torch.inference_mode():
        for batch in loader:
            X, y = split_batch(batch)
            if y is None:
                raise TypeError("evaluate needs (X, y) batches; use predict() for X alone")
            X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(X)
            check_outputs(out, y)
            # Weight by batch size so a short last batch counts for what it is.
            loss_sum += loss_fn(out, y).double() * y.shape[0]
            pred, true = out.argmax(dim=1), class_targets(y)
            correct += (pred == true).sum()
            n += y.shape[0]
            if keep:
                k = out.shape[1]
                preds.append(pred.cpu())
                trues.append(true.cpu())
    if n == 0:
        raise ValueError("the loader yielded no examples")
    metrics = {"loss": loss_sum.item() / n, "accuracy": correct.item() / n}
    if not keep:
        return metrics, None, None, 0
    return metrics, torch.cat(preds).long(), torch.cat(trues).long(), k


def predict(
    model: nn.Module,
    data: torch.Tensor | Iterable,
    *,
    device: torch.device | str | None = None,
    batch_size: int = 512,
) -> Prediction:
    """Predicted classes and softmax probabilities for a tensor of inputs or a loader.

    Used in chapter 01 (quickstart) for the confusion matrix and the grid of predictions.

    Args:
        model: A classifier returning N×K logits.
        data: An input tensor ``X`` (N×...) or a loader yielding ``X`` or ``(X, y)`` batches.
        device: Where to compute; defaults to :func:`dlkit.env.pick_device`.
        batch_size: Batch size used when ``data`` is a tensor.

    Returns:
        A :class:`Prediction` with ``labels`` (int64, N) and ``probs`` (float32, N×K), on CPU.

    Raises:
        ValueError: If ``batch_size`` < 1, there are no inputs, or the outputs are not N×K.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = as_device(device)
    batches = data.split(batch_size) if isinstance(data, torch.Tensor) else data
    model.to(device)
    probs = []
    with eval_mode(model), torch.inference_mode():
        for batch in batches:
            X, _ = split_batch(batch)
            out = model(X.to(device, non_blocking=True))
            if out.ndim != 2 or out.shape[0] != X.shape[0]:
                raise ValueError(
                    f"expected the model to return ({X.shape[0]}, num_classes) logits, "
                    f"got {tuple(out.shape)}"
                )
            probs.append(out.float().softmax(dim=1).cpu())
    if not probs:
        raise ValueError("no inputs to predict")
    p = torch.cat(probs)
    return Prediction(labels=p.argmax(dim=1), probs=p)
