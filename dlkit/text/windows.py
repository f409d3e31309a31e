"""Cutting a token stream into ``(B, T)`` input windows and their targets shifted by one
(chapter 10).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import torch

__all__ = ["RandomWindows", "SequentialWindows"]


def _check_stream(ids: torch.Tensor, block_size: int) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.dtype != torch.int64:
        raise TypeError("expected a 1-D int64 tensor of token ids")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    if ids.numel() < block_size + 1:
        raise ValueError(f"a stream of {ids.numel()} tokens is too short for windows of "
                         f"{block_size} (+1 for the targets)")
    return ids


class RandomWindows:
    """Batches of windows at random offsets of a token stream: ``X = s[i:i+T]``, ``Y = s[i+1:i+T+1]``.

    An epoch is ``steps`` batches; the offsets depend only on ``seed`` and the epoch (set by
    :func:`dlkit.train.fit` through ``set_epoch``), so a run is reproducible. With ``seconds``
    an epoch also ends once that much wall-clock time has passed since its first batch (the
    time spent training on the batches included): equal time budgets for models of different
    speed, as in chapter 10's comparison. ``batches`` counts the batches of the last epoch.

    Args:
        ids: The token stream (1-D int64), e.g. the training split encoded.
        block_size: Window length ``T``.
        batch_size: Windows per batch ``B``.
        steps: Batches per epoch (the most, when ``seconds`` is given).
        seed: Seed of the offsets.
        seconds: Optional time limit per epoch.
    """

    def __init__(self, ids: torch.Tensor, block_size: int, batch_size: int, steps: int,
                 seed: int = 0, seconds: float | None = None) -> None:
        self.ids = _check_stream(ids, block_size)
        if batch_size < 1 or steps < 1:
            raise ValueError(f"batch_size and steps must be >= 1, got {batch_size} and {steps}")
        self.block_size, self.batch_size, self.steps = block_size, batch_size, steps
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        self.seed, self.epoch, self.seconds, self.batches = seed, 0, seconds, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        T, offsets = self.block_size, torch.arange(self.block_size + 1)
        self.batches, start = 0, time.perf_counter()
        for _ in range(self.steps):
            if self.seconds is not None and self.batches and \
                    time.perf_counter() - start >= self.seconds:
                return
            self.batches += 1
            starts = torch.randint(0, self.ids.numel() - T, (self.batch_size,), generator=g)
            chunk = self.ids[starts[:, None] + offsets]
            yield chunk[:, :-1], chunk[:, 1:]


class SequentialWindows:
    """Consecutive non-overlapping windows covering a stream once, in order (for evaluation).

    Every token after the first is predicted exactly once, from the tokens before it in its
    window (each window starts without context). Used in chapter 10.

    Args:
        ids: The token stream (1-D int64), e.g. the validation split encoded.
        block_size: Window length ``T``.
        batch_size: Windows per batch.
        max_tokens: Use only the first ``max_tokens + 1`` tokens (a quick estimate).
    """

    def __init__(self, ids: torch.Tensor, block_size: int, batch_size: int = 64,
                 max_tokens: int | None = None) -> None:
        ids = _check_stream(ids, block_size)
        if max_tokens is not None:
            ids = _check_stream(ids[: max_tokens + 1], block_size)
        self.ids, self.block_size, self.batch_size = ids, block_size, batch_size
        self.num_windows = (ids.numel() - 1) // block_size

    def __len__(self) -> int:
        return math.ceil(self.num_windows / self.batch_size)

    @property
    def num_tokens(self) -> int:
        """How many targets the windows hold."""
        return self.num_windows * self.block_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        T = self.block_size
        n = self.num_windows * T
        X = self.ids[:n].view(-1, T)
        Y = self.ids[1:n + 1].view(-1, T)
        for i in range(0, self.num_windows, self.batch_size):
            yield X[i:i + self.batch_size], Y[i:i + self.batch_size]
