"""Measuring recommenders: RMSE of predicted ratings, and Recall/NDCG/MAP@k of top-k lists.

Ranking is evaluated the way a deployed recommender is used: for every test user, *all* items
are scored, the items the user already rated in training are removed from the candidates, the
top k are kept, and the held-out items count as relevant. With ``R_u`` the user's relevant
items, ``L_u`` the top-k list and ``rel_j`` = 1 if the j-th item of the list is relevant:

* ``Recall@k = |L_u ∩ R_u| / |R_u|``;
* ``NDCG@k = DCG / IDCG`` with ``DCG = sum_j rel_j / log2(j + 1)`` (Järvelin and Kekäläinen
  2002) and IDCG the DCG of a perfect list, ``min(|R_u|, k)`` hits on top;
* ``AP@k = sum_j P@j · rel_j / min(|R_u|, k)``, ``P@j`` the precision of the first j items;

each averaged over users with at least one relevant item. Used in chapter 13 (recommender
systems), which checks them against scikit-learn and torchmetrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from dlkit._util import eval_mode

__all__ = ["rating_metrics", "rating_validation", "ranking_from_scores", "ranking_metrics",
           "score_matrix", "catalogue_coverage", "popularity_of"]


@torch.no_grad()
def rating_metrics(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                   clip: tuple[float, float] | None = (0.5, 5.0), batch_size: int = 65536) -> dict[str, float]:
    """MSE, RMSE and MAE of a rating model on the pairs ``X`` (N×2) with true ratings ``y``.

    Predictions are clipped to the rating scale (what a deployed system would do, and what
    scikit-surprise does by default). Used in chapter 13.

    Returns:
        ``{"loss": MSE, "rmse": ..., "mae": ...}`` (``loss`` so it can be a ``validate=``).
    """
    if len(y) == 0:
        raise ValueError("no ratings to evaluate")
    device = next((b.device for b in model.buffers()), torch.device("cpu"))
    with eval_mode(model):
        pred = torch.cat([model(xb.to(device)).float().cpu() for xb in X.split(batch_size)])
    if clip is not None:
        pred = pred.clamp(*clip)
    err = (pred - y.float()).double()
    mse = (err**2).mean().item()
    return {"loss": mse, "rmse": math.sqrt(mse), "mae": err.abs().mean().item()}


def rating_validation(model: nn.Module, loader: Iterable, device: torch.device | str) -> dict[str, float]:
    """``fit(..., validate=rating_validation)``: MSE (as ``loss``), RMSE and MAE over a loader.

    Predictions are clipped to 0.5..5 stars as in :func:`rating_metrics`. Chapter 13.
    """
    Xs, ys = zip(*[(X, y) for X, y in loader])
    model.to(device)
    return rating_metrics(model, torch.cat(Xs), torch.cat(ys))


@torch.no_grad()
def score_matrix(model: nn.Module, users: torch.Tensor | None = None) -> torch.Tensor:
    """Scores of every item for each user in one matrix product: ``U[users] @ V.T``.

    Uses the model's ``user_vectors()`` and ``item_vectors()`` (float32, on the CPU).
    Chapter 13.
    """
    U, V = model.user_vectors().float().cpu(), model.item_vectors().float().cpu()
    if users is not None:
        U = U[users]
    return U @ V.T


def ranking_from_scores(scores: torch.Tensor, k: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """The top-``k`` item ids per row of ``scores`` (users × items), excluded items removed.

    Args:
        scores: Float scores, one row per user.
        k: List length.
        exclude: Bool mask of the same shape, True for items never to recommend (the
            user's training items).

    Returns:
        int64 (users × k), best first (``torch.topk``).
    """
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude must have the shape of scores {tuple(scores.shape)}, "
                             f"got {tuple(exclude.shape)}")
        scores = scores.masked_fill(exclude, -math.inf)
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in [1, {scores.shape[1]}], got {k}")
    return torch.topk(scores, k, dim=1).indices


def ranking_metrics(top: torch.Tensor, relevant: torch.Tensor, k: int | None = None,
                    per_user: bool = False) -> dict[str, float] | dict[str, torch.Tensor]:
    """Recall@k, NDCG@k and MAP@k of ranked lists against a relevance mask (definitions above).

    Args:
        top: int64 (users × k) ranked item ids, best first.
        relevant: bool (users × items), True for the items that count as hits.
        k: Cut-off (default: the width of ``top``).
        per_user: Return the per-user values (users without relevant items dropped).

    Returns:
        ``{"recall": ..., "ndcg": ..., "map": ..., "users": n}``, means over the users with at
        least one relevant item.
    """
    k = top.shape[1] if k is None else k
    if top.shape[0] != relevant.shape[0] or k > top.shape[1]:
        raise ValueError(f"top {tuple(top.shape)} and relevant {tuple(relevant.shape)} must have "
                         f"one row per user and at least k={k} columns")
    top = top[:, :k]
    n_rel = relevant.sum(1)
    keep = n_rel > 0
    hits = relevant.gather(1, top)[keep].double()
    n_rel = n_rel[keep].double()
    ranks = torch.arange(1, k + 1, dtype=torch.float64)
    discount = 1.0 / torch.log2(ranks + 1)
    dcg = (hits * discount).sum(1)
    ideal = torch.cumsum(discount, 0)[(n_rel.clamp(max=k) - 1).long()]
    precision_at = torch.cumsum(hits, 1) / ranks
    values = {
        "recall": hits.sum(1) / n_rel,
        "ndcg": dcg / ideal,
        "map": (precision_at * hits).sum(1) / n_rel.clamp(max=k),
    }
    if per_user:
        return values
    out = {name: v.mean().item() for name, v in values.items()}
    out["users"] = int(keep.sum())
    return out


def catalogue_coverage(top: torch.Tensor, num_items: int) -> float:
    """Share of the catalogue that appears in at least one user's list. Chapter 13."""
    return torch.unique(top).numel() / num_items


def popularity_of(top: torch.Tensor, popularity: torch.Tensor) -> float:
    """Mean training popularity (interaction count) of the recommended items. Chapter 13."""
    return popularity[top].float().mean().item()
