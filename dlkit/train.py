"""Training and evaluation loops shared by every chapter.

Chapter 01 (quickstart) introduces :func:`fit`, :func:`evaluate` and :func:`predict`; later
chapters reuse them instead of writing the loop again. The loop is the textbook one (numbered in
:func:`fit`); what it adds is bookkeeping: device moves, a progress bar, and a :class:`History`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from dlkit.env import pick_device

__all__ = ["History", "Prediction", "fit", "evaluate", "predict", "autocast_dtype"]

BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or ``None`` to run in float32.

    Used in chapter 08 (efficient training). A precision the device cannot run falls back to
    float32 with a warning instead of failing, so one notebook runs on a laptop and on a GPU.

    Args:
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: The device the model runs on.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or ``None`` (plain float32).

    Raises:
        ValueError: If ``precision`` is not one of the three names.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    dtype = _PRECISIONS[precision]
    device = torch.device(device)
    if dtype is None:
        return None
    supported = torch.amp.is_autocast_available(device.type)
    if supported and device.type == "cuda" and dtype is torch.bfloat16:
        supported = torch.cuda.is_bf16_supported()
    if supported and device.type == "mps" and dtype is torch.bfloat16:
        supported = False  # not every macOS version runs bf16 autocast on MPS
    if not supported:
        warnings.warn(f"{precision} autocast is not available on {device}; training in fp32",
                      RuntimeWarning, stacklevel=3)
        return None
    return dtype


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _compiled(model: nn.Module) -> Callable[..., torch.Tensor]:
    try:
        return torch.compile(model)
    except Exception as error:  # e.g. no C++ compiler, unsupported Python version
        warnings.warn(f"torch.compile is unavailable ({error}); running eagerly",
                      RuntimeWarning, stacklevel=3)
        return model


def _optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    group_n: int,
    accumulated: bool,
) -> None:
    if accumulated:  # gradients hold sum over examples of d loss_i; make them the group mean
        for param in model.parameters():
            if param.grad is not None:
                param.grad.div_(group_n)
    scaler.step(optimizer)  # a plain optimizer.step() when the scaler is disabled
    scaler.update()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)


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
    train_transform: BatchTransform | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,  # noqa: A002  (the name torch uses)
    accumulation_steps: int = 1,
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
        train_transform: Applied to every training batch ``(X, y)`` after it reaches the device
            and before the forward pass, returning a new ``(X, y)``: batched augmentation and
            MixUp/CutMix (chapter 03). Validation batches are left alone.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` mixed precision via ``torch.autocast``
            (chapter 08); fp16 on CUDA also uses a gradient scaler. Falls back to fp32 with a
            warning where the device cannot run it.
        channels_last: Store the model and 4-D inputs in channels-last memory format, which
            tensor cores and oneDNN convolutions prefer (chapter 08).
        compile: Train through ``torch.compile(model)`` (chapter 08); the first steps are slow
            while it compiles. Falls back to eager mode with a warning if compiling fails.
        accumulation_steps: Sum gradients over this many batches before each optimizer step,
            weighting every example equally, so ``k`` batches of ``B`` give the update of one
            batch of ``k*B`` (exactly, for models without batch statistics such as BatchNorm).
            The last group of an epoch may be shorter. Schedulers step once per optimizer step.

    Returns:
        The :class:`History` of the run.

    Raises:
        ValueError: If ``epochs`` < 1, ``accumulation_steps`` < 1, the loader is empty, or the
            model's outputs do not match the targets' batch size.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(accumulation_steps, bool) or not isinstance(accumulation_steps, int) \
            or accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be a positive integer, got {accumulation_steps!r}")
    device = _as_device(device)
    amp_dtype = autocast_dtype(precision, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    forward = _compiled(model) if compile else model
    # fp16 has a narrow range: small gradients underflow to zero unless the loss is scaled up.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16
                                  and device.type == "cuda")
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
            # 3. Clear old gradients (set_to_none frees memory instead of writing zeros).
            optimizer.zero_grad(set_to_none=True)
            group_n = 0  # examples whose gradients are summed in .grad, awaiting a step
            for step, batch in enumerate(train_loader):
                X, y = _split_batch(batch)
                if y is None:
                    raise TypeError("fit needs (X, y) batches, got X alone")
                X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if train_transform is not None:
                    X, y = train_transform(X, y)
                if channels_last and X.ndim == 4:
                    X = X.contiguous(memory_format=torch.channels_last)
                # 1. Forward pass (in reduced precision where autocast allows it).
                with _autocast(device, amp_dtype):
                    out = forward(X)
                    if step == 0:
                        _check_outputs(out, y)
                    # 2. Loss.
                    loss = loss_fn(out, y)
                # 4. Backward pass. Each batch's mean loss is weighted by its size, so the summed
                # gradients become the mean over the whole group once divided by group_n.
                weight = y.shape[0] if accumulation_steps > 1 else 1
                scaler.scale(loss * weight).backward()
                group_n += y.shape[0]
                last = steps_per_epoch is not None and step + 1 == steps_per_epoch
                if (step + 1) % accumulation_steps == 0 or last:
                    # 5. Update the weights (and the learning rate, for per-step schedules).
                    _optimizer_step(model, optimizer, scaler, scheduler, group_n,
                                    accumulation_steps > 1)
                    group_n = 0
                # 6. Bookkeeping, without leaving the device.
                with torch.no_grad():
                    loss_sum += loss.detach().double() * y.shape[0]
                    correct += (out.argmax(dim=1) == _class_targets(y)).sum()
                n += y.shape[0]
                bar.update(1)
            if group_n:  # a loader without len() can end inside a group
                _optimizer_step(model, optimizer, scaler, scheduler, group_n,
                                accumulation_steps > 1)
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
