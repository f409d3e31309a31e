"""The training loop: :func:`fit`, the :class:`Loop` it runs, and replaceable training steps.

Chapter 01 (quickstart) introduces :func:`fit`; every later chapter trains through it. The
loop is the textbook one, numbered in :meth:`Loop.run` and :func:`supervised_step`; what it
adds is bookkeeping (device moves, a :class:`~dlkit.train.history.History`) and the events at
which callbacks (:mod:`dlkit.train.callbacks`) run. Every keyword option of :func:`fit` is a
shortcut that builds one of those callbacks.

A model that is not a plain classifier replaces the step, not the loop: pass
``fit(..., step=my_step)`` where ``my_step(loop, X, y)`` does the forward pass and calls
``loop.zero_grad()``, ``loop.backward(loss)`` and ``loop.optimizer_step()`` (with any
optimizer: a GAN steps two), and returns the loss, a dict of named loss terms (each logged as
``train/NAME``), or a :class:`StepOutput`. Mixed precision, gradient scaling, accumulation,
clipping and the other callbacks keep working, because they live in those three calls. A
:class:`TrainStep` subclass is also a callback, so it can keep state between batches (the
hidden state of a language model, reset in ``before_epoch``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from dlkit._util import eval_mode
from dlkit.train.callbacks import (EVENTS, BatchFn, BatchTransform, Callback, ChannelsLast,
                                   Compile, GradientAccumulation, MixedPrecision, ProgressBar,
                                   implements)
from dlkit.train.history import History
from dlkit.train.inference import (as_device, check_outputs, class_targets, evaluate,
                                   split_batch)
from dlkit.train.precision import autocast
from dlkit.train.tracking import Checkpoint, EarlyStopping, TensorBoard

__all__ = ["fit", "Loop", "StepOutput", "TrainStep", "supervised_step"]


class StepOutput(NamedTuple):
    """What a training step returns.

    Attributes:
        loss: The batch's mean loss (a scalar tensor), or a dict of named scalar terms: the
            recorded ``train_loss`` is the ``"loss"`` entry if there is one, else their sum;
            every other term is recorded per epoch as ``History.metrics["train/NAME"]``.
        outputs: N×K class scores, used for the training accuracy; ``None`` when the model is
            not a classifier (``train_acc`` is then ``nan``).
    """

    loss: torch.Tensor | dict[str, torch.Tensor]
    outputs: torch.Tensor | None = None


StepFn = Callable[["Loop", Any, Any], Any]
#: Validates a model that is not a plain classifier: ``validate(model, val_loader, device)``
#: returns a dict with a ``"loss"`` entry (and optionally ``"accuracy"``); see :func:`fit`.
ValidateFn = Callable[[nn.Module, Iterable, torch.device], "dict[str, float]"]


class TrainStep(Callback):
    """A replaceable training step that may also listen to the loop's events.

    Subclass it and implement ``__call__(loop, X, y)`` (see :func:`supervised_step`, the
    default); override events such as ``before_epoch`` to keep state between batches. Pass an
    instance as ``fit(..., step=...)``.
    """

    def __call__(self, loop: Loop, X: Any, y: Any) -> StepOutput | torch.Tensor | dict:
        raise NotImplementedError("a TrainStep implements __call__(loop, X, y)")


def supervised_step(loop: Loop, X: torch.Tensor, y: torch.Tensor | None) -> StepOutput:
    """The default step: one optimisation step on the batch ``(X, y)``.

    A classifier's N×K scores also give the training accuracy; a model with one output per
    example (a regression with ``loss_fn=nn.MSELoss()``) trains the same way, without it.
    """
    if y is None:
        raise TypeError("fit needs (X, y) batches, got X alone")
    # 1. Forward pass (in reduced precision where autocast allows it).
    with loop.autocast():
        out = loop.forward(X)
        if loop.batch_index == 0:
            check_outputs(out, y)
        # 2. Loss.
        loss = loop.loss_fn(out, y)
    # 3. Clear old gradients (at the start of an accumulation group; set_to_none frees them).
    loop.zero_grad()
    # 4. Backward pass.
    loop.backward(loss)
    # 5. Update the weights (and the learning rate, for per-step schedules).
    loop.optimizer_step()
    # Class scores (N×K) give a training accuracy; a regression's outputs do not.
    return StepOutput(loss, out if out.ndim == 2 else None)


class Loop:
    """The state of one :func:`fit` run, handed to every callback and to the training step.

    Attributes read by callbacks: ``model``, ``forward`` (what the step calls: the model, or
    its compiled version), ``optimizer``, ``scheduler``, ``loss_fn``, ``device``,
    ``train_loader``, ``val_loader``, ``epochs``, ``first_epoch``, ``epoch``, ``history``,
    ``batch_index``, ``batch_size``, ``X``, ``y`` (the batch, replaceable in
    ``before_batch``), ``loss``, ``out`` (after the step), ``val`` (validation metrics),
    ``stepping`` (the optimizer being stepped, in ``before_step``/``after_step``),
    ``amp_dtype``, ``scaler``, ``precision``, ``accumulation_steps``, ``callbacks``; set
    ``stop = True`` to end training after the current epoch.
    """

    def __init__(self, model: nn.Module, train_loader: Iterable, val_loader: Iterable | None,
                 *, epochs: int, optimizer: torch.optim.Optimizer, loss_fn: Callable[..., Any],
                 device: torch.device, scheduler: Any, callbacks: Sequence[Callback],
                 step: StepFn, verbose: bool, validate: ValidateFn | None = None) -> None:
        self.model, self.forward = model, model
        self.validate = validate
        self.train_loader, self.val_loader = train_loader, val_loader
        self.epochs, self.optimizer, self.loss_fn = epochs, optimizer, loss_fn
        self.device, self.scheduler, self.step, self.verbose = device, scheduler, step, verbose
        self.callbacks = sorted(callbacks, key=lambda cb: getattr(cb, "order", 0))
        # Which callbacks act at each event, found once: the loop calls only those.
        self.handlers = {event: [getattr(cb, event) for cb in self.callbacks
                                 if implements(cb, event)] for event in EVENTS}
        self.precision, self.amp_dtype = "fp32", None
        self.scaler: torch.amp.GradScaler | None = None
        self.accumulation_steps, self.group_n = 1, 0
        self.history, self.first_epoch, self.epoch = History(), 1, 0
        self.stop, self.val = False, {"loss": math.nan, "accuracy": math.nan}
        self.batch_index, self.batch_size, self.last_batch = 0, 0, False
        self.X: Any = None
        self.y: Any = None
        self.loss: Any = None
        self.out: Any = None
        self.stepping: torch.optim.Optimizer | None = None
        self._pending: dict[str, float] = {}
        try:
            self.steps_per_epoch: int | None = len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            self.steps_per_epoch = None

    # -- the three calls a training step makes ------------------------------------------ #
    def autocast(self) -> Any:
        """The autocast context of the run's precision (a no-op context in float32)."""
        return autocast(self.device, self.amp_dtype)

    def zero_grad(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Clear the gradients of ``optimizer`` (default: the main one) at a group's start."""
        if self.group_n == 0:
            (optimizer or self.optimizer).zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled for fp16 and weighted for gradient accumulation.

        When accumulating, each batch's mean loss is weighted by its size, so the summed
        gradients become the mean over the whole group once divided by its size at the step.
        """
        self.loss = loss
        for handler in self.handlers["before_backward"]:
            handler(self)
        if self.accumulation_steps > 1:
            loss = loss * self.batch_size
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()
        self.group_n += self.batch_size
        for handler in self.handlers["after_backward"]:
            handler(self)

    def optimizer_step(self, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Step ``optimizer`` (default: the main one) if this batch ends an accumulation group.

        Returns:
            Whether the weights were updated.
        """
        k = self.accumulation_steps
        if k > 1 and not (self.last_batch or (self.batch_index + 1) % k == 0):
            return False
        opt = self.stepping = optimizer or self.optimizer
        if k > 1:  # gradients hold the sum over examples of d loss_i: make them the group mean
            for group in opt.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        param.grad.div_(self.group_n)
        before = self.handlers["before_step"]
        if self.scaler is not None:
            if before:
                self.scaler.unscale_(opt)  # callbacks such as clipping see the true gradients
            for handler in before:
                handler(self)
            self.scaler.step(opt)
            self.scaler.update()
        else:
            for handler in before:
                handler(self)
            opt.step()
        if self.scheduler is not None and opt is self.optimizer:
            self.scheduler.step()
        self.group_n = 0
        for handler in self.handlers["after_step"]:
            handler(self)
        return True

    # -- what callbacks may call ------------------------------------------------------- #
    def log(self, name: str, value: float) -> None:
        """Record ``value`` as ``History.metrics[name]`` for the current epoch."""
        if len(self.history) and self.history.epoch[-1] == self.epoch:
            self.history.record(name, value)  # the epoch's row is already written
        else:
            self._pending[name] = float(value)

    def print(self, text: str) -> None:
        """Print ``text`` when ``fit`` is verbose, without breaking a progress bar."""
        if self.verbose:
            from tqdm.auto import tqdm

            tqdm.write(text)

    def emit(self, event: str) -> None:
        """Call every callback that implements ``event``."""
        for handler in self.handlers[event]:
            handler(self)

    # -- the loop ---------------------------------------------------------------------- #
    def run(self) -> History:
        """Train from ``first_epoch`` to ``epochs`` and return the history."""
        try:
            self.emit("before_fit")
            for self.epoch in range(self.first_epoch, self.epochs + 1):
                self.model.train()  # before the event, so a callback may freeze parts of it
                self.emit("before_epoch")
                start = time.perf_counter()
                n, loss_sum, correct, terms = self._train_epoch()
                train_time = time.perf_counter() - start
                self._end_epoch(n, loss_sum, correct, terms, start, train_time)
                if self.stop:
                    break
            self.emit("after_fit")
        finally:
            for cb in self.callbacks:
                close = getattr(cb, "close", None)
                if callable(close):
                    close()
        return self.history

    def _train_epoch(self) -> tuple[int, torch.Tensor, torch.Tensor | None, dict]:
        _set_epoch(self.train_loader, self.epoch - 1)
        device, step, last = self.device, self.step, self.steps_per_epoch
        before_batch, after_batch = self.handlers["before_batch"], self.handlers["after_batch"]
        # Sums stay on the device: calling .item() every step would stall a GPU.
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        terms: dict[str, torch.Tensor] = {}
        n, scored = 0, False
        for self.batch_index, batch in enumerate(self.train_loader):
            X, y = split_batch(batch)
            self.X = X.to(device, non_blocking=True) if isinstance(X, torch.Tensor) else X
            self.y = y.to(device, non_blocking=True) if isinstance(y, torch.Tensor) else y
            self.last_batch = last is not None and self.batch_index + 1 == last
            for handler in before_batch:
                handler(self)
            self.batch_size = b = (self.y if self.y is not None else self.X).shape[0]
            # Steps 1-5 of the textbook loop (forward, loss, zero_grad, backward, step).
            result = step(self, self.X, self.y)
            loss, out = result if isinstance(result, tuple) else (result, None)
            # 6. Bookkeeping, without leaving the device.
            with torch.no_grad():
                if isinstance(loss, dict):
                    for name, value in loss.items():
                        if name != "loss":
                            terms[name] = terms.get(name, 0) + value.detach().double() * b
                    loss = loss["loss"] if "loss" in loss else sum(loss.values())
                loss_sum += loss.detach().double() * b
                if out is not None and self.y is not None:
                    correct += (out.argmax(dim=1) == class_targets(self.y)).sum()
                    scored = True
            n += b
            self.loss, self.out = loss, out
            for handler in after_batch:
                handler(self)
        if self.group_n:  # a loader without len() can end inside an accumulation group
            self.last_batch = True
            self.optimizer_step()
        self.optimizer.zero_grad(set_to_none=True)  # free the gradients before validating
        if n == 0:
            raise ValueError("train_loader yielded no examples")
        return n, loss_sum, correct if scored else None, terms

    def _end_epoch(self, n: int, loss_sum: torch.Tensor, correct: torch.Tensor | None,
                   terms: dict, start: float, train_time: float) -> None:
        train_loss = loss_sum.item() / n
        if math.isnan(train_loss):
            raise FloatingPointError(
                f"the training loss became nan in epoch {self.epoch}: lower the learning rate")
        for name, total in terms.items():
            self._pending[f"train/{name}"] = total.item() / n
        self.emit("before_validation")
        if self.val_loader is not None and self.validate is not None:
            self.val = self._custom_validation()
        elif self.val_loader is not None:
            self.val = evaluate(self.model, self.val_loader, loss_fn=self.loss_fn,
                                device=self.device)
        else:
            self.val = {"loss": math.nan, "accuracy": math.nan}
        self.emit("after_validation")
        h = self.history
        for name, value in self._pending.items():
            h.record(name, value, row=len(h))
        self._pending = {}
        h.epoch.append(self.epoch)
        h.train_loss.append(train_loss)
        h.train_acc.append(correct.item() / n if correct is not None else math.nan)
        h.val_loss.append(self.val["loss"])
        h.val_acc.append(self.val["accuracy"])
        h.lr.append(float(self.optimizer.param_groups[0]["lr"]))
        h.time.append(time.perf_counter() - start)
        h.images_per_s.append(n / train_time)
        self.emit("after_epoch")


    def _custom_validation(self) -> dict[str, float]:
        # The model is in eval mode without gradients, as in evaluate(); each submodule's own
        # mode is restored afterwards (a partly frozen model stays partly frozen).
        with eval_mode(self.model), torch.no_grad():
            result = self.validate(self.model, self.val_loader, self.device)
        if not isinstance(result, Mapping) or "loss" not in result:
            raise ValueError(
                "validate(model, val_loader, device) must return a dict with a 'loss' entry "
                f"(the number early stopping and checkpoints watch), got {result!r}")
        val = {"loss": float(result["loss"]), "accuracy": float(result.get("accuracy", math.nan))}
        for name, value in result.items():
            if name not in val:
                self._pending[f"val/{name}"] = float(value)
        return val


def _set_epoch(loader: Iterable, epoch: int) -> None:
    # DistributedSampler and sharded IterableDatasets reshuffle only when told the epoch
    # (chapters 02 and 08); without this every epoch would repeat the first one's order.
    for owner in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        set_epoch = getattr(owner, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


def _as_stopper(early_stopping: int | EarlyStopping | None) -> EarlyStopping | None:
    if early_stopping is None or isinstance(early_stopping, EarlyStopping):
        return early_stopping
    if isinstance(early_stopping, bool) or not isinstance(early_stopping, int):
        raise TypeError("early_stopping must be a patience (int) or an EarlyStopping, "
                        f"got {type(early_stopping).__name__}")
    return EarlyStopping(patience=early_stopping)


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    progress: bool = True,
    verbose: bool = True,
    train_transform: BatchFn | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,  # noqa: A002  (the name torch uses)
    accumulation_steps: int = 1,
    checkpoint: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    early_stopping: int | EarlyStopping | None = None,
    log_dir: str | os.PathLike | None = None,
    hparams: dict[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    callbacks: Sequence[Callback] = (),
    step: StepFn | None = None,
    validate: ValidateFn | None = None,
) -> History:
    """Train ``model`` for ``epochs`` epochs and return the per-epoch :class:`History`.

    Used in chapter 01 (quickstart) and every training chapter after it. The options from
    ``progress`` to ``class_names`` are shortcuts that build the callbacks of
    :mod:`dlkit.train.callbacks` (named below); ``callbacks`` adds more.

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
        progress: Show a ``tqdm.auto`` bar (:class:`ProgressBar`).
        verbose: Print one summary line per epoch (:class:`ProgressBar`).
        train_transform: ``fn(X, y) -> (X, y)`` applied to every training batch on the device,
            before the forward pass: batched augmentation, MixUp/CutMix (chapter 03;
            :class:`BatchTransform`). Validation batches are left alone.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` mixed precision (chapter 08;
            :class:`MixedPrecision`); fp16 on CUDA also uses a gradient scaler.
        channels_last: Channels-last memory format for the model and 4-D inputs (chapter 08;
            :class:`ChannelsLast`).
        compile: Train through ``torch.compile(model)`` (chapter 08; :class:`Compile`), falling
            back to eager mode with a warning if compiling fails, also at the first batch.
        accumulation_steps: Sum gradients over this many batches before each optimizer step
            (:class:`GradientAccumulation`).
        checkpoint: Write a checkpoint to this file after every epoch (chapter 07;
            :class:`Checkpoint`).
        resume: ``True`` continues from ``checkpoint`` if that file exists (else starts
            afresh); a path continues from that file. Training goes on up to ``epochs`` (the
            total); on the CPU the final weights are bit-identical to an uninterrupted run's.
        early_stopping: A patience, or an :class:`EarlyStopping`; needs ``val_loader``.
        log_dir: Log to TensorBoard in this folder (chapter 07; :class:`TensorBoard`).
        hparams: Extra hyperparameters to log with ``log_dir``.
        class_names: Names of the classes for TensorBoard's confusion matrix.
        callbacks: Further callbacks, e.g. ``[GradientClipping(1.0), Throughput()]``.
        step: Replaces the training step: ``step(loop, X, y)`` (or a :class:`TrainStep`)
            returning the loss, a dict of named loss terms, or a :class:`StepOutput`; see the
            module docstring. Default :func:`supervised_step`.
        validate: Replaces the classifier validation for other models (a language model's
            loss per token, a recommender's RMSE): ``validate(model, val_loader, device)``
            returns a dict with ``"loss"`` (recorded as ``val_loss``; what early stopping and
            checkpoints watch), optionally ``"accuracy"``, and any other entries, each recorded
            as ``History.metrics["val/NAME"]``. It runs in eval mode without gradients.

    Returns:
        The :class:`History` of the run.

    Raises:
        ValueError: If ``epochs`` < 1, ``accumulation_steps`` < 1, the loader is empty, the
            model's outputs do not match the targets' batch size, ``early_stopping`` is given
            without ``val_loader``, or ``resume=True`` without ``checkpoint``.
        FileNotFoundError: If ``resume`` names a file that does not exist.
        dlkit.checkpoint.CheckpointError: If the checkpoint to resume from is corrupt,
            truncated, or does not match the model.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if validate is not None and not callable(validate):
        raise TypeError(f"validate must be a function (model, val_loader, device) -> dict, "
                        f"got {type(validate).__name__}")
    cbs: list[Callback] = []
    if precision != "fp32":
        cbs.append(MixedPrecision(precision))
    if channels_last:
        cbs.append(ChannelsLast())
    if compile:
        cbs.append(Compile())
    if isinstance(accumulation_steps, bool) or accumulation_steps != 1:
        cbs.append(GradientAccumulation(accumulation_steps))
    if train_transform is not None:
        cbs.append(BatchTransform(train_transform))
    stopper = _as_stopper(early_stopping)
    if stopper is not None:
        cbs.append(stopper)
    if checkpoint is not None or (resume is not False and resume is not None):
        cbs.append(Checkpoint(checkpoint, resume))
    if log_dir is not None:
        cbs.append(TensorBoard(log_dir, hparams, class_names))
    if progress or verbose:
        cbs.append(ProgressBar(bar=progress, summary=verbose))
    for cb in callbacks:
        if not any(implements(cb, event) for event in EVENTS):
            raise TypeError(f"callbacks must implement at least one of {EVENTS}, got {cb!r}")
    cbs.extend(callbacks)
    if isinstance(step, Callback):
        cbs.append(step)
    device = as_device(device)
    model.to(device)
    optimizer = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    loop = Loop(model, train_loader, val_loader, epochs=epochs, optimizer=optimizer,
                loss_fn=loss_fn if loss_fn is not None else nn.CrossEntropyLoss(),
                device=device, scheduler=scheduler, callbacks=cbs,
                step=step if step is not None else supervised_step, verbose=verbose,
                validate=validate)
    if loop.steps_per_epoch == 0:
        raise ValueError("train_loader is empty: no batches to train on")
    return loop.run()
