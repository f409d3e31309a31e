"""Training and evaluation loops shared by every chapter.

Chapter 01 (quickstart) introduces :func:`fit`, :func:`evaluate` and :func:`predict`; later
chapters reuse them instead of writing the loop again. The loop is the textbook one (numbered in
:func:`fit`); what it adds is bookkeeping: device moves, a progress bar, and a :class:`History`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from dlkit.env import pick_device

__all__ = ["History", "Prediction", "fit", "evaluate", "predict"]


@dataclasses.dataclass
class History:
    """Per-epoch record of a training run, returned by :func:`fit`.

    Accuracies are fractions in ``[0, 1]``. Validation entries are ``nan`` when :func:`fit` had
    no validation loader. ``time`` is the wall-clock seconds of each epoch (training plus
    validation) and ``lr`` the learning rate at the end of the epoch.
    """

    epoch: list[int] = dataclasses.field(default_factory=list)
    train_loss: list[float] = dataclasses.field(default_factory=list)
    train_acc: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_acc: list[float] = dataclasses.field(default_factory=list)
    lr: list[float] = dataclasses.field(default_factory=list)
    time: list[float] = dataclasses.field(default_factory=list)
    images_per_s: list[float] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epoch)

    def as_dict(self) -> dict[str, list[float]]:
        """Return the columns as a dict of lists (e.g. for ``pandas.DataFrame``)."""
        return dataclasses.asdict(self)

    def best_epoch(self, metric: str = "val_loss") -> int:
        """Return the epoch number (1-based) with the best value of ``metric``.

        Losses are minimised, accuracies maximised.

        Raises:
            ValueError: If the history is empty or ``metric`` is not a column with values.
        """
        values = getattr(self, metric, None)
        if metric not in {"train_loss", "train_acc", "val_loss", "val_acc"} or not values:
            raise ValueError(f"metric must be a recorded loss or accuracy column, got {metric!r}")
        finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
        if not finite:
            raise ValueError(f"{metric} has no recorded values (was a val_loader given?)")
        pick = min if metric.endswith("loss") else max
        return self.epoch[pick(finite)[1]]

    def __str__(self) -> str:
        lines = ["epoch  train_loss  train_acc  val_loss  val_acc  seconds"]
        for i in range(len(self)):
            lines.append(
                f"{self.epoch[i]:5d}  {self.train_loss[i]:10.4f}  {self.train_acc[i]:9.2%}  "
                f"{self.val_loss[i]:8.4f}  {self.val_acc[i]:7.2%}  {self.time[i]:7.1f}"
            )
        return "\n".join(lines)


class Prediction(NamedTuple):
    """What :func:`predict` returns: predicted class indices and class probabilities (on CPU)."""

    labels: torch.Tensor
    probs: torch.Tensor


def _as_device(device: torch.device | str | None) -> torch.device:
    return pick_device() if device is None else torch.device(device)


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
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


def _class_targets(y: torch.Tensor) -> torch.Tensor:
    # Soft labels (mixup, label smoothing done by hand) are N×K: their argmax is the class.
    return y.argmax(dim=1) if y.ndim == 2 else y


def _check_outputs(out: torch.Tensor, y: torch.Tensor) -> None:
    if out.ndim != 2 or out.shape[0] != y.shape[0]:
        raise ValueError(
            f"the model returned outputs of shape {tuple(out.shape)} for a batch of {y.shape[0]} "
            f"examples; expected ({y.shape[0]}, num_classes). A first dimension that differs from "
            "the batch size usually means a reshape such as x.view(-1, n) with the wrong n: "
            "use x.flatten(1) and derive n from the layer shapes."
        )


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
    device = _as_device(device)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    was_training = model.training
    model.to(device).eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n = 0
    try:
        with torch.inference_mode():
            for batch in loader:
                X, y = _split_batch(batch)
                if y is None:
                    raise TypeError("evaluate needs (X, y) batches; use predict() for X alone")
                X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
                out = model(X)
                _check_outputs(out, y)
                # Weight by batch size so a short last batch counts for what it is.
                loss_sum += loss_fn(out, y).double() * y.shape[0]
                correct += (out.argmax(dim=1) == _class_targets(y)).sum()
                n += y.shape[0]
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("the loader yielded no examples")
    return {"loss": loss_sum.item() / n, "accuracy": correct.item() / n}


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    loss_fn: nn.Module | None = None,
    device: torch.device | str | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    progress: bool = True,
    verbose: bool = True,
) -> History:
    """Train ``model`` for ``epochs`` epochs and return the per-epoch :class:`History`.

    Used in chapter 01 (quickstart) and every training chapter after it.

    Args:
        model: The network to train (moved to ``device`` in place).
        train_loader: Yields ``(X, y)`` training batches; must be re-iterable (a DataLoader).
        val_loader: Optional validation batches, evaluated after every epoch.
        epochs: Number of passes over ``train_loader`` (at least 1).
        optimizer: Defaults to ``torch.optim.Adam(model.parameters(), lr=lr)``.
        lr: Learning rate of the default optimizer (ignored when ``optimizer`` is given).
        loss_fn: Defaults to ``nn.CrossEntropyLoss()``.
        device: Defaults to :func:`dlkit.env.pick_device`.
        scheduler: A learning-rate scheduler stepped after every optimizer step (so build
            per-step schedules such as ``OneCycleLR`` with ``total_steps=epochs*len(loader)``).
        progress: Show a ``tqdm.auto`` bar (a widget in Jupyter, text in a terminal).
        verbose: Print one summary line per epoch.

    Returns:
        The :class:`History` of the run.

    Raises:
        ValueError: If ``epochs`` < 1, the loader is empty, or the model's outputs do not match
            the targets' batch size.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    device = _as_device(device)
    model.to(device)
    optimizer = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    try:
        steps_per_epoch: int | None = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        steps_per_epoch = None
    if steps_per_epoch == 0:
        raise ValueError("train_loader is empty: no batches to train on")

    history = History()
    total = steps_per_epoch * epochs if steps_per_epoch is not None else None
    bar = tqdm(total=total, disable=not progress, unit="batch", leave=True, dynamic_ncols=True)
    try:
        for epoch in range(1, epochs + 1):
            bar.set_description(f"epoch {epoch}/{epochs}")
            model.train()
            start = time.perf_counter()
            # Sums stay on the device: calling .item() every step would stall a GPU.
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            n = 0
            for step, batch in enumerate(train_loader):
                X, y = _split_batch(batch)
                if y is None:
                    raise TypeError("fit needs (X, y) batches, got X alone")
                X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
                # 1. Forward pass.
                out = model(X)
                if step == 0:
                    _check_outputs(out, y)
                # 2. Loss.
                loss = loss_fn(out, y)
                # 3. Clear old gradients (set_to_none frees memory instead of writing zeros).
                optimizer.zero_grad(set_to_none=True)
                # 4. Backward pass.
                loss.backward()
                # 5. Update the weights (and the learning rate, for per-step schedules).
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                # 6. Bookkeeping, without leaving the device.
                with torch.no_grad():
                    loss_sum += loss.detach().double() * y.shape[0]
                    correct += (out.argmax(dim=1) == _class_targets(y)).sum()
                n += y.shape[0]
                bar.update(1)
            if n == 0:
                raise ValueError("train_loader yielded no examples")
            train_time = time.perf_counter() - start
            train_loss, train_acc = loss_sum.item() / n, correct.item() / n
            if math.isnan(train_loss):
                raise FloatingPointError(
                    f"the training loss became nan in epoch {epoch}: lower the learning rate"
                )
            if val_loader is not None:
                val = evaluate(model, val_loader, loss_fn=loss_fn, device=device)
            else:
                val = {"loss": math.nan, "accuracy": math.nan}
            elapsed = time.perf_counter() - start
            history.epoch.append(epoch)
            history.train_loss.append(train_loss)
            history.train_acc.append(train_acc)
            history.val_loss.append(val["loss"])
            history.val_acc.append(val["accuracy"])
            history.lr.append(float(optimizer.param_groups[0]["lr"]))
            history.time.append(elapsed)
            history.images_per_s.append(n / train_time)
            bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val['accuracy']:.1%}")
            if verbose:
                val_text = (
                    f"  val loss {val['loss']:.4f} acc {val['accuracy']:6.2%}"
                    if val_loader is not None
                    else ""
                )
                bar.write(
                    f"epoch {epoch}/{epochs}  train loss {train_loss:.4f} acc {train_acc:6.2%}"
                    f"{val_text}  ({elapsed:.1f} s)"
                )
    finally:
        bar.close()
    return history


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
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = _as_device(device)
    batches = data.split(batch_size) if isinstance(data, torch.Tensor) else data
    was_training = model.training
    model.to(device).eval()
    probs = []
    try:
        with torch.inference_mode():
            for batch in batches:
                X, _ = _split_batch(batch)
                out = model(X.to(device, non_blocking=True))
                if out.ndim != 2 or out.shape[0] != X.shape[0]:
                    raise ValueError(
                        f"expected the model to return ({X.shape[0]}, num_classes) logits, "
                        f"got {tuple(out.shape)}"
                    )
                probs.append(out.float().softmax(dim=1).cpu())
    finally:
        model.train(was_training)
    if not probs:
        raise ValueError("no inputs to predict")
    p = torch.cat(probs)
    return Prediction(labels=p.argmax(dim=1), probs=p)
