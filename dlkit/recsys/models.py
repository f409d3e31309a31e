"""Rating and ranking models: baselines, matrix factorisation, a two-tower network, and their steps.

Every model takes a batch ``X`` of shape N×2 (user id, item id) and returns N scores (predicted
stars for explicit ratings), so they all train through :func:`dlkit.train.fit` and are scored by
the same functions of :mod:`dlkit.recsys.metrics`. Each also exposes ``user_vectors()`` and
``item_vectors()`` whose dot products rank items for a user (the biases folded in), which is
what serving (:mod:`dlkit.recsys.serving`) needs.

* :class:`GlobalMean` and :class:`Biases` (:func:`fit_biases`, regularised least squares) are
  the baselines every model must beat;
* :class:`MatrixFactorization` is the biased MF of Koren, Bell and Volinsky (2009), with the
  gradient of its regularised objective written out in :func:`mf_gradients`;
* :class:`TwoTower` adds an item tower over genres and release year, so an item with few or no
  ratings still gets a sensible vector (cold start);
* :class:`RatingStep` (MSE + L2 on the batch's rows) and :class:`BPRStep` (Rendle et al. 2009,
  one sampled negative per positive) are the replaceable training steps.

Used in chapter 13 (recommender systems).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.train.loop import StepOutput, TrainStep

__all__ = ["GlobalMean", "Biases", "fit_biases", "MatrixFactorization", "mf_objective",
           "mf_gradients", "TwoTower", "RatingStep", "BPRStep", "SoftmaxStep", "item_popularity"]


def _pairs(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"expected a batch of (user, item) pairs of shape (N, 2), got {tuple(X.shape)}")
    return X[:, 0], X[:, 1]


class GlobalMean(nn.Module):
    """Predicts the mean training rating for every pair: the floor of all rating models."""

    def __init__(self, mean: float) -> None:
        super().__init__()
        self.register_buffer("mu", torch.tensor(float(mean)))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        u, _ = _pairs(X)
        return self.mu.expand(u.shape[0])


class Biases(nn.Module):
    """``mu + b_u + b_i``: how generous a user is and how well liked an item is, nothing more.

    Attributes:
        mu: The global mean; ``bu`` (num_users,) and ``bi`` (num_items,) the offsets.
    """

    def __init__(self, mu: float, bu: torch.Tensor, bi: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mu", torch.tensor(float(mu)))
        self.register_buffer("bu", bu.float().clone())
        self.register_buffer("bi", bi.float().clone())

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        u, i = _pairs(X)
        return self.mu + self.bu[u] + self.bi[i]

    def user_vectors(self) -> torch.Tensor:
        return torch.ones(len(self.bu), 1)

    def item_vectors(self) -> torch.Tensor:
        return self.bi[:, None].clone()


def fit_biases(user: torch.Tensor, item: torch.Tensor, rating: torch.Tensor, num_users: int,
               num_items: int, reg_user: float = 5.0, reg_item: float = 5.0,
               iterations: int = 30) -> Biases:
    """Fit ``b_u`` and ``b_i`` by regularised least squares, with ``mu`` the mean rating.

    Minimises ``sum (r - mu - b_u - b_i)^2 + reg_user * sum b_u^2 + reg_item * sum b_i^2`` by
    exact alternating minimisation: with the user biases fixed, each item's bias has the closed
    form ``b_i = sum_u (r - mu - b_u) / (reg_item + n_i)``, and vice versa. Each half-step solves
    its block exactly, so the objective never increases and converges to the unique minimiser
    of this strictly convex quadratic. An item without training ratings keeps ``b_i = 0``.
    Used in chapter 13.

    Args:
        user, item, rating: The training ratings (N,).
        num_users, num_items: Sizes of the id ranges.
        reg_user, reg_item: The L2 penalties (>= 0); larger pulls rarely seen ids towards 0.
        iterations: Alternations.

    Returns:
        The fitted :class:`Biases`.
    """
    if reg_user < 0 or reg_item < 0:
        raise ValueError(f"the penalties must be >= 0, got {reg_user}, {reg_item}")
    r = rating.double()
    mu = r.mean()
    bu = torch.zeros(num_users, dtype=torch.float64)
    bi = torch.zeros(num_items, dtype=torch.float64)
    n_u = torch.bincount(user, minlength=num_users).double()
    n_i = torch.bincount(item, minlength=num_items).double()
    for _ in range(iterations):
        bi = torch.zeros_like(bi).index_add_(0, item, r - mu - bu[user]) / (reg_item + n_i).clamp(min=1e-12)
        bu = torch.zeros_like(bu).index_add_(0, user, r - mu - bi[item]) / (reg_user + n_u).clamp(min=1e-12)
    return Biases(mu.item(), bu, bi)


def item_popularity(item: torch.Tensor, num_items: int) -> torch.Tensor:
    """Number of training interactions of each item: the popularity ranking's score. Chapter 13."""
    return torch.bincount(item, minlength=num_items).float()


class MatrixFactorization(nn.Module):
    """Biased matrix factorisation: ``r_ui ≈ mu + b_u + b_i + p_u · q_i``.

    Koren, Bell and Volinsky (2009). Used in chapter 13.

    Args:
        num_users, num_items: Sizes of the id ranges.
        dim: Length of the user and item vectors.
        mean: ``mu``, the mean training rating (a fixed buffer); 0 for ranking losses.
        init_std: Standard deviation of the initial vectors (biases start at 0).
        seed: Seed of the initialisation (``None``: torch's global generator).
    """

    def __init__(self, num_users: int, num_items: int, dim: int = 32, mean: float = 0.0,
                 init_std: float = 0.1, seed: int | None = None) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        self.P = nn.Parameter(torch.randn(num_users, dim, generator=g) * init_std)
        self.Q = nn.Parameter(torch.randn(num_items, dim, generator=g) * init_std)
        self.bu = nn.Parameter(torch.zeros(num_users))
        self.bi = nn.Parameter(torch.zeros(num_items))
        self.register_buffer("mu", torch.tensor(float(mean)))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        u, i = _pairs(X)
        return self.mu + self.bu[u] + self.bi[i] + (self.P[u] * self.Q[i]).sum(dim=1)

    def penalty(self, X: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of ``|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2`` (the L2 term per rating)."""
        u, i = _pairs(X)
        return ((self.P[u] ** 2).sum(1) + (self.Q[i] ** 2).sum(1)
                + self.bu[u] ** 2 + self.bi[i] ** 2).mean()

    def score_candidates(self, u: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores (B × C) of the users ``u`` (B,) for the candidate items (C,), without ``mu + b_u``."""
        return self.P[u] @ self.Q[items].T + self.bi[items]

    def user_vectors(self) -> torch.Tensor:
        """``[p_u, 1]``: dotted with :meth:`item_vectors` gives the score minus ``mu + b_u``."""
        return torch.cat([self.P, torch.ones(len(self.P), 1, device=self.P.device)], 1).detach()

    def item_vectors(self) -> torch.Tensor:
        """``[q_i, b_i]`` (a user's own offset ``mu + b_u`` does not change their ranking)."""
        return torch.cat([self.Q, self.bi[:, None]], 1).detach()


def mf_objective(model: MatrixFactorization, X: torch.Tensor, y: torch.Tensor,
                 reg: float) -> torch.Tensor:
    """The regularised objective of one batch: ``mean_b[(r̂_b - r_b)^2] + reg * penalty``. Chapter 13."""
    return F.mse_loss(model(X), y) + reg * model.penalty(X)


@torch.no_grad()
def mf_gradients(model: MatrixFactorization, X: torch.Tensor, y: torch.Tensor,
                 reg: float) -> dict[str, torch.Tensor]:
    """The gradient of :func:`mf_objective` written out, without autograd.

    With ``e_b = r̂_b - r_b`` and B ratings in the batch, each rating b = (u, i) contributes
    ``(2/B) (e_b q_i + reg p_u)`` to the gradient of ``p_u``, ``(2/B) (e_b p_u + reg q_i)`` to
    that of ``q_i``, and ``(2/B) (e_b + reg b_u)``, ``(2/B) (e_b + reg b_i)`` to the biases; a
    user or item that occurs several times in the batch sums its contributions (``index_add``),
    and rows absent from the batch get zero. Chapter 13 checks this against autograd.

    Returns:
        Gradients keyed by parameter name (``"P"``, ``"Q"``, ``"bu"``, ``"bi"``).
    """
    u, i = _pairs(X)
    e = model(X) - y
    c = 2.0 / len(y)
    p, q = model.P[u], model.Q[i]
    return {
        "P": torch.zeros_like(model.P).index_add_(0, u, c * (e[:, None] * q + reg * p)),
        "Q": torch.zeros_like(model.Q).index_add_(0, i, c * (e[:, None] * p + reg * q)),
        "bu": torch.zeros_like(model.bu).index_add_(0, u, c * (e + reg * model.bu[u])),
        "bi": torch.zeros_like(model.bi).index_add_(0, i, c * (e + reg * model.bi[i])),
    }


class TwoTower(nn.Module):
    """A user tower and an item tower whose dot product (plus biases) predicts the rating.

    The user tower is an embedding. The item tower adds an id embedding to an MLP of the item's
    features (its genres, multi-hot, and its release decade, one-hot), and the item bias to a
    linear function of the same features. An item with few ratings has an id embedding that
    training barely moved (and the L2 penalty keeps small), so its vector falls back on what
    its features say: the point of item features for cold-start items (Covington et al. 2016;
    Yi et al. 2019). Used in chapter 13.

    Args:
        num_users: Size of the user id range.
        genres: (num_items, G) multi-hot genres.
        year: (num_items,) release year, -1 if unknown.
        dim: Length of the user and item vectors.
        hidden: Width of the item tower's hidden layer.
        mean: ``mu``, the mean training rating (0 for ranking losses).
        init_std: Standard deviation of the initial id embeddings.
        seed: Seed of the initialisation.
    """

    def __init__(self, num_users: int, genres: torch.Tensor, year: torch.Tensor, dim: int = 32,
                 hidden: int = 64, mean: float = 0.0, init_std: float = 0.1,
                 seed: int | None = None) -> None:
        super().__init__()
        if genres.ndim != 2 or year.shape != (genres.shape[0],):
            raise ValueError(f"genres must be (num_items, G) and year (num_items,), got "
                             f"{tuple(genres.shape)} and {tuple(year.shape)}")
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        num_items = genres.shape[0]
        known = year >= 0
        decade = torch.where(known, (year.clamp(min=1900, max=2019) - 1900) // 10 + 1, 0)
        self.register_buffer("features", torch.cat(
            [genres.float(), F.one_hot(decade, 13).float()], dim=1))
        self.P = nn.Parameter(torch.randn(num_users, dim, generator=g) * init_std)
        self.Q = nn.Parameter(torch.randn(num_items, dim, generator=g) * init_std)
        self.bu = nn.Parameter(torch.zeros(num_users))
        self.bi = nn.Parameter(torch.zeros(num_items))
        k = self.features.shape[1]
        with torch.random.fork_rng(devices=[]):  # seed the Linear layers' initialisation only
            if seed is not None:
                torch.manual_seed(seed)
            self.tower = nn.Sequential(nn.Linear(k, hidden), nn.ReLU(), nn.Linear(hidden, dim))
            self.feature_bias = nn.Linear(k, 1)
        self.register_buffer("mu", torch.tensor(float(mean)))

    def item_embedding(self, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectors and biases of the items ``i``: id part plus feature part."""
        f = self.features[i]
        return self.Q[i] + self.tower(f), self.bi[i] + self.feature_bias(f).squeeze(1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        u, i = _pairs(X)
        v, b = self.item_embedding(i)
        return self.mu + self.bu[u] + b + (self.P[u] * v).sum(dim=1)

    def penalty(self, X: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the squared id parameters (the feature networks are not penalised)."""
        u, i = _pairs(X)
        return ((self.P[u] ** 2).sum(1) + (self.Q[i] ** 2).sum(1)
                + self.bu[u] ** 2 + self.bi[i] ** 2).mean()

    def score_candidates(self, u: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores (B × C) of the users ``u`` (B,) for the candidate items (C,), without ``mu + b_u``."""
        v, b = self.item_embedding(items)
        return self.P[u] @ v.T + b

    def user_vectors(self) -> torch.Tensor:
        return torch.cat([self.P, torch.ones(len(self.P), 1, device=self.P.device)], 1).detach()

    @torch.no_grad()
    def item_vectors(self) -> torch.Tensor:
        v, b = self.item_embedding(torch.arange(self.Q.shape[0], device=self.Q.device))
        return torch.cat([v, b[:, None]], 1)


class RatingStep(TrainStep):
    """Training step for explicit ratings: ``loss_fn(r̂, r) + reg * model.penalty(X)``.

    The recorded ``train_loss`` is the regularised objective; the plain loss (MSE with
    ``loss_fn=nn.MSELoss()``) is recorded as ``History.metrics["train/mse"]``. Chapter 13.

    Args:
        reg: The L2 weight (>= 0).
    """

    def __init__(self, reg: float) -> None:
        if reg < 0:
            raise ValueError(f"reg must be >= 0, got {reg}")
        self.reg = float(reg)

    def __call__(self, loop: Any, X: torch.Tensor, y: torch.Tensor) -> StepOutput:
        with loop.autocast():
            out = loop.forward(X)
            mse = loop.loss_fn(out, y)
            loss = mse + self.reg * loop.model.penalty(X)
        loop.zero_grad()
        loop.backward(loss)
        loop.optimizer_step()
        return StepOutput({"loss": loss, "mse": mse}, None)


class BPRStep(TrainStep):
    """Bayesian personalised ranking: a user's item should score above a random other item.

    For each (user, positive item) in the batch, one negative is drawn uniformly from the
    catalogue and the loss is ``-log sigmoid(s(u, pos) - s(u, neg))`` (Rendle et al. 2009), plus
    ``reg * model.penalty`` on the positive and the negative pairs. A drawn negative is
    occasionally an item the user did interact with (about 1 in 60 on MovieLens latest small);
    like the paper, we accept that noise. Batches are the (user, item) pairs alone (no target).
    Chapter 13.

    Args:
        num_items: Catalogue size (negatives are drawn from ``0 .. num_items-1``).
        reg: The L2 weight (>= 0).
        seed: Seed of the negative sampler.
    """

    def __init__(self, num_items: int, reg: float = 1e-4, seed: int = 0) -> None:
        if reg < 0:
            raise ValueError(f"reg must be >= 0, got {reg}")
        self.num_items, self.reg = int(num_items), float(reg)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, loop: Any, X: torch.Tensor, y: Any) -> StepOutput:
        u, pos = _pairs(X)
        neg = torch.randint(0, self.num_items, (len(u),), generator=self.generator).to(X.device)
        X_neg = torch.stack([u, neg], 1)
        with loop.autocast():
            diff = loop.forward(X) - loop.forward(X_neg)
            bpr = -F.logsigmoid(diff).mean()
            loss = bpr + self.reg * (loop.model.penalty(X) + loop.model.penalty(X_neg))
        loop.zero_grad()
        loop.backward(loss)
        loop.optimizer_step()
        return StepOutput({"loss": loss, "bpr": bpr}, None)


class SoftmaxStep(TrainStep):
    """Sampled softmax: a user's item should win a softmax over itself and shared negatives.

    For a batch of (user, positive item) pairs, ``num_negatives`` items are drawn uniformly from
    the catalogue once per batch and shared by every row; each row's loss is the cross-entropy
    of its positive against those negatives (a negative that equals the row's positive is
    masked out). With ``num_negatives=None`` the softmax runs over the whole catalogue, which is
    affordable for ten thousand items. Uniform sampling needs no log-probability correction
    (Yi et al. 2019 correct for in-batch negatives, which are drawn by popularity). The model
    needs a ``score_candidates(u, items)`` method. Chapter 13.

    Args:
        num_items: Catalogue size.
        num_negatives: Shared negatives per batch, or ``None`` for the full softmax.
        reg: L2 weight on the batch's rows (``model.penalty`` of the positive pairs).
        seed: Seed of the sampler.
    """

    def __init__(self, num_items: int, num_negatives: int | None = 1000, reg: float = 0.0,
                 seed: int = 0) -> None:
        if num_negatives is not None and not 1 <= num_negatives <= num_items:
            raise ValueError(f"num_negatives must be in [1, {num_items}] or None, got {num_negatives}")
        if reg < 0:
            raise ValueError(f"reg must be >= 0, got {reg}")
        self.num_items, self.num_negatives, self.reg = int(num_items), num_negatives, float(reg)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, loop: Any, X: torch.Tensor, y: Any) -> StepOutput:
        u, pos = _pairs(X)
        with loop.autocast():
            if self.num_negatives is None:
                logits = loop.model.score_candidates(u, torch.arange(self.num_items, device=X.device))
                target = pos
            else:
                neg = torch.randint(0, self.num_items, (self.num_negatives,),
                                    generator=self.generator).to(X.device)
                cand = torch.cat([pos, neg])  # column b < B is row b's positive
                logits = loop.model.score_candidates(u, cand)
                B = len(u)
                clash = neg[None, :] == pos[:, None]  # a sampled negative that is the positive
                other_pos = torch.ones(B, B, dtype=torch.bool, device=X.device).fill_diagonal_(False)
                mask = torch.cat([other_pos, clash], 1)  # only the shared negatives compete
                logits = logits.masked_fill(mask, float("-inf"))
                target = torch.arange(B, device=X.device)
            ce = F.cross_entropy(logits.float(), target)
            loss = ce + self.reg * loop.model.penalty(X)
        loop.zero_grad()
        loop.backward(loss)
        loop.optimizer_step()
        return StepOutput({"loss": loss, "softmax": ce}, None)
