"""Label noise: corrupt labels at an exact rate, find them again, and train despite them (chapter 15).

:func:`symmetric_noise` and :func:`pair_noise` corrupt a known set of labels, so a detector can
be scored by precision and recall (:func:`detection_report`) against the truth. The detector
itself is cleanlab's confident learning (Northcutt et al., 2021), fed with out-of-sample
probabilities from :func:`cross_val_probs`. :func:`generalized_cross_entropy` (Zhang and
Sabuncu, 2018) is a loss that trains through the noise instead of removing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch


class Corruption(NamedTuple):
    """Noisy labels and which of them were changed."""

    labels: torch.Tensor
    flipped: torch.Tensor  # bool mask

    @property
    def rate(self) -> float:
        return self.flipped.float().mean().item()


def _check_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"labels must be a vector of class indices, got {labels.dtype} {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return labels.long()


def _check_rate(rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be a fraction in [0, 1], got {rate}")
    return float(rate)


def symmetric_noise(labels: torch.Tensor, rate: float, num_classes: int, seed: int = 0) -> Corruption:
    """Give exactly ``round(rate * N)`` labels, chosen at random, a different class at random.

    Every wrong class is equally likely, so the noise carries no information about the image.

    Args:
        labels: ``N`` clean class indices.
        rate: Fraction of labels to change.
        num_classes: Number of classes (at least 2).
        seed: Seed of the choice of labels and of their new classes.

    Returns:
        A :class:`Corruption` whose ``flipped`` mask has exactly ``round(rate * N)`` entries.
    """
    labels = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    if num_classes < 2:
        raise ValueError("noise needs at least two classes")
    gen = torch.Generator().manual_seed(seed)
    n_flip = round(rate * len(labels))
    idx = torch.randperm(len(labels), generator=gen)[:n_flip]
    shift = torch.randint(1, num_classes, (n_flip,), generator=gen)  # 1..C-1: never the same class
    noisy = labels.clone()
    noisy[idx] = (labels[idx] + shift) % num_classes
    flipped = torch.zeros(len(labels), dtype=torch.bool)
    flipped[idx] = True
    return Corruption(noisy, flipped)


def pair_noise(labels: torch.Tensor, pairs: dict[int, int], rate: float, num_classes: int,
               seed: int = 0) -> Corruption:
    """Class-dependent noise: move exactly ``round(rate * n_c)`` labels of each class ``c`` to ``pairs[c]``.

    Models the confusions annotators make (cat labelled dog and dog labelled cat): the noise
    depends on the true class, so it is harder to tell from a real pattern than symmetric noise.

    Args:
        labels: ``N`` clean class indices.
        pairs: Source class to target class, e.g. ``{3: 5, 5: 3}``.
        rate: Fraction of each source class to move.
        num_classes: Number of classes.
        seed: Seed of which examples move.

    Returns:
        A :class:`Corruption`.
    """
    labels = _check_labels(labels, num_classes)
    rate = _check_rate(rate)
    for src, dst in pairs.items():
        if src == dst or not (0 <= src < num_classes and 0 <= dst < num_classes):
            raise ValueError(f"pair {src} -> {dst} must join two different classes in 0..{num_classes - 1}")
    gen = torch.Generator().manual_seed(seed)
    noisy = labels.clone()
    flipped = torch.zeros(len(labels), dtype=torch.bool)
    for src, dst in pairs.items():
        members = torch.nonzero(labels == src).squeeze(1)
        chosen = members[torch.randperm(len(members), generator=gen)[:round(rate * len(members))]]
        noisy[chosen] = dst
        flipped[chosen] = True
    return Corruption(noisy, flipped)


def cross_val_probs(
    features: torch.Tensor,
    labels: torch.Tensor,
    fit: Callable[[torch.Tensor, torch.Tensor], Callable[[torch.Tensor], torch.Tensor]],
    k: int = 5,
    seed: int = 0,
) -> torch.Tensor:
    """Out-of-sample probabilities: each item is scored by a model trained on the other folds.

    Confident learning needs probabilities the model did not get by memorising the (possibly
    wrong) label of the very item it scores. Folds are stratified by the given labels
    (:func:`dlkit.data.stratified_kfold`).

    Args:
        features: ``N x D`` inputs.
        labels: ``N`` labels as given (noisy).
        fit: ``fit(features, labels)`` returning ``predict(features) -> N x C probabilities``.
        k: Number of folds.
        seed: Seed of the folds.

    Returns:
        ``N x C`` probabilities, row ``i`` from the model that did not see item ``i``.
    """
    from dlkit.data import stratified_kfold

    probs: torch.Tensor | None = None
    for train_idx, held_idx in stratified_kfold(labels, k=k, seed=seed):
        predict = fit(features[train_idx], labels[train_idx])
        p = predict(features[held_idx])
        if probs is None:
            probs = torch.zeros(len(labels), p.shape[1])
        probs[held_idx] = p.float()
    assert probs is not None
    return probs


class Detection(NamedTuple):
    """How well a set of suspected labels matches the truly corrupted ones."""

    found: int
    corrupted: int
    true_positives: int
    precision: float
    recall: float


def detection_report(suspected: torch.Tensor | np.ndarray, flipped: torch.Tensor | np.ndarray) -> Detection:
    """Precision and recall of ``suspected`` (bool mask) against the known ``flipped`` mask.

    Precision is the fraction of suspected labels that were really corrupted (``nan`` when
    nothing is suspected); recall, the fraction of corrupted labels that were found (``nan``
    when nothing was corrupted).
    """
    s = torch.as_tensor(np.asarray(suspected), dtype=torch.bool)
    f = torch.as_tensor(np.asarray(flipped), dtype=torch.bool)
    if s.shape != f.shape or s.ndim != 1:
        raise ValueError(f"suspected and flipped must be masks of one length, got {tuple(s.shape)} and {tuple(f.shape)}")
    tp = int((s & f).sum())
    n_s, n_f = int(s.sum()), int(f.sum())
    return Detection(n_s, n_f, tp, tp / n_s if n_s else float("nan"), tp / n_f if n_f else float("nan"))


def generalized_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Per-example generalized cross-entropy ``(1 - p_y^q) / q`` (Zhang and Sabuncu, 2018).

    ``q -> 0`` recovers cross-entropy; ``q = 1`` is the mean absolute error on probabilities,
    which is robust to symmetric noise but slow to train. The gradient is cross-entropy's
    multiplied by ``p_y^q``: examples the model finds implausible (often the mislabelled ones)
    pull less.
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must be in (0, 1], got {q}")
    log_p_y = torch.log_softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    return -torch.expm1(q * log_p_y) / q  # (1 - exp(q log p)) / q without cancellation
