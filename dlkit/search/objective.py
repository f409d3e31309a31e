"""The objective of chapter 14's searches: train one configuration, return its validation accuracy.

Every trial trains with chapter 04's recipe (:func:`dlkit.models.train_budgeted`: SGD with
Nesterov momentum, a one-cycle schedule, label smoothing, crop-and-flip) on a fixed training
subset of CIFAR-10's training set and is scored on a validation subset of the same set; the
test set is never opened by a search. :class:`PruningCallback` reports each epoch's validation
accuracy to Optuna and stops a trial its pruner gives up on.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import optuna
import torch
from torch import nn

from dlkit.models import ResNetCIFAR, SmallCNN, train_budgeted
from dlkit.search.space import Space, suggest
from dlkit.train import Callback

__all__ = ["SearchData", "search_data", "build_model", "PruningCallback", "fit_config", "train_config",
           "make_objective", "objective_from_config"]


@dataclasses.dataclass
class SearchData:
    """Normalised tensors of a search: a training subset and a validation subset.

    Attributes:
        X_train, y_train: Images the trials train on.
        X_val, y_val: Images the trials are scored on (never trained on).
        mean, std: Channel statistics of the training subset (to normalise other images alike).
        classes: Class names.
        downsample: Factor by which the images were shrunk (1: full resolution).
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    classes: list[str]
    downsample: int = 1


def search_data(name: str = "cifar10", n_train: int = 2_000, n_val: int = 1_000, *,
                seed: int = 0, root: str | os.PathLike | None = None,
                downsample: int = 1) -> SearchData:
    """Stratified training and validation subsets of a dataset's *training* split.

    With ``downsample=2`` the images are averaged over 2×2 blocks (32×32 → 16×16): a cheap,
    low-fidelity version of the task on which a search can afford many more trials
    (Chrabaszcz et al., 2017, "A downsampled variant of ImageNet as an alternative to the
    CIFAR datasets"); whether its best configuration stays best at full size is a question
    chapter 14 measures rather than assumes.

    Args:
        name: A :func:`dlkit.data.load` name (``"cifar10"``; ``"shapes"`` for fast tests).
        n_train: Training images.
        n_val: Validation images (disjoint from the training ones).
        seed: Seed of the subset choice.
        root: Where to look for the files first.
        downsample: Shrink the images by this factor (average pooling).

    Returns:
        The :class:`SearchData`, normalised with the training subset's statistics.
    """
    from dlkit import data

    full = data.load(name, "train", root=root)
    if n_train + n_val > len(full):
        raise ValueError(f"n_train + n_val = {n_train + n_val} exceeds the {len(full)} training "
                         f"images of {name}")
    rest, val_idx = data.split_indices(full.labels, n_val, seed=seed)
    if n_train < len(rest):
        rest = rest[data.split_indices(full.labels[rest], n_train, seed=seed + 1)[1]]
    train_idx = rest
    mean, std = data.channel_stats(full.subset(train_idx))
    X_train, y_train = data.to_tensors(full.subset(train_idx), mean, std)
    X_val, y_val = data.to_tensors(full.subset(val_idx), mean, std)
    if downsample != 1:
        X_train = torch.nn.functional.avg_pool2d(X_train, downsample)
        X_val = torch.nn.functional.avg_pool2d(X_val, downsample)
    return SearchData(X_train, y_train, X_val, y_val, mean, std, list(full.classes), downsample)


def build_model(config: Mapping[str, Any], num_classes: int = 10) -> nn.Module:
    """The network a configuration describes, from chapter 04's families.

    Args:
        config: ``width`` (channels of the first stage, default 16), ``stages`` (default 3),
            and ``blocks`` (residual blocks per stage; 0, the default, gives chapter 04's
            :class:`~dlkit.models.SmallCNN`, conv-BN-ReLU-pool stages) with ``residual``
            (shortcuts in the blocks, default ``True``) for a
            :class:`~dlkit.models.ResNetCIFAR`.
        num_classes: Outputs.

    Returns:
        A freshly initialised model (seed before calling).
    """
    width, stages = int(config.get("width", 16)), int(config.get("stages", 3))
    blocks = int(config.get("blocks", 0))
    if blocks == 0:
        return SmallCNN(num_classes, width=width, stages=stages)
    return ResNetCIFAR(num_classes, blocks=(blocks,) * stages, width=width,
                       residual=bool(config.get("residual", True)))


class PruningCallback(Callback):
    """Report each epoch's validation accuracy to an Optuna trial; stop the trial if pruned.

    Used in chapter 14 with :func:`dlkit.train.fit` (through :func:`train_config`): after each
    validation pass it calls ``trial.report(accuracy, epoch)``; when the study's pruner answers
    ``trial.should_prune()``, it records how many epochs ran (user attribute ``epochs``) and
    raises :class:`optuna.TrialPruned`, which ends ``fit`` and marks the trial pruned.

    Args:
        trial: The running trial.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def after_validation(self, loop: Any) -> None:
        accuracy = float(loop.val["accuracy"])
        self.trial.report(accuracy, loop.epoch)
        self.trial.set_user_attr("epochs", loop.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {loop.epoch} at validation "
                                     f"accuracy {accuracy:.3f}")


def fit_config(config: Mapping[str, Any], data: SearchData, *, epochs: int, seed: int = 0,
               device: torch.device | str | None = None, precision: str = "fp32",
               callbacks: tuple = ()) -> tuple[nn.Module, float]:
    """Train the model of ``config`` with chapter 04's recipe; return it and its accuracy.

    Args:
        config: Hyperparameters: ``lr`` (peak learning rate, default 0.2), ``weight_decay``
            (5e-4), ``label_smoothing`` (0.1), ``padding`` (largest crop shift in pixels of
            the full-size image, 4; divided by ``data.downsample``), ``augment`` (crop and flip
            at all, ``True``) and the architecture of :func:`build_model`.
        data: Training and validation tensors.
        epochs: Passes over the training subset.
        seed: Seed of the weights, the batch order and the augmentation.
        device: Where to train.
        precision: ``"fp32"`` or ``"bf16"`` (passed to :func:`dlkit.train.fit`).
        callbacks: More callbacks (a :class:`PruningCallback`); with any, the validation
            subset is scored after every epoch.

    Returns:
        ``(model, validation accuracy after the last epoch)``; the accuracy is ``nan`` if the
        loss diverged.
    """
    from dlkit.env import seed_everything

    seed_everything(seed)
    model = build_model(config, len(data.classes))
    try:
        result = train_budgeted(
            model, (data.X_train, data.y_train), (data.X_val, data.y_val), epochs=epochs,
            lr=float(config.get("lr", 0.2)), weight_decay=float(config.get("weight_decay", 5e-4)),
            label_smoothing=float(config.get("label_smoothing", 0.1)),
            padding=int(config.get("padding", 4)) // data.downsample,
            augment=bool(config.get("augment", True)), seed=seed, device=device,
            precision=precision, eval_each_epoch=bool(callbacks), callbacks=callbacks)
    except FloatingPointError:  # fit stops a run whose loss became nan: a bad configuration
        return model, float("nan")
    return model, float(result.test_accuracy)


def train_config(config: Mapping[str, Any], data: SearchData, **kwargs: Any) -> float:
    """The validation accuracy of :func:`fit_config` (same arguments), without the model."""
    return fit_config(config, data, **kwargs)[1]


def make_objective(data: SearchData, space: Space, *, epochs: int, seed: int = 0,
                   device: torch.device | str | None = None, precision: str = "fp32",
                   fixed: Mapping[str, Any] | None = None,
                   prune: bool = False) -> Callable[[optuna.Trial], float]:
    """An Optuna objective: sample a configuration from ``space``, train it, return accuracy.

    Every trial uses the same ``seed`` (weights, batch order), so two trials differ only in
    their hyperparameters. A diverged run scores 0 (a failure to learn, not a crash). Each
    trial records its wall-clock ``seconds``, its ``epochs`` and the ``worker_pid`` that ran it
    as user attributes.

    Args:
        data: Training and validation tensors.
        space: The search space.
        epochs: Epochs per trial (the most, when pruning).
        seed: Training seed shared by all trials.
        device: Where to train.
        precision: ``"fp32"`` or ``"bf16"``.
        fixed: Settings outside the space (e.g. an architecture), the same for every trial.
        prune: Report per-epoch validation accuracy and obey the study's pruner.

    Returns:
        ``objective(trial) -> validation accuracy``.
    """
    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker_pid", os.getpid())
        trial.set_user_attr("epochs", epochs)
        config = {**(fixed or {}), **suggest(trial, space)}
        start = time.perf_counter()
        try:
            accuracy = train_config(config, data, epochs=epochs, seed=seed, device=device,
                                    precision=precision,
                                    callbacks=(PruningCallback(trial),) if prune else ())
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - start)
        return 0.0 if accuracy != accuracy else accuracy

    return objective


def objective_from_config(config: Mapping[str, Any]) -> Callable[[optuna.Trial], float]:
    """Build an objective from plain settings: what a worker process receives as JSON.

    Args:
        config: ``dataset``, ``n_train``, ``n_val``, ``data_seed``, ``downsample`` (of
            :func:`search_data`),
            ``epochs``, ``seed``, ``precision``, ``device`` (e.g. ``"cpu"``; default: the
            best available), ``space`` (a name of
            :data:`dlkit.search.spaces.SPACES`), ``prune`` and ``fixed``.

    Returns:
        The objective, with its data loaded once.
    """
    from dlkit.search.spaces import SPACES

    data = search_data(config.get("dataset", "cifar10"), int(config.get("n_train", 2_000)),
                       int(config.get("n_val", 1_000)), seed=int(config.get("data_seed", 0)),
                       downsample=int(config.get("downsample", 1)))
    return make_objective(data, SPACES[config.get("space", "hyperparameters")],
                          epochs=int(config.get("epochs", 1)), seed=int(config.get("seed", 0)),
                          precision=config.get("precision", "fp32"),
                          fixed=config.get("fixed"), prune=bool(config.get("prune", False)),
                          device=config.get("device"))
