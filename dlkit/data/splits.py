"""Train/validation splits: stratified, group-aware, and k-fold.

* :func:`split_indices` (chapter 03): a stratified split of ``0..N-1`` by the largest-remainder
  method;
* :func:`group_split` (chapter 02): the same, never separating a group of duplicates;
* :func:`stratified_kfold` (chapters 02 and 07): k folds, through scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dlkit.data._checks import _check_count, _check_seed

__all__ = ["split_indices", "group_split", "stratified_kfold"]


def _largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
    """Share ``total`` among classes in proportion to ``counts`` (Hamilton's method)."""
    quotas = counts * (total / counts.sum())
    alloc = np.floor(quotas).astype(np.int64)
    alloc = np.minimum(alloc, counts)
    short = total - int(alloc.sum())
    # Ties between equal remainders go to the lower class index (stable sort)
    # so the allocation never depends on the random seed.
    for k in np.argsort(-(quotas - alloc), kind="stable"):
        if short == 0:
            break
        if alloc[k] < counts[k]:
            alloc[k] += 1
            short -= 1
    return alloc


def _stratified_pick(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Pick ``count`` indices, class-stratified and seeded; returned sorted."""
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    alloc = _largest_remainder(counts, count)
    rng = np.random.default_rng(seed)
    picked = []
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        picked.append(rng.permutation(members)[: alloc[k]])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def split_indices(
    labels: torch.Tensor, val_fraction: float | int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices ``0..N-1`` into stratified, disjoint train and validation sets.

    The validation size is shared among classes by the largest-remainder
    method, so each class's share is within one item of its proportion; which
    items go to validation is drawn with a generator seeded by ``seed``.
    Used in chapter 03 (training loop) for early stopping and model selection.

    Args:
        labels: Integer tensor of shape ``N``.
        val_fraction: A float in ``(0, 1)`` (fraction of ``N``, rounded) or an
            int count in ``[1, N - 1]``.
        seed: Non-negative seed; the same seed gives the same split.

    Returns:
        ``(train_idx, val_idx)``: sorted ``int64`` tensors that together cover
        every index exactly once.

    Raises:
        ValueError: If ``labels`` is not 1-D with at least 2 items, or
            ``val_fraction`` or ``seed`` is out of range.
        TypeError: If ``val_fraction`` is neither float nor int.
    """
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or y.shape[0] < 2:
        raise ValueError(f"labels must be 1-D with at least 2 items, got shape {y.shape}")
    n = y.shape[0]
    if isinstance(val_fraction, bool):
        raise TypeError("val_fraction must be a float in (0, 1) or an int count, got bool")
    if isinstance(val_fraction, (int, np.integer)):
        n_val = _check_count(val_fraction, "val_fraction (as a count)", 1, n - 1)
    elif isinstance(val_fraction, (float, np.floating)):
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1) as a float, got {val_fraction}")
        n_val = min(max(int(round(val_fraction * n)), 1), n - 1)
    else:
        raise TypeError(
            f"val_fraction must be a float in (0, 1) or an int count, got {type(val_fraction).__name__}"
        )
    val = _stratified_pick(y, n_val, _check_seed(seed))
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return torch.from_numpy(np.flatnonzero(mask).astype(np.int64)), torch.from_numpy(val.astype(np.int64))


def _labels_and_groups(labels: Any, groups: Any) -> tuple[np.ndarray, np.ndarray]:
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or y.shape[0] < 2:
        raise ValueError(f"labels must be 1-D with at least 2 items, got shape {y.shape}")
    if groups is None:
        g = np.arange(y.shape[0])
    else:
        g = groups.cpu().numpy() if isinstance(groups, torch.Tensor) else np.asarray(groups)
        if g.shape != y.shape:
            raise ValueError(f"groups must have one entry per label, shape {y.shape}, got {g.shape}")
    return y, g


def group_split(
    labels: torch.Tensor | np.ndarray,
    val_fraction: float,
    groups: torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified train/validation split that never separates a group.

    Items with the same group id (e.g. duplicates found by
    :func:`dlkit.dedup.duplicate_groups`) all go to the same side, so no copy
    of a validation image is trained on. Each group counts for the class of
    its items. Groups are visited in a seeded random order and a group
    joins validation while its class is still below its target share (the
    largest-remainder allocation of :func:`split_indices`), so class shares
    stay within about one group's size of exact. Without ``groups`` every item is
    its own group. Used in chapter 02 (data collection).

    Args:
        labels: Integer class of each of ``N`` items.
        val_fraction: Fraction in ``(0, 1)`` of items for validation.
        groups: Group id of each item (any integers), or ``None``.
        seed: Non-negative seed; same seed, same split.

    Returns:
        ``(train_idx, val_idx)``: sorted, disjoint ``int64`` tensors covering ``0..N-1``.

    Raises:
        ValueError: If shapes disagree, ``val_fraction`` is not in ``(0, 1)``
            or ``seed`` is negative.
    """
    y, g = _labels_and_groups(labels, groups)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (float, np.floating)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be a float in (0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(_check_seed(seed))
    uniq, inverse = np.unique(g, return_inverse=True)
    classes, class_of_item = np.unique(y, return_inverse=True)
    # Items of each class in each group: a group of duplicates may mix labels.
    per_group = np.zeros((len(uniq), len(classes)), dtype=np.int64)
    np.add.at(per_group, (inverse, class_of_item), 1)
    target = _largest_remainder(np.bincount(class_of_item), int(round(val_fraction * len(y))))
    taken = np.zeros(len(classes), dtype=np.int64)
    in_val = np.zeros(len(uniq), dtype=bool)
    for k in rng.permutation(len(uniq)):
        # Join if that brings the class counts closer to their targets than staying out.
        if np.abs(taken + per_group[k] - target).sum() < np.abs(taken - target).sum():
            in_val[k] = True
            taken += per_group[k]
    val_mask = in_val[inverse]
    return (torch.from_numpy(np.flatnonzero(~val_mask).astype(np.int64)),
            torch.from_numpy(np.flatnonzero(val_mask).astype(np.int64)))


def stratified_kfold(
    labels: torch.Tensor | np.ndarray,
    k: int = 5,
    groups: torch.Tensor | np.ndarray | None = None,
    seed: int = 0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stratified k-fold indices, keeping groups whole; scikit-learn does the work.

    Without ``groups`` this is :class:`sklearn.model_selection.StratifiedKFold`
    with ``shuffle=True, random_state=seed``; with groups it is
    :class:`~sklearn.model_selection.StratifiedGroupKFold`. Used in chapter 02
    (data collection) and chapter 07 (cross-validation).

    Args:
        labels: Integer class of each item.
        k: Number of folds (>= 2).
        groups: Group id of each item, or ``None``.
        seed: Non-negative seed.

    Returns:
        ``k`` pairs ``(train_idx, val_idx)`` of sorted ``int64`` tensors; the
        validation parts partition ``0..N-1``.

    Raises:
        ValueError: If ``k`` < 2, shapes disagree, or a class has fewer than
            ``k`` members (scikit-learn's message).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y, g = _labels_and_groups(labels, groups)
    k = _check_count(k, "k", 2, len(y))
    seed = _check_seed(seed)
    if groups is None:
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    else:
        splits = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, g)
    return [(torch.from_numpy(np.sort(tr).astype(np.int64)), torch.from_numpy(np.sort(va).astype(np.int64)))
            for tr, va in splits]
