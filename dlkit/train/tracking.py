"""Callbacks that make a run trustworthy and visible: early stopping, checkpoints, TensorBoard.

Used in chapter 07 through ``fit(..., early_stopping=..., checkpoint=..., resume=...,
log_dir=...)``, which build them; they can also be passed in ``fit(..., callbacks=[...])``.
The events they listen to are described in :mod:`dlkit.train.callbacks`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dlkit import checkpoint as _ckpt
from dlkit.train.callbacks import Callback
from dlkit.train.history import History
from dlkit.train.inference import evaluate_with_predictions

if TYPE_CHECKING:
    from dlkit.train.loop import Loop

__all__ = ["EarlyStopping", "Checkpoint", "TensorBoard"]


@dataclasses.dataclass
class EarlyStopping(Callback):
    """Stop training when the validation loss has not improved for ``patience`` epochs.

    Pass ``fit(..., early_stopping=EarlyStopping(patience=3))`` or simply
    ``early_stopping=3`` (or put it in ``callbacks``). An epoch improves when its validation
    loss is below the best so far by more than ``min_delta``. With ``restore_best`` the model
    ends training with the weights of its best epoch (whether or not patience ran out), which
    is what makes early stopping a regulariser: the epochs after the best one only fit the
    training set more closely. After :func:`fit` returns, ``best_epoch``, ``best_loss`` and
    ``stopped_epoch`` (``None`` when all epochs ran) describe what happened. Used in chapter 07.

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
    order = -50  # decides before the checkpoint saves its state

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) \
                or self.patience < 1:
            raise ValueError(f"patience must be a positive integer, got {self.patience!r}")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta!r}")

    def reset(self) -> None:
        """Forget the previous run (called at the start of every new run)."""
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

    def before_fit(self, loop: Loop) -> None:
        if loop.val_loader is None:
            raise ValueError("early_stopping watches the validation loss: pass a val_loader")
        self.reset()

    def after_validation(self, loop: Loop) -> None:
        if self.step(loop.epoch, loop.val["loss"], loop.model):
            loop.stop = True

    def after_fit(self, loop: Loop) -> None:
        if self.stopped_epoch is not None and loop.stop:
            loop.print(f"early stopping: no improvement of the validation loss for "
                       f"{self.patience} epochs; the best was epoch {self.best_epoch}")
        if self.restore_best and self.best_state is not None:
            loop.model.load_state_dict(self.best_state)


class Checkpoint(Callback):
    """Save everything needed to resume after every epoch; optionally resume first (chapter 07).

    The file holds the model, optimizer, scheduler, gradient scaler, epoch, history,
    early-stopping state, the random generators of Python, NumPy and torch (and CUDA), and the
    train loader's shuffling generators. It is written atomically and the previous one is kept
    as ``NAME.prev`` (:func:`dlkit.checkpoint.save_checkpoint`). On the CPU a resumed run ends
    with weights bit-identical to those of an uninterrupted one.

    Args:
        path: Where to write after every epoch (``None``: only resume, write nothing).
        resume: ``True`` continues from ``path`` if that file exists (and starts afresh if not,
            so the same call works for the first run and after an interruption); a path
            continues from that file; ``False`` starts afresh.

    Raises:
        ValueError: If ``resume=True`` without ``path``.
        FileNotFoundError: If ``resume`` names a file that does not exist.
    """

    order = -40  # restores before the callbacks that read the first epoch set up

    def __init__(self, path: str | os.PathLike | None = None,
                 resume: bool | str | os.PathLike = False) -> None:
        self.path = Path(path) if path is not None else None
        self.resume_from = self._resume_path(resume)

    def _resume_path(self, resume: bool | str | os.PathLike) -> Path | None:
        if resume is False or resume is None:
            return None
        if resume is True:
            if self.path is None:
                raise ValueError("resume=True continues from the checkpoint file: pass "
                                 "checkpoint=PATH (or resume=PATH)")
            return self.path  # may not exist yet: first run
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"resume={str(resume)!r}: no checkpoint file there")
        return path

    @staticmethod
    def _stopper(loop: Loop) -> EarlyStopping | None:
        return next((cb for cb in loop.callbacks if isinstance(cb, EarlyStopping)), None)

    def before_fit(self, loop: Loop) -> None:
        path = self.resume_from
        if path is None or not path.exists():
            return
        state = _ckpt.load_checkpoint(path)
        try:
            loop.model.load_state_dict(state["model"])
            loop.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise _ckpt.CheckpointError(
                f"checkpoint {path} does not match this model or optimizer: {err}. Build them "
                "exactly as in the run that wrote it.") from err
        if loop.scheduler is not None:
            if state["scheduler"] is None:
                raise _ckpt.CheckpointError(f"checkpoint {path} was written without a "
                                            "scheduler; resume without one, or start afresh")
            loop.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] and loop.scaler is not None:
            loop.scaler.load_state_dict(state["scaler"])
        stopper = self._stopper(loop)
        if stopper is not None and state["early_stopping"] is not None:
            stopper.load_state_dict(state["early_stopping"])
        _ckpt.set_rng_state(state["rng"])
        _ckpt.set_generator_states(loop.train_loader, state["loader_generators"])
        loop.history = History.from_dict(state["history"])
        loop.first_epoch = int(state["epoch"]) + 1
        if state.get("stopped"):  # early stopping had already ended that run
            loop.first_epoch = loop.epochs + 1

    def after_epoch(self, loop: Loop) -> None:
        if self.path is None:
            return
        stopper = self._stopper(loop)
        scaler = loop.scaler if loop.scaler is not None else torch.amp.GradScaler(enabled=False)
        state = {
            "format": _ckpt.FORMAT,
            "epoch": loop.epoch,
            "stopped": loop.stop,
            "model": loop.model.state_dict(),
            "optimizer": loop.optimizer.state_dict(),
            "scheduler": loop.scheduler.state_dict() if loop.scheduler is not None else None,
            "scaler": scaler.state_dict(),
            "early_stopping": stopper.state_dict() if stopper is not None else None,
            "history": loop.history.as_dict(),
            "rng": _ckpt.rng_state(),
            # The shuffling order of the next epoch is decided by these generators' states.
            "loader_generators": _ckpt.generator_states(loop.train_loader),
        }
        _ckpt.save_checkpoint(state, self.path)


class TensorBoard(Callback):
    """Log the run to TensorBoard in ``log_dir`` (chapter 07).

    Per epoch: the scalars ``loss/train``, ``loss/val``, ``accuracy/train``, ``accuracy/val``,
    ``lr`` and every entry of ``History.metrics`` (e.g. the named terms of a VAE's loss). At
    the end: the run's hyperparameters with its final metrics, and a confusion-matrix figure of
    the validation set, whose predictions and labels come from one and the same pass. View with
    ``tensorboard --logdir DIR``.

    Args:
        log_dir: The run's folder.
        hparams: Extra hyperparameters to log (numbers, strings or bools), added to those the
            loop knows (optimizer, lr, weight decay, epochs, batch size...).
        class_names: Names of the classes for the confusion matrix (default: indices).

    Raises:
        TypeError: If a hyperparameter is not a number, string or bool.
    """

    order = 10

    def __init__(self, log_dir: str | os.PathLike, hparams: dict[str, Any] | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.extra = _check_hparams(hparams)
        self.class_names = list(class_names) if class_names is not None else None
        self.writer: Any = None

    def before_fit(self, loop: Loop) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events of epochs >= first_epoch left by an interrupted run, so a
        # resumed run does not plot the epoch it repeats twice.
        purge = loop.first_epoch if loop.first_epoch > 1 else None
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge)

    def after_epoch(self, loop: Loop) -> None:
        h, w, epoch = loop.history, self.writer, loop.epoch
        w.add_scalar("loss/train", h.train_loss[-1], epoch)
        if not math.isnan(h.train_acc[-1]):
            w.add_scalar("accuracy/train", h.train_acc[-1], epoch)
        if not math.isnan(h.val_loss[-1]):
            w.add_scalar("loss/val", h.val_loss[-1], epoch)
        if not math.isnan(h.val_acc[-1]):
            w.add_scalar("accuracy/val", h.val_acc[-1], epoch)
        w.add_scalar("lr", h.lr[-1], epoch)
        for name, column in h.metrics.items():
            if len(column) == len(h) and not math.isnan(column[-1]):
                w.add_scalar(name, column[-1], epoch)
        w.flush()

    def hparams(self, loop: Loop) -> dict[str, Any]:
        """The hyperparameters logged at the end: those the loop knows, then ``hparams``."""
        group = loop.optimizer.param_groups[0]
        stopper = Checkpoint._stopper(loop)
        hp: dict[str, Any] = {
            "optimizer": type(loop.optimizer).__name__,
            "lr": float(group.get("initial_lr", group["lr"])),
            "weight_decay": float(group.get("weight_decay", 0.0)),
            "epochs": loop.epochs,
            "accumulation_steps": loop.accumulation_steps,
            "precision": loop.precision,
            "early_stopping_patience": stopper.patience if stopper is not None else 0,
        }
        size = _batch_size(loop.train_loader)
        if size is not None:
            hp["batch_size"] = size
        hp.update(self.extra)
        return hp

    def after_fit(self, loop: Loop) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        h = loop.history
        step = h.epoch[-1] if len(h) else 0
        metrics: dict[str, float] = {}
        if len(h) and not math.isnan(h.train_acc[-1]):
            metrics["hparam/train_accuracy"] = h.train_acc[-1]
        if loop.val_loader is not None and loop.validate is not None:
            # A custom validation (not a classifier): its last result, no confusion matrix.
            metrics["hparam/val_loss"] = loop.val["loss"]
            if not math.isnan(loop.val["accuracy"]):
                metrics["hparam/val_accuracy"] = loop.val["accuracy"]
        elif loop.val_loader is not None:
            result, pred, true, k = evaluate_with_predictions(
                loop.model, loop.val_loader, loss_fn=loop.loss_fn, device=loop.device)
            metrics["hparam/val_loss"] = result["loss"]
            metrics["hparam/val_accuracy"] = result["accuracy"]
            self._confusion(pred, true, k, step)
        # Written into this run's own event file (add_hparams would start a sub-run folder).
        exp, ssi, sei = hparams_summary(self.hparams(loop), metrics)
        for summary in (exp, ssi, sei):
            self.writer.file_writer.add_summary(summary, step)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def _confusion(self, pred: torch.Tensor, true: torch.Tensor, k: int, step: int) -> None:
        import matplotlib.pyplot as plt

        from dlkit.metrics import confusion_matrix
        from dlkit.plot import plot_confusion_matrix  # imports matplotlib: only when drawing

        names = self.class_names or [str(i) for i in range(k)]
        cm = confusion_matrix(true, pred, k)
        fig = plot_confusion_matrix(cm, names, title=f"validation, epoch {step}")
        self.writer.add_figure("confusion_matrix", fig, step, close=True)
        plt.close(fig)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _check_hparams(extra: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (extra or {}).items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, (bool, int, float, str)):
            raise TypeError(f"hparams[{key!r}] must be a number, string or bool, "
                            f"got {type(value).__name__}")
        out[key] = value
    return out


def _batch_size(loader: Any) -> int | None:
    size = getattr(loader, "batch_size", None)
    if size is None:
        size = getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
        size = size if size is not None else getattr(getattr(loader, "sampler", None),
                                                      "batch_size", None)
    return int(size) if isinstance(size, int) else None
