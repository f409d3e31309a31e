"""Serving top-k recommendations: exact (one matrix product and ``torch.topk``) or approximate.

A trained model reduces to a vector per user and per item; the top-k items of a user are the
k largest inner products. :func:`exact_topk` computes them for a batch of users in one matrix
product. :class:`AnnIndex` wraps a faiss inverted-file index (Johnson, Douze and Jégou 2019):
items are clustered, and a query scans only the ``nprobe`` clusters nearest to it, trading
recall of the true top-k for speed. :func:`recall_of_approximation` measures that trade.

Used in chapter 13 (recommender systems) and ``benchmarks/topk_retrieval.py``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["exact_topk", "AnnIndex", "recall_of_approximation"]


def exact_topk(user_vectors: torch.Tensor, item_vectors: torch.Tensor, k: int,
               batch_size: int = 1024) -> torch.Tensor:
    """The exact top-``k`` items by inner product for each user vector (int64, users × k).

    Scores a batch of users against every item in one matrix product, then ``torch.topk``.
    """
    if user_vectors.shape[1] != item_vectors.shape[1]:
        raise ValueError(f"user and item vectors must have the same length, got "
                         f"{user_vectors.shape[1]} and {item_vectors.shape[1]}")
    if not 1 <= k <= item_vectors.shape[0]:
        raise ValueError(f"k must be in [1, {item_vectors.shape[0]}], got {k}")
    V = item_vectors.float().T.contiguous()
    return torch.cat([torch.topk(ub.float() @ V, k, dim=1).indices
                      for ub in user_vectors.split(batch_size)])


class AnnIndex:
    """Approximate maximum-inner-product search with faiss' ``IndexIVFFlat``.

    Args:
        item_vectors: (num_items × d) float vectors.
        nlist: Number of clusters (inverted lists); about sqrt(num_items) is the usual start.
        nprobe: Clusters scanned per query (1 = fastest, ``nlist`` = exact).
        seed: Seed of the k-means clustering.
        max_points_per_centroid: k-means trains on at most this many items per cluster (a
            random sample), which bounds the build time of large catalogues.
    """

    def __init__(self, item_vectors: torch.Tensor, nlist: int = 100, nprobe: int = 8,
                 seed: int = 0, max_points_per_centroid: int = 256) -> None:
        import faiss  # imported here: only serving needs it

        x = np.ascontiguousarray(item_vectors.detach().float().cpu().numpy())
        if not 1 <= nlist <= len(x):
            raise ValueError(f"nlist must be in [1, {len(x)}], got {nlist}")
        quantizer = faiss.IndexFlatIP(x.shape[1])
        self.index = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        self.index.cp.min_points_per_centroid = 1  # small catalogues: no warning about few points
        self.index.cp.max_points_per_centroid = max_points_per_centroid
        self.index.train(x)
        self.index.add(x)
        self.nprobe = nprobe

    @property
    def nprobe(self) -> int:
        """Clusters scanned per query."""
        return int(self.index.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if not 1 <= value <= self.index.nlist:
            raise ValueError(f"nprobe must be in [1, {self.index.nlist}], got {value}")
        self.index.nprobe = int(value)

    def search(self, user_vectors: torch.Tensor, k: int) -> torch.Tensor:
        """Approximate top-``k`` item ids per user (int64, users × k; -1 if fewer were found)."""
        q = np.ascontiguousarray(user_vectors.detach().float().cpu().numpy())
        _, ids = self.index.search(q, k)
        return torch.from_numpy(ids.astype(np.int64))


def recall_of_approximation(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Share of the exact top-k items that the approximate top-k also returns (mean over users)."""
    if approx.shape != exact.shape:
        raise ValueError(f"shapes differ: {tuple(approx.shape)} and {tuple(exact.shape)}")
    found = (approx[:, :, None] == exact[:, None, :]).any(1)
    return found.double().mean().item()
