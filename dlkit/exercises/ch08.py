"""Exercise checks of chapter 08 (efficient training)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch.utils.data import DistributedSampler

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["check_effective_batch", "check_rank_indices"]


def check_effective_batch(
    answer: object, per_rank_batch: int, world_size: int, accumulation_steps: int = 1
) -> Feedback:
    """Check the number of examples behind one optimizer step of a data-parallel run.

    Used in chapter 08: with DDP every rank computes the gradient of its own batch, the
    gradients are averaged, and with gradient accumulation each rank sums several batches first.

    Args:
        answer: The learner's number.
        per_rank_batch: Examples per batch on each rank.
        world_size: Number of processes.
        accumulation_steps: Batches accumulated per optimizer step.

    Returns:
        The :class:`Feedback`.
    """
    truth = per_rank_batch * world_size * accumulation_steps
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer != int(answer):
        return _wrong(f"expected a whole number of examples, got {answer!r}.",
                      "count the examples whose gradients end up in one optimizer step, on every rank.")
    value = int(answer)
    if value == truth:
        return _right(f"{per_rank_batch} per rank × {world_size} ranks × {accumulation_steps} "
                      f"accumulated batches = {truth:,} examples per optimizer step.")
    if value == per_rank_batch * world_size and accumulation_steps > 1:
        return _wrong(f"{value:,} leaves out gradient accumulation.",
                      f"each rank sums {accumulation_steps} batches before the step.")
    if value == per_rank_batch * accumulation_steps and world_size > 1:
        return _wrong(f"{value:,} is what one rank contributes.",
                      f"DDP averages the gradients of all {world_size} ranks.")
    if value == per_rank_batch:
        return _wrong(f"{value:,} is one rank's batch.",
                      "count every rank and every accumulated batch.")
    return _wrong(f"{value:,} is not the effective batch size.",
                  "follow one optimizer step: how many batches does each rank add up before it, "
                  "and how many ranks average their gradients?")


def check_rank_indices(fn: Callable[[int, int, int], list[int]]) -> Feedback:
    """Check ``fn(num_examples, world_size, rank)``: the example indices one rank trains on.

    The reference is ``torch.utils.data.DistributedSampler`` without shuffling: the list is
    padded by repeating its start until it divides evenly, then rank ``r`` takes every
    ``world_size``-th index starting at ``r``. Used in chapter 08.

    Args:
        fn: The learner's function.

    Returns:
        The :class:`Feedback`.
    """
    if not callable(fn):
        return _wrong(f"expected a function, got {type(fn).__name__}.",
                      "define def rank_indices(num_examples, world_size, rank): ...")
    try:
        inspect.signature(fn).bind(1, 1, 0)
    except (TypeError, ValueError):
        return _wrong("the function must take three arguments: num_examples, world_size, rank.")
    cases = [(10, 2, 0), (10, 2, 1), (12, 4, 3), (10, 3, 0), (10, 3, 2), (7, 4, 1), (1, 2, 1)]
    for n, world, r in cases:
        truth = list(DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False))
        try:
            got = fn(n, world, r)
            got = [int(i) for i in (got.tolist() if isinstance(got, torch.Tensor) else got)]
        except Exception as error:  # a learner's bug is feedback, not a crash
            return _wrong(f"rank_indices({n}, {world}, {r}) raised {type(error).__name__}: {error}")
        if got == truth:
            continue
        call = f"rank_indices({n}, {world}, {r})"
        if world > 1 and len(got) > 1 and got == list(range(got[0], got[0] + len(got))):
            return _wrong(f"{call} gives the contiguous block {got}.",
                          "interleave: take every world_size-th index, starting at rank.")
        if len(got) != len(truth):
            if got == list(range(r, n, world)):
                return _wrong(f"{call} gave {len(got)} indices, but every rank needs "
                              f"{len(truth)}: the ranks must run the same number of steps.",
                              "print list(DistributedSampler(range(10), num_replicas=3, rank=2, "
                              "shuffle=False)): where do the extra indices come from?")
            return _wrong(f"{call} gave {len(got)} indices; expected {len(truth)}.",
                          "each rank gets ceil(num_examples / world_size) indices.")
        if sorted(got) == sorted(truth):
            return _wrong(f"{call} has the right indices in the wrong order: {got}.",
                          "keep the order of the padded list.")
        return _wrong(f"{call} returned {got}; DistributedSampler gives {truth}.",
                      "compare the two lists: which indices are repeated, and in what order does "
                      "a rank take its share?")
    return _right("your shards match torch's DistributedSampler, padding included.")
