"""Splitting ratings for evaluation: at random, or in time (each user's last ratings held out).

A random split lets a model learn from a user's *later* ratings and be tested on their earlier
ones, a look into the future that production never has; the per-user temporal split of
:func:`temporal_split` trains on each user's past and tests on what they rated next. Chapter 13
(recommender systems) measures how much the random split flatters a model.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dlkit._util import check_fraction, check_positive_int

__all__ = ["Split", "random_split", "temporal_split", "temporal_violations", "interaction_mask"]


class Split(NamedTuple):
    """Row indices of the training and the held-out ratings (int64 tensors, sorted)."""

    train: torch.Tensor
    test: torch.Tensor


def random_split(n: int, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Hold out a uniformly random ``test_fraction`` of ``n`` ratings.

    Used in chapter 13 to show what a random split leaks.

    Args:
        n: Number of ratings.
        test_fraction: Share held out (rounded to a whole number of ratings).
        seed: Seed of the permutation.

    Returns:
        The :class:`Split`.
    """
    fraction = check_fraction(test_fraction, "test_fraction")
    check_positive_int(n, "n", minimum=2)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(fraction * n))
    return Split(perm[n_test:].sort().values, perm[:n_test].sort().values)


def temporal_split(user: torch.Tensor, timestamp: torch.Tensor, test_fraction: float = 0.2,
                   min_train: int = 1) -> Split:
    """Hold out each user's most recent ratings: the last ``ceil(test_fraction * n_u)`` of them.

    Within a user, ratings are ordered by time, ties by their row (stable), so no held-out
    rating is older than any of that user's training ratings (equal timestamps are allowed:
    MovieLens records many ratings in the same second). Every user keeps at least
    ``min_train`` training ratings; a user with ``min_train`` ratings or fewer has none held
    out. Apply it again to the training rows to carve a validation split out of the past.
    Used in chapter 13.

    Args:
        user: int64 tensor (N,) of user ids.
        timestamp: tensor (N,) of times (any comparable integers or floats).
        test_fraction: Share of each user's ratings held out.
        min_train: Fewest training ratings a user keeps.

    Returns:
        The :class:`Split`, indices into the N rows.

    Raises:
        ValueError: If shapes differ or ``test_fraction`` is not in (0, 1).
    """
    fraction = check_fraction(test_fraction, "test_fraction")
    if user.ndim != 1 or timestamp.shape != user.shape:
        raise ValueError(f"user and timestamp must be 1-D of the same length, got "
                         f"{tuple(user.shape)} and {tuple(timestamp.shape)}")
    n = user.shape[0]
    # Sort by (user, time, row): two stable sorts, the less significant key first.
    order = torch.argsort(timestamp, stable=True)
    order = order[torch.argsort(user[order], stable=True)]
    u_sorted = user[order]
    counts = torch.bincount(u_sorted)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts[u_sorted]  # position of each rating in its user's history
    n_u = counts[u_sorted]
    n_test = torch.ceil(n_u.double() * fraction).long()
    n_test = torch.minimum(n_test, (n_u - min_train).clamp(min=0))
    held = rank >= n_u - n_test
    return Split(order[~held].sort().values, order[held].sort().values)


def temporal_violations(user: torch.Tensor, timestamp: torch.Tensor, split: Split) -> int:
    """Number of users with a held-out rating strictly older than one of their training ratings.

    Zero for :func:`temporal_split`; most users for a random split. Used in chapter 13.

    Args:
        user, timestamp: The ratings' users and times (N,).
        split: A :class:`Split` of the N rows.

    Returns:
        The count of users whose held-out past precedes their training future.
    """
    num = int(user.max()) + 1 if len(user) else 0
    tr_u, te_u = user[split.train], user[split.test]
    last_train = torch.full((num,), torch.iinfo(torch.int64).min, dtype=torch.int64)
    last_train.scatter_reduce_(0, tr_u, timestamp[split.train].long(), reduce="amax")
    first_test = torch.full((num,), torch.iinfo(torch.int64).max, dtype=torch.int64)
    first_test.scatter_reduce_(0, te_u, timestamp[split.test].long(), reduce="amin")
    return int((first_test < last_train).sum())


def interaction_mask(user: torch.Tensor, item: torch.Tensor, num_users: int,
                     num_items: int) -> torch.Tensor:
    """Dense bool matrix (num_users × num_items), True where the user rated the item.

    What ranking evaluation needs twice: the training items to exclude from a user's
    candidates, and the held-out items that count as relevant. Used in chapter 13.
    """
    mask = torch.zeros(num_users, num_items, dtype=torch.bool)
    mask[user, item] = True
    return mask
