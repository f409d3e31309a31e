"""Callbacks: the options of :func:`dlkit.train.fit`, each one small object.

Used from chapter 01 (the progress bar) to chapter 08 (mixed precision, compile). A callback
is an object with some of the methods named in :data:`EVENTS`; :func:`~dlkit.train.fit` calls
each at that point of the loop with the running :class:`~dlkit.train.loop.Loop`, whose
attributes (``model``, ``optimizer``, ``epoch``, ``X``, ``y``, ``history``...) it may read and,
where documented, change. The events, in the order they happen::

    before_fit
      before_epoch                      (once per epoch)
        before_batch                    (loop.X, loop.y on the device; may be replaced)
          before_backward / after_backward  (around each loop.backward(loss); loop.loss set)
          before_step / after_step      (around each optimizer step; gradients are final)
        after_batch                     (loop.loss, loop.out of the batch)
        before_validation               (the epoch's training is done; the model in train mode)
        after_validation                (loop.val holds the validation metrics)
      after_epoch                       (loop.history has the epoch's row)
    after_fit                           (only when training ended normally)

and ``close()``, called always (also after an error) to release files and bars. Callbacks run
in increasing ``order`` (then in the order given). ``fit``'s keyword options are shortcuts that
build these: ``progress``/``verbose`` → :class:`ProgressBar`, ``early_stopping`` →
:class:`~dlkit.train.tracking.EarlyStopping`, ``checkpoint``/``resume`` →
:class:`~dlkit.train.tracking.Checkpoint`, ``log_dir`` →
:class:`~dlkit.train.tracking.TensorBoard`, ``train_transform`` → :class:`BatchTransform`,
``precision`` → :class:`MixedPrecision`, ``accumulation_steps`` → :class:`GradientAccumulation`,
``channels_last`` → :class:`ChannelsLast`, ``compile`` → :class:`Compile`; plus
:class:`GradientClipping` and :class:`Throughput`, which have no keyword. The three that keep
a run trustworthy (early stopping, checkpoints, TensorBoard; chapter 07) are in
:mod:`dlkit.train.tracking`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from dlkit.train.precision import (PRECISIONS, FirstCallCompiled, autocast_dtype,
                                   compile_supported, needs_grad_scaler)

if TYPE_CHECKING:
    from dlkit.train.loop import Loop

__all__ = ["EVENTS", "Callback", "implements", "ProgressBar", "BatchTransform",
           "GradientClipping", "MixedPrecision", "GradientAccumulation", "Throughput",
           "ChannelsLast", "Compile"]

EVENTS = ("before_fit", "before_epoch", "before_batch", "before_backward", "after_backward",
          "before_step", "after_step", "after_batch", "before_validation", "after_validation",
          "after_epoch", "after_fit")

BatchFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Callback:
    """Base class of the callbacks: override the events you need (each takes the loop).

    Only overridden events cost anything: the loop collects, once per ``fit``, the callbacks
    that define each event and calls just those.

    Attributes:
        order: Callbacks with a smaller order run first at every event (default 0).
    """

    order: int = 0

    def before_fit(self, loop: Loop) -> None: ...
    def before_epoch(self, loop: Loop) -> None: ...
    def before_batch(self, loop: Loop) -> None: ...
    def after_backward(self, loop: Loop) -> None: ...
    def before_step(self, loop: Loop) -> None: ...
    def after_step(self, loop: Loop) -> None: ...
    def after_batch(self, loop: Loop) -> None: ...
    def after_validation(self, loop: Loop) -> None: ...
    def after_epoch(self, loop: Loop) -> None: ...
    def after_fit(self, loop: Loop) -> None: ...

    def close(self) -> None:
        """Release resources (files, bars); called after every run, also a failed one."""


def implements(callback: Any, event: str) -> bool:
    """Whether ``callback`` does something at ``event`` (a no-op inherited method does not)."""
    method = getattr(type(callback), event, None)
    return method is not None and method is not getattr(Callback, event, None)


# --------------------------------------------------------------------------- #
# Setting up the model and the batches (chapter 03, chapter 08)
# --------------------------------------------------------------------------- #
class MixedPrecision(Callback):
    """Forward passes in bf16 or fp16 under ``torch.autocast`` (chapter 08).

    fp16 on CUDA also scales the loss with a ``GradScaler`` so that small gradients do not
    underflow. See :func:`dlkit.train.autocast_dtype` for the fallbacks.

    Args:
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    """

    order = -100

    def __init__(self, precision: str = "bf16") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.dtype: torch.dtype | None = None
        self.use_scaler = False

    def setup(self, device: torch.device) -> None:
        """Choose the dtype and whether a gradient scaler is needed on ``device``."""
        self.dtype = autocast_dtype(self.precision, device)
        self.use_scaler = needs_grad_scaler(self.dtype, device)

    def before_fit(self, loop: Loop) -> None:
        self.setup(loop.device)
        loop.precision = self.precision
        loop.amp_dtype = self.dtype
        if self.use_scaler:
            loop.scaler = torch.amp.GradScaler(loop.device.type)


class ChannelsLast(Callback):
    """Model weights and 4-D inputs in channels-last memory format (chapter 08)."""

    order = -90

    def before_fit(self, loop: Loop) -> None:
        loop.model.to(memory_format=torch.channels_last)

    def before_batch(self, loop: Loop) -> None:
        if loop.X.ndim == 4:
            loop.X = loop.X.contiguous(memory_format=torch.channels_last)


class Compile(Callback):
    """Train through ``torch.compile(model)`` (chapter 08), falling back to eager mode.

    The fallback covers failures when wrapping and, where they really happen, at the first
    forward pass (see :class:`~dlkit.train.precision.FirstCallCompiled`); on a CUDA GPU older
    than compute capability 7.0 it does not try.
    """

    order = -80

    def __init__(self) -> None:
        self.compiled: FirstCallCompiled | None = None

    def before_fit(self, loop: Loop) -> None:
        if not compile_supported(loop.device):
            warnings.warn(f"torch.compile needs a GPU of compute capability 7.0 or newer; "
                          f"{loop.device} is older, running eagerly", RuntimeWarning, stacklevel=2)
            return
        self.compiled = FirstCallCompiled(loop.model)
        loop.forward = self.compiled


class GradientAccumulation(Callback):
    """Sum gradients over ``steps`` batches before each optimizer step (chapter 08).

    Every example weighs the same, so ``k`` batches of ``B`` give the update of one batch of
    ``k*B`` (exactly, for models without batch statistics). The last group of an epoch may be
    shorter. Schedulers step once per optimizer step.

    Args:
        steps: Batches per optimizer step (at least 1).
    """

    order = -70

    def __init__(self, steps: int) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"accumulation_steps must be a positive integer, got {steps!r}")
        self.steps = steps

    def before_fit(self, loop: Loop) -> None:
        loop.accumulation_steps = self.steps


class BatchTransform(Callback):
    """Apply ``fn(X, y) -> (X, y)`` to every training batch on the device (chapter 03).

    Batched augmentation and MixUp/CutMix; validation batches are left alone.

    Args:
        fn: The transform.
    """

    order = -60

    def __init__(self, fn: BatchFn) -> None:
        if not callable(fn):
            raise TypeError(f"train_transform must be callable, got {type(fn).__name__}")
        self.fn = fn

    def before_batch(self, loop: Loop) -> None:
        loop.X, loop.y = self.fn(loop.X, loop.y)


class GradientClipping(Callback):
    """Rescale the gradients so that their global L2 norm is at most ``max_norm``.

    Runs just before every optimizer step, on the final (unscaled, accumulated) gradients of
    the optimizer being stepped; the norms before clipping are kept in ``norms``, and their
    mean per epoch is logged as ``grad_norm``. Used for recurrent networks (chapter 10).

    Args:
        max_norm: The largest allowed norm (positive).
    """

    def __init__(self, max_norm: float) -> None:
        if not max_norm > 0:
            raise ValueError(f"max_norm must be positive, got {max_norm!r}")
        self.max_norm = float(max_norm)
        self.norms: list[torch.Tensor] = []

    def before_epoch(self, loop: Loop) -> None:
        self.norms = []

    def before_step(self, loop: Loop) -> None:
        params = [p for group in loop.stepping.param_groups for p in group["params"]]
        self.norms.append(torch.nn.utils.clip_grad_norm_(params, self.max_norm).detach())

    def after_validation(self, loop: Loop) -> None:
        if self.norms:
            loop.log("grad_norm", torch.stack(self.norms).float().mean().item())


# --------------------------------------------------------------------------- #
# Watching the run (chapter 01, chapter 07, chapter 08)
# --------------------------------------------------------------------------- #
class ProgressBar(Callback):
    """A ``tqdm.auto`` bar over all batches, and one summary line per epoch (chapter 01).

    Args:
        bar: Show the bar (a widget in Jupyter, text in a terminal).
        summary: Print ``epoch k/N  train loss ... acc ...  val loss ... acc ...`` per epoch.
    """

    order = 20

    def __init__(self, bar: bool = True, summary: bool = True) -> None:
        self.show_bar, self.summary = bar, summary
        self.bar: Any = None

    def before_fit(self, loop: Loop) -> None:
        remaining = max(loop.epochs - loop.first_epoch + 1, 0)
        n = loop.steps_per_epoch
        self.bar = tqdm(total=n * remaining if n is not None else None, disable=not self.show_bar,
                        unit="batch", leave=True, dynamic_ncols=True)

    def before_epoch(self, loop: Loop) -> None:
        self.bar.set_description(f"epoch {loop.epoch}/{loop.epochs}")

    def after_batch(self, loop: Loop) -> None:
        self.bar.update(1)

    def after_epoch(self, loop: Loop) -> None:
        h = loop.history
        postfix = {"loss": f"{h.train_loss[-1]:.3f}"}
        if not math.isnan(h.val_acc[-1]):
            postfix["val_acc"] = f"{h.val_acc[-1]:.1%}"
        elif not math.isnan(h.val_loss[-1]):
            postfix["val_loss"] = f"{h.val_loss[-1]:.3f}"
        self.bar.set_postfix(postfix)
        if self.summary:
            val_acc = "" if math.isnan(h.val_acc[-1]) else f" acc {h.val_acc[-1]:6.2%}"
            val_text = (f"  val loss {h.val_loss[-1]:.4f}{val_acc}"
                        if loop.val_loader is not None else "")
            acc = "" if math.isnan(h.train_acc[-1]) else f" acc {h.train_acc[-1]:6.2%}"
            self.bar.write(f"epoch {loop.epoch}/{loop.epochs}  train loss {h.train_loss[-1]:.4f}"
                           f"{acc}{val_text}  ({h.time[-1]:.1f} s)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Throughput(Callback):
    """Steady-state examples per second, leaving out each epoch's first ``warmup`` batches.

    ``History.images_per_s`` divides by the whole training time, which includes the slow first
    batches (worker start-up, compilation, lazy initialisation). This callback starts its
    clock after ``warmup`` batches (synchronising a CUDA device so queued work is counted) and
    logs ``steady_images_per_s`` every epoch. Used in chapter 08.

    Args:
        warmup: Batches per epoch not timed (at least 0; the epoch must be longer).
    """

    def __init__(self, warmup: int = 2) -> None:
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
        self.warmup = warmup
        self.rates: list[float] = []

    def _now(self, loop: Loop) -> float:
        if loop.device.type == "cuda":
            torch.cuda.synchronize(loop.device)
        return time.perf_counter()

    def before_epoch(self, loop: Loop) -> None:
        self.seen, self.n, self.start, self.end = 0, 0, None, None
        if self.warmup == 0:
            self.start = self._now(loop)

    def after_batch(self, loop: Loop) -> None:
        self.seen += 1
        if self.start is None:
            if self.seen == self.warmup:
                self.start = self._now(loop)
            return
        self.n += loop.batch_size
        self.end = time.perf_counter()

    def after_validation(self, loop: Loop) -> None:
        if self.start is None or self.end is None or self.n == 0:
            rate = math.nan
        else:
            if loop.device.type == "cuda":
                self.end = self._now(loop)
            rate = self.n / (self.end - self.start)
        self.rates.append(rate)
        loop.log("steady_images_per_s", rate)
