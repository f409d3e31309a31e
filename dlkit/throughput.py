"""Measuring where training time and memory go: profiler labels, images/s, activation memory.

Used in chapter 08 (efficient training) and by ``benchmarks/training_throughput.py``.

* :class:`PILImageDataset` reproduces the usual torchvision-style pipeline (one PIL image and
  one chain of transforms per example, collated by the DataLoader), the baseline every faster
  input pipeline is measured against.
* :func:`profile_steps` runs training steps under ``torch.profiler`` with one
  ``record_function`` label per phase (data, forward, backward, optimizer).
* :func:`measure` trains through :func:`dlkit.train.fit` for a fixed number of batches after a
  warm-up, and reports images/s and memory.
* :func:`saved_activation_bytes` counts the bytes autograd keeps for the backward pass, the
  memory that mixed precision halves, on any device.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from dlkit.train import autocast_dtype, fit

__all__ = ["PILImageDataset", "per_image_transform", "Budget", "profile_steps", "measure",
           "saved_activation_bytes", "PHASES"]

PHASES = ("data", "forward", "backward", "optimizer")


def per_image_transform(mean: Iterable[float], std: Iterable[float]) -> v2.Compose:
    """PIL image -> normalised float tensor, one image at a time (the article's pipeline).

    Args:
        mean: Per-channel means in [0, 1] units.
        std: Per-channel standard deviations.

    Returns:
        A ``torchvision.transforms.v2.Compose``.
    """
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(mean), list(std))])


class PILImageDataset(Dataset):
    """Images kept as a H×W×C uint8 array and turned into PIL images one at a time.

    This is how ``torchvision.datasets.CIFAR10`` serves its items: ``Image.fromarray`` then the
    transform, per index. Used in chapter 08 as the baseline input pipeline.

    Args:
        images: ``uint8`` tensor ``N×C×H×W`` (as :func:`dlkit.data.load` returns).
        labels: ``int64`` tensor ``N``.
        transform: Applied to each PIL image.

    Raises:
        ValueError: If the images are not 4-D uint8 or the lengths differ.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 transform: Callable[[Image.Image], torch.Tensor]) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 tensor N×C×H×W, got {images.dtype} "
                             f"{tuple(images.shape)}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.array = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.array[index])), self.labels[index]


class Budget:
    """A loader cut to ``warmup`` batches in its first pass and ``steps`` in each later one.

    Handing it to :func:`dlkit.train.fit` with ``epochs=2`` times a fixed number of steps after a
    warm-up epoch (the first steps pay for lazy initialisation, worker start-up, compilation).
    """

    def __init__(self, loader: Iterable, steps: int, warmup: int = 2) -> None:
        if steps < 1 or warmup < 0:
            raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps} and {warmup}")
        self.loader, self.steps, self.warmup, self.passes = loader, steps, warmup, 0

    def _count(self) -> int:
        return self.warmup if self.passes == 0 and self.warmup else self.steps

    def __len__(self) -> int:
        return self._count()

    def __iter__(self) -> Iterator[Any]:
        count = self._count()
        self.passes += 1
        done = 0
        while done < count:  # a short loader is cycled
            for batch in self.loader:
                yield batch
                done += 1
                if done == count:
                    return


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def saved_activation_bytes(
    model: nn.Module,
    X: torch.Tensor,
    precision: str = "fp32",
    channels_last: bool = False,
) -> int:
    """Bytes of the tensors autograd saves for the backward pass of one forward pass.

    Parameters are not counted (they exist anyway); their low-precision copies made by
    autocast are. Each storage counts once. Used in chapter 08.

    Args:
        model: The network, on ``X``'s device.
        X: One input batch.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        channels_last: Run in channels-last memory format.

    Returns:
        The number of bytes.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    dtype = autocast_dtype(precision, X.device)
    if channels_last and X.ndim == 4:
        model = model.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)
    ctx = torch.autocast(X.device.type, dtype=dtype) if dtype is not None else None
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if ctx is None:
            out = model(X)
        else:
            with ctx:
                out = model(X)
    del out
    return sum(seen.values())


def profile_steps(
    model: nn.Module,
    loader: Iterable,
    *,
    steps: int,
    device: torch.device | str,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: nn.Module | None = None,
) -> tuple[dict[str, float], Any]:
    """Profile ``steps`` training steps, each phase under its own ``record_function`` label.

    Used in chapter 08: the first thing to do about slow training is to find which phase is
    slow. ``"data"`` covers fetching the batch from the loader and moving it to the device.

    Args:
        model: The network (moved to ``device``).
        loader: Yields ``(X, y)`` batches; cycled if shorter than ``steps``.
        steps: Training steps to profile (after one un-profiled warm-up step).
        device: Where to train.
        optimizer: Default ``torch.optim.Adam(model.parameters())``.
        loss_fn: Default cross-entropy.

    Returns:
        ``(seconds, prof)``: total seconds per phase (keys :data:`PHASES`) and the
        ``torch.profiler.profile`` object, whose ``key_averages().table()`` is the full table.
    """
    device = torch.device(device)
    model.to(device).train()
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    batches = iter(Budget(loader, steps + 1, warmup=0))
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)

    def step() -> None:
        with torch.profiler.record_function("data"):
            X, y = next(batches)
            X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.profiler.record_function("forward"):
            loss = loss_fn(model(X), y)
        with torch.profiler.record_function("backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with torch.profiler.record_function("optimizer"):
            optimizer.step()

    step()  # warm-up: lazy initialisation is not what we want to see
    _sync(device)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        _sync(device)
    seconds = {name: 0.0 for name in PHASES}
    for event in prof.key_averages():
        if event.key in seconds:
            seconds[event.key] = event.cpu_time_total / 1e6
    return seconds, prof


def measure(
    make_model: Callable[[], nn.Module],
    loader: Iterable,
    *,
    steps: int,
    warmup: int = 2,
    device: torch.device | str,
    lr: float = 1e-3,
    **fit_options: Any,
) -> dict[str, float]:
    """Train a fresh model for ``warmup`` then ``steps`` batches; report speed and memory.

    Used in chapter 08 and the throughput benchmark. Training goes through
    :func:`dlkit.train.fit`, so every option measured is one a reader can switch on.

    Args:
        make_model: Builds the network (called once, so every configuration starts alike).
        loader: Yields ``(X, y)`` batches (cycled if too short).
        steps: Batches timed, after ``warmup`` untimed ones.
        warmup: Batches in the untimed first pass (compilation, worker start-up).
        device: Where to train.
        lr: Adam's learning rate.
        **fit_options: ``precision``, ``channels_last``, ``compile``, ``train_transform``...

    Returns:
        ``{"images_per_s", "seconds", "warmup_seconds", "peak_memory_mb"}``; the memory is
        CUDA's peak allocation during the timed pass, ``nan`` on other devices.
    """
    device = torch.device(device)
    model = make_model()
    budget = Budget(loader, steps, warmup)
    fit_options.setdefault("progress", False)
    fit_options.setdefault("verbose", False)
    start = time.perf_counter()
    if warmup:
        fit(model, budget, epochs=1, lr=lr, device=device, **fit_options)
        _sync(device)
    warm = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = fit(model, budget, epochs=1, optimizer=optimizer, device=device, **fit_options)
    _sync(device)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else float("nan"))
    return {"images_per_s": history.images_per_s[-1], "seconds": history.time[-1],
            "warmup_seconds": warm, "peak_memory_mb": peak}
