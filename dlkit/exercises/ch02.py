"""Exercise checks of chapter 02 (data collection)."""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
import torch

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["check_hamming_distance", "check_shard_split", "check_streaming_stats"]


def _batches(seed: int, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # Batches with different brightness, so averaging per-batch statistics gives a different answer.
    return [torch.randint(lo, lo + 100, (n, 3, 4, 4), generator=g, dtype=torch.int64).to(torch.uint8)
            for n, lo in zip(sizes, (0, 60, 150, 20))]


def check_streaming_stats(fn: Callable[[Iterable[torch.Tensor]], tuple[object, object]]) -> Feedback:
    """Check ``fn(batches) -> (mean, std)``: per-channel statistics of ``uint8`` batches in one pass.

    ``batches`` is a one-shot iterator of ``N x C x H x W`` ``uint8`` tensors of unequal sizes; the
    answer is in [0, 1] units, the std is the population std over all pixels. Used in chapter 02.

    Args:
        fn: The learner's function.

    Returns:
        The :class:`Feedback`.
    """
    batches = _batches(0, (5, 2, 9, 1))
    pixels = torch.cat(batches).transpose(0, 1).reshape(3, -1).double() / 255
    mean, std = pixels.mean(dim=1), pixels.std(dim=1, correction=0)
    try:
        got = fn(iter([b.clone() for b in batches]))
    except Exception as err:  # noqa: BLE001 (the learner's code may raise anything)
        return _wrong(f"it raised {type(err).__name__}: {err}",
                      "the batches arrive as an iterator: you can go through them only once.")
    if not (isinstance(got, tuple) and len(got) == 2):
        return _wrong(f"expected a tuple (mean, std), got {type(got).__name__}.")
    try:
        m = torch.as_tensor(np.asarray(got[0], dtype=np.float64)).flatten()
        s = torch.as_tensor(np.asarray(got[1], dtype=np.float64)).flatten()
    except (TypeError, ValueError) as err:
        return _wrong(f"mean and std must be numbers per channel ({err}).")
    if m.shape != (3,) or s.shape != (3,):
        return _wrong(f"expected 3 values each (one per channel), got {tuple(m.shape)} and {tuple(s.shape)}.",
                      "reduce over the batch, height and width dimensions (0, 2, 3), not the channels.")
    if torch.allclose(m, mean * 255, rtol=1e-4) and torch.allclose(s, std * 255, rtol=1e-4):
        return _wrong("the values are in 0..255 units.", "divide by 255 for [0, 1] units.")
    if not torch.allclose(m, mean, rtol=1e-5, atol=1e-7):
        batch_means = torch.stack([b.double().mean(dim=(0, 2, 3)) / 255 for b in batches]).mean(dim=0)
        if torch.allclose(m, batch_means, rtol=1e-5):
            return _wrong("the mean is the average of per-batch means; batches have different sizes.",
                          "accumulate sums and a pixel count, divide once at the end.")
        return _wrong(f"mean {m.numpy().round(4).tolist()} differs from {mean.numpy().round(4).tolist()}.")
    if torch.allclose(s, pixels.std(dim=1, correction=1), rtol=1e-6) and not torch.allclose(s, std, rtol=1e-9):
        return _wrong("that is the sample std (divides by n − 1).",
                      "published normalisation constants use the population std (divide by n).")
    if not torch.allclose(s, std, rtol=1e-5, atol=1e-7):
        batch_stds = torch.stack([b.double().std(dim=(0, 2, 3), correction=0) / 255 for b in batches]).mean(dim=0)
        if torch.allclose(s, batch_stds, rtol=1e-4):
            return _wrong("the std is an average of per-batch stds, which misses the spread between batches.",
                          "accumulate Σx and Σx² per channel; var = Σx²/n − (Σx/n)².")
        return _wrong(f"std {s.numpy().round(4).tolist()} differs from {std.numpy().round(4).tolist()}.",
                      "var = Σx²/n − (Σx/n)² over all pixels of a channel.")
    return _right("mean and population std match the reference over batches of unequal size.")


def check_hamming_distance(fn: Callable[[int, int], object]) -> Feedback:
    """Check ``fn(a, b)``: the number of bit positions where two 64-bit hashes differ.

    Used in chapter 02 (data collection).

    Args:
        fn: The learner's function of two non-negative ints below 2**64.

    Returns:
        The :class:`Feedback`.
    """
    rng = np.random.default_rng(0)
    cases = [(0, 0), (0, 2**64 - 1), (0b1011, 0b0110), (2**63, 1)]
    cases += [(int(a), int(b)) for a, b in rng.integers(0, 2**63, (6, 2), dtype=np.uint64)]
    for a, b in cases:
        # The definition, position by position (the exercise asks for a faster way).
        truth = sum(x != y for x, y in zip(format(a, "064b"), format(b, "064b")))
        try:
            got = fn(a, b)
        except Exception as err:  # noqa: BLE001 (the learner's code may raise anything)
            return _wrong(f"fn({a}, {b}) raised {type(err).__name__}: {err}")
        if isinstance(got, bool) or not isinstance(got, numbers.Integral):
            return _wrong(f"fn({a}, {b}) returned {got!r}, expected an int.")
        if got != truth:
            hint = ("which bitwise operation marks exactly the positions where two numbers differ? "
                    "Then count those positions."
                    if got != abs(a - b) else "that is the numeric difference, not the number of differing bits.")
            return _wrong(f"fn({a:#x}, {b:#x}) = {got}, expected {truth}.", hint)
    return _right("it counts differing bits correctly, including the highest bit.")


def check_shard_split(fn: Callable[[int, int, int, int, int], Iterable[int]]) -> Feedback:
    """Check ``fn(num_shards, rank, world_size, worker, num_workers)``: the shards one reader takes.

    Every shard must be taken by exactly one (rank, worker) pair and the shares must differ by at
    most one shard. Used in chapter 02 (data collection).

    Args:
        fn: The learner's assignment.

    Returns:
        The :class:`Feedback`.
    """
    for num_shards, world, workers in ((12, 2, 2), (13, 2, 2), (7, 3, 1), (10, 1, 3), (5, 2, 2)):
        seen: Counter = Counter()
        shares = []
        for rank in range(world):
            for worker in range(workers):
                try:
                    mine = [int(k) for k in fn(num_shards, rank, world, worker, workers)]
                except Exception as err:  # noqa: BLE001 (the learner's code may raise anything)
                    return _wrong(f"fn({num_shards}, {rank}, {world}, {worker}, {workers}) raised "
                                  f"{type(err).__name__}: {err}")
                seen.update(mine)
                shares.append(len(mine))
        where = f"with {num_shards} shards, {world} rank(s) × {workers} worker(s)"
        bad = [k for k in seen if not 0 <= k < num_shards]
        if bad:
            return _wrong(f"{where} shard ids {sorted(bad)} do not exist.")
        twice = sorted(k for k, c in seen.items() if c > 1)
        if twice:
            return _wrong(f"{where} shards {twice[:5]} are read more than once.",
                          "two readers on different ranks behave alike: every (rank, worker) pair is "
                          "a reader of its own and needs a number no other reader has.")
        missed = sorted(set(range(num_shards)) - set(seen))
        if missed:
            return _wrong(f"{where} shards {missed[:5]} are never read.",
                          "count all the readers, on every rank: each shard must belong to one of them.")
        if max(shares) - min(shares) > 1:
            return _wrong(f"{where} the readers get {shares} shards: unbalanced.",
                          "deal the shards like cards, one to each reader in turn.")
    return _right("every shard is read exactly once, and the readers' shares differ by at most one.")
