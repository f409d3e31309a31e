"""Exercise checks of chapter 13 (recommender systems)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["LEAKY_POPULARITY", "check_ndcg_at_k", "check_last_n_split", "check_popularity_leak"]

# The listing of the "spot the leak" exercise; line numbers as printed by the chapter.
LEAKY_POPULARITY = """\
1  split = temporal_split(r.user, r.timestamp, test_fraction=0.2)
2  popularity = torch.bincount(r.item, minlength=r.num_items).float()
3  seen = interaction_mask(r.user[split.train], r.item[split.train], r.num_users, r.num_items)
4  top = ranking_from_scores(popularity.expand(r.num_users, -1), 10, exclude=seen)
5  relevant = interaction_mask(r.user[split.test], r.item[split.test], r.num_users, r.num_items)
6  print(ranking_metrics(top, relevant))"""


def _ndcg(ranked: list[int], relevant: set[int], k: int, ideal_len: int | None = None,
          offset: int = 1) -> float:
    dcg = sum(1 / math.log2(j + offset + 1) for j, item in enumerate(ranked[:k]) if item in relevant)
    n = min(len(relevant), k) if ideal_len is None else ideal_len
    idcg = sum(1 / math.log2(j + offset + 1) for j in range(n))
    return dcg / idcg if idcg > 0 else 0.0


_NDCG_CASES = [
    ([3, 1, 4, 5, 9], {1, 9}, 5),
    ([3, 1, 4, 5, 9], {3}, 5),
    ([7, 8, 9, 10, 11, 12], {12, 7, 20, 21, 22, 23}, 4),  # more relevant items than k
    ([2, 4, 6], {5}, 3),                                  # no hit
    ([5, 6, 7, 8], {8, 6}, 2),                            # a hit below the cut-off
]


def check_ndcg_at_k(fn: Callable[[list[int], set[int], int], object]) -> Feedback:
    """Check ``fn(ranked, relevant, k)``: NDCG@k of a ranked list with binary relevance.

    The reference is ``DCG@k / IDCG@k`` with ``DCG@k = sum_j rel_j / log2(j + 1)`` over the
    positions j = 1..k and IDCG the DCG of ``min(|relevant|, k)`` hits on top. Used in chapter 13.

    Args:
        fn: The learner's function of a list of item ids (best first), a set of relevant ids
            and the cut-off k.

    Returns:
        The :class:`Feedback`.
    """
    for ranked, relevant, k in _NDCG_CASES:
        try:
            got = fn(list(ranked), set(relevant), k)
        except Exception as err:  # noqa: BLE001 (the learner's code may fail in any way)
            return _wrong(f"for ranked={ranked}, relevant={sorted(relevant)}, k={k} it raised "
                          f"{type(err).__name__}: {err}",
                          "position j (from 1) contributes 1 / log2(j + 1); log2(1) = 0 is a division by zero.")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            return _wrong(f"it returned {type(got).__name__}, expected a float.")
        got = float(got)
        truth = _ndcg(ranked, relevant, k)
        if math.isclose(got, truth, rel_tol=1e-6, abs_tol=1e-9):
            continue
        case = f"ranked={ranked}, relevant={sorted(relevant)}, k={k}"
        dcg = truth * sum(1 / math.log2(j + 2) for j in range(min(len(relevant), k)))
        if math.isclose(got, dcg, rel_tol=1e-6) and truth not in (0.0, 1.0):
            return _wrong(f"for {case} it returned the DCG, {got:.4f}, not normalised.",
                          "divide by the DCG of a perfect list (the ideal DCG).")
        if math.isclose(got, _ndcg(ranked, relevant, k, ideal_len=len(relevant)), rel_tol=1e-6):
            return _wrong(f"for {case} the ideal list has {len(relevant)} hits, more than k = {k}.",
                          "a list of length k holds at most min(|relevant|, k) hits: the ideal DCG "
                          "sums that many terms.")
        if math.isclose(got, _ndcg(ranked, relevant, len(ranked)), rel_tol=1e-6):
            return _wrong(f"for {case} it counts hits below position k.", "only the first k items count.")
        if math.isclose(got, _ndcg(ranked, relevant, k, offset=0), rel_tol=1e-6):
            return _wrong(f"for {case} the discounts are shifted by one position.",
                          "the first position has discount 1 / log2(2) = 1.")
        return _wrong(f"for {case} it returned {got:.4f}, expected {truth:.4f}.",
                      "DCG@k = sum over the first k positions j of rel_j / log2(j + 1); divide by "
                      "the DCG of min(|relevant|, k) hits at the top.")
    return _right("it matches NDCG@k on all cases: a hit below k, no hit, more relevant items than k.")


def check_last_n_split(fn: Callable[[torch.Tensor, torch.Tensor, int], object]) -> Feedback:
    """Check ``fn(user, timestamp, n) -> (train_idx, test_idx)``: each user's last n ratings held out.

    A user keeps at least one training rating (with n or fewer ratings, n-1 are held out at most).
    No held-out rating may be older than a training rating of the same user. Ties in time may go
    either way. Used in chapter 13.

    Args:
        fn: The learner's split.

    Returns:
        The :class:`Feedback`.
    """
    g = torch.Generator().manual_seed(13)
    cases = [(torch.tensor([0, 0, 0, 1, 1, 0, 1]), torch.tensor([5, 3, 9, 2, 8, 1, 4]), 2)]
    user = torch.randint(0, 9, (120,), generator=g)
    cases.append((user, torch.randint(0, 10**6, (120,), generator=g), 3))
    cases.append((user, torch.randint(0, 5, (120,), generator=g), 2))  # many ties
    results = []
    for user, ts, n in cases:
        try:
            out = fn(user.clone(), ts.clone(), n)
        except Exception as err:  # noqa: BLE001
            return _wrong(f"it raised {type(err).__name__}: {err}")
        if not (isinstance(out, tuple) and len(out) == 2):
            return _wrong("expected a pair (train_idx, test_idx).")
        train, test = (torch.as_tensor(t).long().flatten() for t in out)
        rows = torch.cat([train, test]).sort().values
        if not torch.equal(rows, torch.arange(len(user))):
            return _wrong("every rating must be in exactly one of train_idx and test_idx.",
                          "return row indices; together they cover 0 .. N-1 once each.")
        results.append((user, ts, n, train, test))
    # The leak first (on every case), then the counts.
    for user, ts, n, train, test in results:
        late = 0
        for u in user.unique().tolist():
            tr, te = ts[train][user[train] == u], ts[test][user[test] == u]
            if len(tr) and len(te) and te.min() < tr.max():
                late += 1
        if late:
            return _wrong(f"{late} user(s) have a held-out rating older than one of their "
                          "training ratings: the model would learn from their future.",
                          "sort each user's ratings by timestamp and hold out the last n.")
    for user, ts, n, train, test in results:
        counts = torch.bincount(user, minlength=int(user.max()) + 1)
        held = torch.bincount(user[test], minlength=len(counts))
        expected = torch.minimum(torch.full_like(counts, n), (counts - 1).clamp(min=0))
        if not torch.equal(held, expected):
            u = int((held != expected).nonzero()[0])
            message = (f"user {u} has {int(counts[u])} ratings and {int(held[u])} held out; "
                       f"expected {int(expected[u])}.")
            if len(train) and len(test) and ts[test].min() >= ts[train].max():
                return _wrong(message + " The split is one cut in time over all users.",
                              "a global time cut holds out nothing for users who stopped rating "
                              "early and everything recent for the others: cut each user's own history.")
            return _wrong(message, "hold out min(n, count - 1) per user, so everyone keeps a training rating.")
    return _right("each user's last ratings are held out, never before one of their training ratings.")


def check_popularity_leak(answer: object) -> Feedback:
    """Check the line of :data:`LEAKY_POPULARITY` where the test period leaks into the model.

    Used in chapter 13.

    Args:
        answer: The learner's line number (an int).

    Returns:
        The :class:`Feedback`.
    """
    if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):
        return _wrong(f"expected a line number, got {answer!r}.")
    line = int(answer)
    if line == 2:
        return _right("the popularity counts include the held-out ratings, so the ranking knows "
                      "which movies will be watched next. Count r.item[split.train] only.")
    if line == 3 or line == 5:
        return _wrong(f"line {line} builds a mask from one side of the split only, as it should.")
    if line == 4:
        return _wrong("line 4 excludes the training items, as it should; look at what it ranks by.")
    if 1 <= line <= 6:
        return _wrong(f"line {line} does not use the held-out ratings.",
                      "which line uses all the ratings of r, the future included?")
    return _wrong(f"the listing has lines 1 to 6, got {line}.")
