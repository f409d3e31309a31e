"""Measure inference latency the way a deployment decision needs it.

One timing is noise: the first calls allocate memory and pick kernels, and a shared machine
interrupts some calls. So: warm-up calls that are not timed, then many timed calls, and the
median (typical) and 95th percentile (bad-but-common) of their durations, per batch size, with
the number of threads stated. Used in chapter 09 (deployment) and ``benchmarks/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["Latency", "as_runner", "latency_table", "measure_latency", "torch_threads"]


@dataclasses.dataclass(frozen=True)
class Latency:
    """Timings of one model at one batch size (milliseconds per call)."""

    name: str
    batch_size: int
    threads: int
    median_ms: float
    p95_ms: float
    repeats: int

    @property
    def images_per_s(self) -> float:
        """Throughput implied by the median call."""
        return self.batch_size / (self.median_ms / 1e3)

    def as_dict(self) -> dict[str, float | int | str]:
        """The fields plus ``images_per_s``, e.g. for a JSON report."""
        return {**dataclasses.asdict(self), "images_per_s": self.images_per_s}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` PyTorch intra-op threads (``None``: leave as is); yields the count."""
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ValueError(f"threads must be at least 1, got {n}")
        torch.set_num_threads(int(n))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def as_runner(model) -> Callable[[torch.Tensor], object]:
    """A function ``f(X)`` running ``model`` on a float tensor batch.

    Accepts an ``nn.Module`` (run in eval mode under ``torch.inference_mode``), an ONNX Runtime
    ``InferenceSession`` (fed ``X`` as a NumPy array, conversion included in the timing, as a
    server pays it) or any callable. Used in chapter 09.
    """
    if isinstance(model, nn.Module):
        model.eval()

        def run_torch(X: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return model(X)

        return run_torch
    if hasattr(model, "run") and hasattr(model, "get_inputs"):
        name = model.get_inputs()[0].name

        def run_ort(X: torch.Tensor) -> np.ndarray:
            return model.run(None, {name: X.numpy()})[0]

        return run_ort
    if callable(model):
        return model
    raise TypeError(f"expected an nn.Module, an onnxruntime.InferenceSession or a callable, got {type(model).__name__}")


def measure_latency(
    model,
    example: torch.Tensor,
    *,
    name: str = "",
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
) -> Latency:
    """Median and 95th-percentile latency of ``model`` on the batch ``example``.

    Used in chapter 09.

    Args:
        model: An ``nn.Module``, an ONNX Runtime session or a callable (see :func:`as_runner`).
        example: The input batch; its first dimension is the batch size.
        name: A label for the report.
        warmup: Untimed calls first (memory allocation, kernel selection, caches).
        repeats: Timed calls (at least 2).
        threads: PyTorch intra-op threads during the measurement (``None``: unchanged). An ONNX
            Runtime session's threads are fixed when it is created (see ``ort_session``); pass
            the same number here so that the report states it.

    Returns:
        A :class:`Latency`.
    """
    if warmup < 0 or repeats < 2:
        raise ValueError(f"need warmup >= 0 and repeats >= 2, got warmup={warmup}, repeats={repeats}")
    if not isinstance(example, torch.Tensor) or example.ndim < 1:
        raise ValueError("example must be a batch tensor")
    run = as_runner(model)
    with torch_threads(threads) as used:
        for _ in range(warmup):
            run(example)
        times = np.empty(repeats)
        for i in range(repeats):
            start = time.perf_counter()
            run(example)
            times[i] = time.perf_counter() - start
    return Latency(name, int(example.shape[0]), threads if threads is not None else used,
                   float(np.median(times) * 1e3), float(np.percentile(times, 95) * 1e3), repeats)


def latency_table(
    models: dict[str, object],
    sample: torch.Tensor,
    batch_sizes: Sequence[int] = (1, 64),
    *,
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
) -> list[Latency]:
    """:func:`measure_latency` for several models and batch sizes, interleaved.

    Models are measured in turn for each batch size, so a slow spell of a shared machine does
    not fall on one model only. Used in chapter 09 and ``benchmarks/inference_latency.py``.

    Args:
        models: Label → model (``nn.Module``, ONNX Runtime session or callable).
        sample: Inputs; batches are its first rows (repeated if it is shorter).
        batch_sizes: Batch sizes to time.
        warmup: Untimed calls per measurement.
        repeats: Timed calls per measurement.
        threads: PyTorch threads (and the number stated for ONNX Runtime sessions).

    Returns:
        One :class:`Latency` per model and batch size.
    """
    rows = []
    for b in batch_sizes:
        reps = -(-b // len(sample))
        x = sample.repeat(reps, *([1] * (sample.ndim - 1)))[:b].contiguous()
        for name, model in models.items():
            rows.append(measure_latency(model, x, name=name, warmup=warmup, repeats=repeats, threads=threads))
    return rows
