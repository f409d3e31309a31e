"""Training any model of chapter 04 with one recipe for a fixed number of images
(:func:`train_budgeted`), with batched crop-and-flip (:func:`random_crop_flip`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import torch
from torch import nn

from dlkit import augment
from dlkit.models.arithmetic import count_flops, count_params



# --------------------------------------------------------------------------- #
# Training on a budget
# --------------------------------------------------------------------------- #
def random_crop_flip(
    X: torch.Tensor, y: torch.Tensor, padding: int = 4, flip: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random translation (pad and crop) and horizontal flip of a whole batch, as tensor ops.

    Used in chapter 04 (CNN design) and ``benchmarks/resnet_gpu.py`` as
    ``fit(train_transform=random_crop_flip)``: the batch never leaves the device and there is
    no per-image Python loop. Each image is zero-padded by ``padding`` pixels on every side and
    a window of the original size is cut at an independent random offset (the effect of
    torchvision's ``RandomCrop(size, padding)``), then mirrored left-right with probability 1/2
    (``RandomHorizontalFlip``). For normalised inputs the zero padding is the mean colour.

    Args:
        X: Images ``N×C×H×W`` of any dtype (uint8 included).
        y: Labels, returned unchanged.
        padding: Largest shift in pixels (0 disables cropping).
        flip: Also flip at random.
        generator: Random source (on ``X``'s device) for repeatable batches.

    Returns:
        ``(X_augmented, y)``; ``X_augmented`` has ``X``'s shape, dtype and device.

    Raises:
        ValueError: If ``X`` is not 4-D or ``padding`` is negative.
    """
    # One implementation for the book: chapter 03's, whose distribution is tested against
    # torchvision's per-image transforms; this wrapper only adapts it to fit's (X, y) hook.
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    out = augment.random_crop_flip(X, padding=padding, flip_p=0.5 if flip else 0.0,
                                   generator=generator)
    return out.contiguous(), y


@dataclasses.dataclass
class RunResult:
    """One row of chapter 04's comparison table, returned by :func:`train_budgeted`.

    Attributes:
        name: Label of the run.
        params: Parameter count.
        flops: Forward FLOPs per 32×32 image (:func:`count_flops`).
        images_per_s: Training throughput, averaged over epochs.
        seconds: Wall-clock training time (all epochs, without the final test pass).
        test_accuracy: Fraction of the test set classified correctly after training.
        history: The :class:`dlkit.train.History` of the run.
    """

    name: str
    params: int
    flops: int
    images_per_s: float
    seconds: float
    test_accuracy: float
    history: object

    def row(self) -> dict[str, object]:
        """The table columns as a dict (without the history)."""
        return {"model": self.name, "params": self.params, "MFLOPs": self.flops / 1e6,
                "images/s": self.images_per_s, "seconds": self.seconds,
                "test acc": self.test_accuracy}


def train_budgeted(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.2,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.1,
    augment: bool = True,
    padding: int = 4,
    name: str | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    channels_last: bool = False,
    precision: str = "fp32",
    progress: bool = False,
    verbose: bool = False,
    eval_each_epoch: bool = False,
    callbacks: Sequence[object] = (),
) -> RunResult:
    """Train ``model`` with one fixed recipe for ``epochs`` passes and measure the result.

    Used in chapter 04 (CNN design) so that every model of its comparison and ablations gets
    exactly the same data, number of images and recipe: SGD with Nesterov momentum 0.9 and
    weight decay, a one-cycle learning-rate schedule (Smith and Topin, 2019) stepped per
    batch, label smoothing, and (``augment``) :func:`random_crop_flip` on every batch. The
    data are shuffled with ``seed``, so two calls see the same batches in the same order.

    Args:
        model: A freshly initialised network (seed before building it).
        train: ``(X, y)`` training tensors (normalised float images, class indices).
        test: ``(X, y)`` test tensors, evaluated once after training.
        epochs: Passes over ``train``.
        batch_size: Examples per step.
        lr: Peak learning rate of the one-cycle schedule.
        weight_decay: SGD's L2 penalty, applied to all parameters.
        label_smoothing: Passed to ``nn.CrossEntropyLoss`` for training (the test loss is
            not smoothed).
        augment: Random crop and flip on every training batch.
        padding: Largest shift of the random crop in pixels (the augmentation's strength;
            chapter 14 searches over it).
        name: Label of the run; the model's class name when ``None``.
        device: Where to train; :func:`dlkit.env.pick_device` when ``None``.
        seed: Seed of the shuffling and augmentation.
        channels_last: Passed to :func:`dlkit.train.fit`.
        precision: Passed to :func:`dlkit.train.fit` (``"bf16"`` on a GPU).
        progress: Show fit's progress bar.
        verbose: Print fit's line per epoch.
        eval_each_epoch: Score ``test`` after every epoch (fit's validation pass), so that
            callbacks such as chapter 14's pruning see ``loop.val``; the result is the last
            epoch's score.
        callbacks: More :mod:`dlkit.train` callbacks for :func:`~dlkit.train.fit`.

    Returns:
        The :class:`RunResult`.
    """
    from dlkit.data import make_loader
    from dlkit.env import pick_device
    from dlkit.train import evaluate, fit

    device = pick_device() if device is None else torch.device(device)
    X_train, y_train = train
    X_test, y_test = test
    params, flops = count_params(model), count_flops(model, tuple(X_train.shape[1:]))
    loader = make_loader(X_train.to(device), y_train.to(device), batch_size, shuffle=True,
                         seed=seed)
    test_loader = make_loader(X_test.to(device), y_test.to(device), 1000)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                weight_decay=weight_decay)
    total = epochs * len(loader)
    # OneCycleLR divides by (pct_start * total - 1): a warm-up of exactly one step (4 steps in
    # all) would divide by zero, so that one case warms up over 0.3 of the run instead.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=total, pct_start=0.3 if total * 0.25 == 1 else 0.25)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    transform = ((lambda X, y: random_crop_flip(X, y, padding=padding, generator=gen))
                 if augment else None)
    start = time.perf_counter()
    history = fit(model, loader, test_loader if eval_each_epoch else None, epochs=epochs,
                  optimizer=optimizer, scheduler=scheduler,
                  loss_fn=nn.CrossEntropyLoss(label_smoothing=label_smoothing), device=device,
                  train_transform=transform, channels_last=channels_last, precision=precision,
                  progress=progress, verbose=verbose, callbacks=callbacks)
    seconds = time.perf_counter() - start
    if eval_each_epoch:
        accuracy = history.val_acc[-1]
    else:
        accuracy = evaluate(model, test_loader, device=device)["accuracy"]
    return RunResult(name or type(model).__name__, params, flops,
                     sum(history.images_per_s) / len(history), seconds, accuracy, history)
