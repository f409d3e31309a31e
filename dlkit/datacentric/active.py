"""Active learning: which unlabelled images to label next (chapter 15).

A strategy looks at the current model's probabilities on the pool (and at the pool's features)
and returns the indices to label. Uncertainty strategies pick what the model is least sure of
(:func:`entropy_scores`, :func:`margin_scores`); diversity strategies spread the picks over the
feature space (:func:`kcenter_greedy`, the core-set of Sener and Savarese, 2018) or do both
(:func:`badge_select`, Ash et al., 2020). :func:`run_active_learning` alternates training and
labelling at equal budgets so that strategies can be compared round by round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from dlkit.datacentric.heads import accuracy_of, fit_head, predict_proba

STRATEGIES = ("random", "entropy", "margin", "coreset", "badge")


def entropy_scores(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy of each row of ``probs`` in nats (higher = less certain)."""
    p = probs.clamp_min(1e-12)
    return -(probs * p.log()).sum(1)


def margin_scores(probs: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 probability of each row (lower = less certain)."""
    if probs.shape[1] < 2:
        raise ValueError("margin needs at least two classes")
    top2 = probs.topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


def _check_k(k: int, n: int) -> int:
    if not isinstance(k, (int, np.integer)) or k < 1 or k > n:
        raise ValueError(f"cannot pick {k} of {n} pool items; expected 1 <= k <= {n}")
    return int(k)


def kcenter_greedy(pool: torch.Tensor, labelled: torch.Tensor, k: int) -> torch.Tensor:
    """Greedy k-center (core-set) selection: repeatedly take the point farthest from every centre.

    Args:
        pool: ``N x D`` features of the unlabelled pool.
        labelled: ``M x D`` features of the labelled set (the initial centres; ``M`` may be 0).
        k: How many pool points to pick.

    Returns:
        ``k`` distinct row indices into ``pool``, in the order picked.
    """
    k = _check_k(k, len(pool))
    pool = pool.float()
    if len(labelled):
        dist = torch.full((len(pool),), float("inf"))
        for i in range(0, len(labelled), 1024):
            dist = torch.minimum(dist, torch.cdist(pool, labelled[i:i + 1024].float()).min(1).values)
    else:
        dist = (pool - pool.mean(0)).norm(dim=1)  # no centre yet: start from the farthest from the mean
    sq = (pool * pool).sum(1)
    picks = []
    for step in range(k):
        i = int(dist.argmax())
        picks.append(i)
        # |p - c|² = |p|² - 2 p·c + |c|², one matrix-vector product per pick
        to_i = (sq - 2 * (pool @ pool[i]) + sq[i]).clamp_min(0).sqrt()
        # without labelled centres the mean only chose the first pick: it covers no point
        dist = to_i if step == 0 and not len(labelled) else torch.minimum(dist, to_i)
        dist[i] = -1.0
    return torch.tensor(picks)


def badge_select(probs: torch.Tensor, features: torch.Tensor, k: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """BADGE: k-means++ seeding on the last layer's gradient embeddings (Ash et al., 2020).

    The embedding of item ``i`` is ``g_i = (p_i - onehot(argmax p_i)) ⊗ z_i``, the gradient of
    the cross-entropy with respect to a linear layer's weights if the prediction were the label:
    long where the model is unsure, pointing in different directions for different images.
    k-means++ then picks points far (in squared distance) from those already picked, at random
    in proportion to that distance. The squared distance between two outer products is computed
    from the two factors (``|g_i - g_j|² = |a_i|²|z_i|² + |a_j|²|z_j|² - 2 (a_i·a_j)(z_i·z_j)``)
    without forming the ``C·D``-dimensional embeddings.

    Args:
        probs: ``N x C`` probabilities on the pool.
        features: ``N x D`` inputs of the linear layer (standardised as the head sees them).
        k: How many to pick.
        generator: Random source of the k-means++ draws.

    Returns:
        ``k`` distinct row indices, in the order picked.
    """
    k = _check_k(k, len(probs))
    a = probs.float().clone()
    a[torch.arange(len(a)), a.argmax(1)] -= 1.0
    z = features.float()
    sq = (a * a).sum(1) * (z * z).sum(1)
    first = int(sq.argmax())
    picks = [first]
    dist = (sq + sq[first] - 2 * (a @ a[first]) * (z @ z[first])).clamp_min(0)
    dist[first] = 0.0
    for _ in range(k - 1):
        if dist.sum() <= 0:  # every remaining point coincides with a centre: take any of them
            rest = torch.ones(len(dist), dtype=torch.bool)
            rest[torch.tensor(picks)] = False
            i = int(torch.nonzero(rest)[0])
        else:  # draw i with probability dist[i] / sum(dist)
            cdf = dist.double().cumsum(0)
            u = torch.rand(1, generator=generator, dtype=torch.float64) * cdf[-1]
            # right=True: a draw equal to a step's upper end moves past zero-width steps
            i = min(int(torch.searchsorted(cdf, u, right=True)), len(dist) - 1)
            while dist[i] <= 0 and i > 0:  # only float rounding at the very end lands here
                i -= 1
        picks.append(i)
        dist = torch.minimum(dist, (sq + sq[i] - 2 * (a @ a[i]) * (z @ z[i])).clamp_min(0))
        dist[i] = 0.0
    return torch.tensor(picks)


def select(strategy: str, k: int, *, probs: torch.Tensor, pool_features: torch.Tensor,
           labelled_features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pick ``k`` pool indices with one of :data:`STRATEGIES`.

    Args:
        strategy: ``"random"``, ``"entropy"`` (highest entropy), ``"margin"`` (smallest margin),
            ``"coreset"`` (:func:`kcenter_greedy`) or ``"badge"`` (:func:`badge_select`).
        k: How many to pick.
        probs: The current model's ``N x C`` probabilities on the pool.
        pool_features: ``N x D`` pool features (standardised by the current head).
        labelled_features: Features of the labelled set, same standardisation.
        generator: Random source (random and BADGE).

    Returns:
        ``k`` distinct indices into the pool.
    """
    n = len(probs)
    k = _check_k(k, n)
    if strategy == "random":
        return torch.randperm(n, generator=generator)[:k]
    if strategy == "entropy":
        return entropy_scores(probs).topk(k).indices
    if strategy == "margin":
        return (-margin_scores(probs)).topk(k).indices
    if strategy == "coreset":
        return kcenter_greedy(pool_features, labelled_features, k)
    if strategy == "badge":
        return badge_select(probs, pool_features, k, generator)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")


@dataclass
class ActiveRun:
    """One strategy's labelling curve: validation accuracy after each round."""

    strategy: str
    seed: int
    labels: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    labelled: torch.Tensor | None = None  # pool indices labelled, in the order they were labelled


def run_active_learning(
    strategy: str,
    pool: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    start: int,
    step: int,
    rounds: int,
    num_classes: int,
    seed: int = 0,
    candidates: int | None = None,
    fit: Callable[..., torch.nn.Module] | None = None,
) -> ActiveRun:
    """Label ``start`` random pool items, then ``rounds`` times: train, score, label ``step`` more.

    The initial labelled set depends only on ``seed``, so every strategy of one seed starts from
    the same images; the labels of the pool are looked up only for the items picked (the
    oracle). Accuracy is measured on ``val`` after every training, including the last.

    Args:
        strategy: One of :data:`STRATEGIES`.
        pool: ``(features, labels)`` of the unlabelled pool.
        val: ``(features, labels)`` used to measure each round.
        start: Labels bought at random before the first round.
        step: Labels bought per round.
        rounds: Number of labelling rounds.
        num_classes: Number of classes.
        seed: Seed of the initial set, the random picks and the heads.
        candidates: If set, each round scores only this many unlabelled items drawn at random
            (the same draw for every strategy of a seed), a common way to keep the diversity
            strategies' cost bounded on large pools; ``None`` scores the whole pool.
        fit: ``fit(features, labels, num_classes, seed=)`` returning a head with a ``mean``/``std``
            standardisation; :func:`~dlkit.datacentric.heads.fit_head` when ``None``.

    Returns:
        The :class:`ActiveRun`, with ``rounds + 1`` points.
    """
    X, y = pool
    if start < 1 or step < 1 or rounds < 0 or start + rounds * step > len(X):
        raise ValueError(f"start={start}, step={step}, rounds={rounds} need "
                         f"{start + rounds * step} labels but the pool has {len(X)}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if candidates is not None and candidates < 1:
        raise ValueError(f"candidates must be a positive count or None, got {candidates}")
    fit = fit or fit_head
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(X), generator=gen)
    labelled = order[:start]
    run = ActiveRun(strategy, seed)
    for r in range(rounds + 1):
        head = fit(X[labelled], y[labelled], num_classes, seed=seed)
        run.labels.append(len(labelled))
        run.val_accuracy.append(accuracy_of(head, *val))
        if r == rounds:
            break
        unlabelled = torch.ones(len(X), dtype=torch.bool)
        unlabelled[labelled] = False
        rest = torch.nonzero(unlabelled).squeeze(1)
        if candidates is not None and candidates < len(rest):
            draw = torch.Generator().manual_seed(seed * 1_000_003 + r)  # not the strategy's generator
            rest = rest[torch.randperm(len(rest), generator=draw)[:max(candidates, step)]]
        scaled = (X - head.mean) / head.std
        picks = select(strategy, step, probs=predict_proba(head, X[rest]),
                       pool_features=scaled[rest], labelled_features=scaled[labelled],
                       generator=gen)
        labelled = torch.cat([labelled, rest[picks]])
    run.labelled = labelled
    return run
