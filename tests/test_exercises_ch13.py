"""Chapter 13's exercise checks accept the right answers and explain the usual wrong ones."""

from __future__ import annotations

import math

import torch

from dlkit.exercises import check_last_n_split, check_ndcg_at_k, check_popularity_leak
from dlkit.recsys import ranking_metrics


def ndcg(ranked, relevant, k):
    dcg = sum(1 / math.log2(j + 2) for j, i in enumerate(ranked[:k]) if i in relevant)
    return dcg / sum(1 / math.log2(j + 2) for j in range(min(len(relevant), k)))


def test_ndcg_reference_passes_and_agrees_with_dlkit():
    assert check_ndcg_at_k(ndcg).ok
    # The check's reference and dlkit.recsys.ranking_metrics agree on a case of its own.
    top = torch.tensor([[3, 1, 4, 5, 9]])
    rel = torch.zeros(1, 10, dtype=torch.bool)
    rel[0, [1, 9]] = True
    assert math.isclose(ranking_metrics(top, rel)["ndcg"], ndcg([3, 1, 4, 5, 9], {1, 9}, 5))


def test_ndcg_mistakes_get_specific_hints():
    def unnormalised(ranked, relevant, k):
        return sum(1 / math.log2(j + 2) for j, i in enumerate(ranked[:k]) if i in relevant)

    def ideal_all(ranked, relevant, k):
        dcg = sum(1 / math.log2(j + 2) for j, i in enumerate(ranked[:k]) if i in relevant)
        return dcg / sum(1 / math.log2(j + 2) for j in range(len(relevant)))

    def from_zero(ranked, relevant, k):
        dcg = sum(1 / math.log2(j + 1) for j, i in enumerate(ranked[:k], start=1) if i in relevant and j > 1)
        return dcg

    def zero_based(ranked, relevant, k):
        return sum(1 / math.log2(j) for j, i in enumerate(ranked[:k]) if i in relevant)

    fb = check_ndcg_at_k(unnormalised)
    assert not fb.ok and "not normalised" in fb.message
    fb = check_ndcg_at_k(ideal_all)
    assert not fb.ok and "min(|relevant|, k)" in fb.hint
    assert not check_ndcg_at_k(from_zero).ok
    fb = check_ndcg_at_k(zero_based)
    assert not fb.ok and "ZeroDivisionError" in fb.message or "division" in fb.hint
    assert not check_ndcg_at_k(lambda r, rel, k: "0.5").ok


def last_n(user, ts, n):
    order = torch.argsort(ts, stable=True)
    order = order[torch.argsort(user[order], stable=True)]
    counts = torch.bincount(user)
    pos = torch.arange(len(user)) - (torch.cumsum(counts, 0) - counts)[user[order]]
    n_u = counts[user[order]]
    held = pos >= n_u - torch.minimum(torch.full_like(n_u, n), n_u - 1)
    return order[~held], order[held]


def test_last_n_split_reference_passes_and_leaks_are_caught():
    assert check_last_n_split(last_n).ok

    def random_split(user, ts, n):
        perm = torch.randperm(len(user), generator=torch.Generator().manual_seed(0))
        k = len(user) // 5
        return perm[k:], perm[:k]

    def global_cut(user, ts, n):
        order = torch.argsort(ts)
        k = len(user) // 5
        return order[:-k], order[-k:]

    def too_many(user, ts, n):
        tr, te = last_n(user, ts, n + 1)
        return tr, te

    fb = check_last_n_split(random_split)
    assert not fb.ok and "future" in fb.message
    fb = check_last_n_split(global_cut)
    assert not fb.ok and "one cut in time" in fb.message
    fb = check_last_n_split(too_many)
    assert not fb.ok and "expected" in fb.message
    assert not check_last_n_split(lambda u, t, n: (torch.arange(3), torch.arange(3))).ok


def test_popularity_leak_line():
    assert check_popularity_leak(2).ok
    for wrong in (1, 3, 4, 5, 6, 7, 0, "2", True):
        assert not check_popularity_leak(wrong).ok
