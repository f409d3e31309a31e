"""Training and evaluation loops shared by every chapter.

Chapter 01 (quickstart) introduces :func:`fit`, :func:`evaluate` and :func:`predict`; later
chapters reuse them instead of writing the loop again. The loop is the textbook one (numbered in
:func:`fit`); what it adds is bookkeeping: device moves, a progress bar, and a :class:`History`.
Chapter 07 adds the options that make runs trustworthy: checkpoints and exact resumption
(:mod:`dlkit.checkpoint`), early stopping (:class:`EarlyStopping`) and TensorBoard logging.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from dlkit import checkpoint as _ckpt
from dlkit.env import pick_device

__all__ = ["History", "Prediction", "EarlyStopping", "fit", "evaluate", "predict",
           "autocast_dtype"]

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


@dataclasses.dataclass
class EarlyStopping:
    """Stop training when the validation loss has not improved for ``patience`` epochs.

    Pass ``fit(..., early_stopping=EarlyStopping(patience=3))`` or simply
    ``early_stopping=3``. An epoch improves when its validation loss is below the best so far by
    more than ``min_delta``. With ``restore_best`` the model ends training with the weights of
    its best epoch (whether or not patience ran out), which is what makes early stopping a
    regulariser: the epochs after the best one only fit the training set more closely. After
    :func:`fit` returns, ``best_epoch``, ``best_loss`` and ``stopped_epoch`` (``None`` when all
    epochs ran) describe what happened. Used in chapter 07.

    Args:
        patience: Epochs without improvement to tolerate (at least 1).
        min_delta: Smallest decrease of the validation loss that counts as an improvement.
        restore_best: Load the best epoch's weights into the model at the end.
    """

    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True
    best_loss: float = dataclasses.field(default=math.inf, init=False)
    best_epoch: int = dataclasses.field(default=0, init=False)
    wait: int = dataclasses.field(default=0, init=False)
    stopped_epoch: int | None = dataclasses.field(default=None, init=False)
    best_state: dict[str, torch.Tensor] | None = dataclasses.field(default=None, init=False,
                                                                   repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) \
                or self.patience < 1:
            raise ValueError(f"patience must be a positive integer, got {self.patience!r}")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta!r}")

    def reset(self) -> None:
        """Forget the previous run (called by :func:`fit` at the start of a new run)."""
        self.best_loss, self.best_epoch, self.wait = math.inf, 0, 0
        self.stopped_epoch, self.best_state = None, None

    def step(self, epoch: int, val_loss: float, model: nn.Module) -> bool:
        """Record one epoch's validation loss; return ``True`` when training should stop."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.wait = val_loss, epoch, 0
            if self.restore_best:
                # A copy on the CPU: a reference to the live tensors would change with training.
                self.best_state = {k: v.detach().to("cpu", copy=True)
                                   for k, v in model.state_dict().items()}
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after a resume (tensors and plain values)."""
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.best_loss, self.best_epoch = float(state["best_loss"]), int(state["best_epoch"])
        self.wait, self.stopped_epoch = int(state["wait"]), state["stopped_epoch"]
        self.best_state = state["best_state"]


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


def _as_stopper(early_stopping: int | EarlyStopping | None) -> EarlyStopping | None:
    if early_stopping is None or isinstance(early_stopping, EarlyStopping):
        return early_stopping
    if isinstance(early_stopping, bool) or not isinstance(early_stopping, int):
        raise TypeError("early_stopping must be a patience (int) or an EarlyStopping, "
                        f"got {type(early_stopping).__name__}")
    return EarlyStopping(patience=early_stopping)


def _resume_path(resume: bool | str | os.PathLike, checkpoint: str | os.PathLike | None
                 ) -> Path | None:
    if resume is False or resume is None:
        return None
    if resume is True:
        if checkpoint is None:
            raise ValueError("resume=True continues from the checkpoint file: pass checkpoint=PATH "
                             "(or resume=PATH)")
        path = Path(checkpoint)
        return path if path.exists() else None  # first run: nothing to resume yet
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"resume={str(resume)!r}: no checkpoint file there")
    return path


def _checkpoint_state(
    epoch: int,
    stopped: bool,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    stopper: EarlyStopping | None,
    history: History,
    train_loader: Iterable,
) -> dict[str, Any]:
    return {
        "format": _ckpt.FORMAT,
        "epoch": epoch,
        "stopped": stopped,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "early_stopping": stopper.state_dict() if stopper is not None else None,
        "history": history.as_dict(),
        "rng": _ckpt.rng_state(),
        # The shuffling order of the next epoch is decided by these generators' states.
        "loader_generators": _ckpt.generator_states(train_loader),
    }


def _restore(
    state: dict[str, Any],
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    stopper: EarlyStopping | None,
    train_loader: Iterable,
) -> None:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise _ckpt.CheckpointError(
            f"checkpoint {path} does not match this model or optimizer: {err}. Build them exactly "
            "as in the run that wrote it.") from err
    if scheduler is not None:
        if state["scheduler"] is None:
            raise _ckpt.CheckpointError(f"checkpoint {path} was written without a scheduler; "
                                        "resume without one, or start afresh")
        scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    if stopper is not None and state["early_stopping"] is not None:
        stopper.load_state_dict(state["early_stopping"])
    _ckpt.set_rng_state(state["rng"])
    _ckpt.set_generator_states(train_loader, state["loader_generators"])


def _batch_size(loader: Iterable) -> int | None:
    size = getattr(loader, "batch_size", None)
    if size is None:
        size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
        size = size if size is not None else getattr(getattr(loader, "sampler", None),
                                                      "batch_size", None)
    return int(size) if isinstance(size, int) else None


def _hparams(
    optimizer: torch.optim.Optimizer,
    lr: float,
    epochs: int,
    train_loader: Iterable,
    accumulation_steps: int,
    precision: str,
    stopper: EarlyStopping | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    group = optimizer.param_groups[0]
    hp: dict[str, Any] = {
        "optimizer": type(optimizer).__name__,
        "lr": float(group.get("initial_lr", group["lr"])),
        "weight_decay": float(group.get("weight_decay", 0.0)),
        "epochs": epochs,
        "accumulation_steps": accumulation_steps,
        "precision": precision,
        "early_stopping_patience": stopper.patience if stopper is not None else 0,
    }
    size = _batch_size(train_loader)
    if size is not None:
        hp["batch_size"] = size
    for key, value in (extra or {}).items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, (bool, int, float, str)):
            raise TypeError(f"hparams[{key!r}] must be a number, string or bool, "
                            f"got {type(value).__name__}")
        hp[key] = value
    return hp


class _TensorBoard:
    """The TensorBoard side of :func:`fit`: one event file per run folder."""

    def __init__(self, log_dir: str | os.PathLike, purge_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events of epochs >= purge_step left by an interrupted run, so a
        # resumed run does not plot the epoch it repeats twice.
        self.writer = SummaryWriter(log_dir=str(log_dir),
                                    purge_step=purge_step if purge_step > 1 else None)

    def epoch(self, history: History, epoch: int) -> None:
        w = self.writer
        w.add_scalar("loss/train", history.train_loss[-1], epoch)
        w.add_scalar("accuracy/train", history.train_acc[-1], epoch)
        if not math.isnan(history.val_loss[-1]):
            w.add_scalar("loss/val", history.val_loss[-1], epoch)
            w.add_scalar("accuracy/val", history.val_acc[-1], epoch)
        w.add_scalar("lr", history.lr[-1], epoch)
        w.flush()

    def finish(self, model: nn.Module, val_loader: Iterable | None, loss_fn: nn.Module,
               history: History,
               device: torch.device, class_names: Sequence[str] | None,
               hp: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        step = history.epoch[-1] if len(history) else 0
        metrics: dict[str, float] = {}
        if len(history):
            metrics["hparam/train_accuracy"] = history.train_acc[-1]
        if val_loader is not None:
            result = evaluate(model, val_loader, loss_fn=loss_fn, device=device)
            metrics["hparam/val_loss"] = result["loss"]
            metrics["hparam/val_accuracy"] = result["accuracy"]
            self._confusion(model, val_loader, device, class_names, step)
        # Written into this run's own event file (add_hparams would start a sub-run folder).
        exp, ssi, sei = hparams_summary(hp, metrics)
        for summary in (exp, ssi, sei):
            self.writer.file_writer.add_summary(summary, step)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def _confusion(self, model: nn.Module, val_loader: Iterable, device: torch.device,
                   class_names: Sequence[str] | None, step: int) -> None:
        import matplotlib.pyplot as plt

        from dlkit.metrics import confusion_matrix
        from dlkit.plot import plot_confusion_matrix

        pred = predict(model, val_loader, device=device)
        y = torch.cat([_class_targets(_split_batch(b)[1]).cpu() for b in val_loader])
        k = pred.probs.shape[1]
        names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
        cm = confusion_matrix(y, pred.labels, k)
        fig = plot_confusion_matrix(cm, names, title=f"validation, epoch {step}")
        self.writer.add_figure("confusion_matrix", fig, step, close=True)
        plt.close(fig)

    def close(self) -> None:
        self.writer.close()


def _set_epoch(loader: Iterable, epoch: int) -> None:
    # DistributedSampler and sharded IterableDatasets reshuffle only when told the epoch
    # (chapters 02 and 08); without this every epoch would repeat the first one's order.
    for owner in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        set_epoch = getattr(owner, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


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
    checkpoint: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    early_stopping: int | EarlyStopping | None = None,
    log_dir: str | os.PathLike | None = None,
    hparams: dict[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
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
        checkpoint: Write a checkpoint to this file after every epoch (chapter 07): model,
            optimizer, scheduler, gradient scaler, epoch, history, early-stopping state, the
            random generators of Python, NumPy and torch (and CUDA), and the train loader's
            shuffling generator. Written atomically; the previous one is kept as ``NAME.prev``.
        resume: ``True`` continues from ``checkpoint`` if that file exists (and starts afresh
            if not, so the same call works for the first run and after an interruption); a
            path continues from that file. Training goes on from the epoch after the saved one
            up to ``epochs`` (the total, not the number of extra epochs); on the CPU the final
            weights are bit-identical to those of an uninterrupted run. Build the model,
            optimizer, scheduler and loaders exactly as for the first run before resuming.
        early_stopping: Stop when the validation loss has not improved for this many epochs,
            and end with the best epoch's weights; or an :class:`EarlyStopping` for more
            control. Needs ``val_loader``.
        log_dir: Log to TensorBoard in this folder (chapter 07): per-epoch scalars
            ``loss/train``, ``loss/val``, ``accuracy/train``, ``accuracy/val`` and ``lr``, the
            run's hyperparameters with its final metrics, and at the end a confusion-matrix
            figure of the validation set. View with ``tensorboard --logdir DIR``.
        hparams: Extra hyperparameters to log with ``log_dir`` (numbers, strings or bools),
            added to those ``fit`` knows (optimizer, lr, weight decay, epochs, batch size...).
        class_names: Names of the classes for the confusion-matrix figure (default: indices).

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
    if isinstance(accumulation_steps, bool) or not isinstance(accumulation_steps, int) \
            or accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be a positive integer, got {accumulation_steps!r}")
    stopper = _as_stopper(early_stopping)
    if stopper is not None and val_loader is None:
        raise ValueError("early_stopping watches the validation loss: pass a val_loader")
    resume_from = _resume_path(resume, checkpoint)
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
    if stopper is not None:
        stopper.reset()
    first_epoch = 1
    if resume_from is not None:
        state = _ckpt.load_checkpoint(resume_from)
        _restore(state, resume_from, model, optimizer, scheduler, scaler, stopper, train_loader)
        history = History(**state["history"])
        first_epoch = int(state["epoch"]) + 1
        if state.get("stopped"):  # early stopping had already ended that run
            first_epoch = epochs + 1
    logger = _TensorBoard(log_dir, purge_step=first_epoch) if log_dir is not None else None

    remaining = max(epochs - first_epoch + 1, 0)
    total = steps_per_epoch * remaining if steps_per_epoch is not None else None
    bar = tqdm(total=total, disable=not progress, unit="batch", leave=True, dynamic_ncols=True)
    try:
        for epoch in range(first_epoch, epochs + 1):
            bar.set_description(f"epoch {epoch}/{epochs}")
            _set_epoch(train_loader, epoch - 1)
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
            if logger is not None:
                logger.epoch(history, epoch)
            stop = stopper is not None and stopper.step(epoch, val["loss"], model)
            if checkpoint is not None:
                _ckpt.save_checkpoint(
                    _checkpoint_state(epoch, stop, model, optimizer, scheduler, scaler, stopper,
                                      history, train_loader), checkpoint)
            if stop:
                if verbose:
                    bar.write(f"early stopping: no improvement of the validation loss for "
                              f"{stopper.patience} epochs; the best was epoch {stopper.best_epoch}")
                break
        if stopper is not None and stopper.restore_best and stopper.best_state is not None:
            model.load_state_dict(stopper.best_state)
        if logger is not None:
            logger.finish(model, val_loader, loss_fn, history, device, class_names, _hparams(
                optimizer, lr, epochs, train_loader, accumulation_steps, precision, stopper,
                hparams))
    finally:
        bar.close()
        if logger is not None:
            logger.close()
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
