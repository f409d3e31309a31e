"""dlkit.recsys: splits, baselines, gradients, ranking metrics and serving against references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, ndcg_score
from torch import nn

from dlkit import recsys as rs
from dlkit.train import fit
from dlkit.widgets.recsys import recommendation_explorer


def _ratings(seed=0, users=30, items=40, n=600, tied=True):
    g = torch.Generator().manual_seed(seed)
    user = torch.randint(0, users, (n,), generator=g)
    item = torch.randint(0, items, (n,), generator=g)
    # Few distinct times, so many ratings of a user share a timestamp (as in MovieLens).
    ts = torch.randint(0, 20 if tied else 10**9, (n,), generator=g)
    rating = torch.randint(1, 11, (n,), generator=g).float() / 2
    return user, item, ts, rating


# --- splits -------------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", range(5))
def test_temporal_split_never_holds_out_a_rating_before_a_training_one(seed):
    user, _, ts, _ = _ratings(seed)
    split = rs.temporal_split(user, ts, 0.25)
    assert rs.temporal_violations(user, ts, split) == 0
    # Checked here without the helper as well: per user, max train time <= min test time.
    for u in user.unique():
        tr, te = ts[split.train][user[split.train] == u], ts[split.test][user[split.test] == u]
        if len(te):
            assert tr.max() <= te.min()
    # Each user holds out ceil(25 %) of their ratings, keeping at least one for training.
    counts = torch.bincount(user)
    held = torch.bincount(user[split.test], minlength=len(counts))
    expected = torch.minimum(torch.ceil(counts * 0.25).long(), (counts - 1).clamp(min=0))
    assert torch.equal(held, expected)
    assert torch.equal(torch.cat([split.train, split.test]).sort().values, torch.arange(len(user)))


def test_random_split_leaks_the_future():
    user, _, ts, _ = _ratings(0, tied=False)
    split = rs.random_split(len(user), 0.25, seed=0)
    assert len(split.test) == 150 and len(set(split.train.tolist()) & set(split.test.tolist())) == 0
    assert rs.temporal_violations(user, ts, split) > 10


def test_split_input_errors():
    with pytest.raises(ValueError, match="test_fraction"):
        rs.random_split(10, 1.5)
    with pytest.raises(ValueError, match="same length"):
        rs.temporal_split(torch.zeros(3, dtype=torch.long), torch.zeros(4))


def test_min_train_keeps_short_histories_in_training():
    user = torch.tensor([0, 0, 1, 1, 1, 1])
    ts = torch.tensor([5, 1, 1, 2, 3, 4])
    split = rs.temporal_split(user, ts, 0.5, min_train=2)
    assert split.test.tolist() == [4, 5]  # user 0 keeps both; user 1 holds out its last two


# --- baselines and MF ----------------------------------------------------------------------- #
def test_fit_biases_is_the_regularised_least_squares_solution():
    user, item, _, rating = _ratings(1, users=8, items=10, n=80)
    lu, li = 3.0, 7.0
    model = rs.fit_biases(user, item, rating, 8, 10, lu, li, iterations=500)
    # The normal equations of the ridge problem, solved directly.
    A = np.zeros((80, 18))
    A[np.arange(80), user.numpy()] = 1
    A[np.arange(80), 8 + item.numpy()] = 1
    D = np.diag([lu] * 8 + [li] * 10)
    b = rating.double().numpy() - rating.double().mean().item()
    x = np.linalg.solve(A.T @ A + D, A.T @ b)
    assert np.allclose(model.bu.numpy(), x[:8], atol=1e-5)
    assert np.allclose(model.bi.numpy(), x[8:], atol=1e-5)


def test_mf_gradients_match_autograd():
    torch.manual_seed(0)
    m = rs.MatrixFactorization(6, 9, dim=4, mean=3.5, seed=0).double()
    with torch.no_grad():
        m.bu.normal_()
        m.bi.normal_()
    X = torch.stack([torch.randint(0, 6, (25,)), torch.randint(0, 9, (25,))], 1)
    y = torch.rand(25, dtype=torch.float64) * 5
    ours = rs.mf_gradients(m, X, y, reg=0.3)
    rs.mf_objective(m, X, y, reg=0.3).backward()
    for name, p in m.named_parameters():
        assert torch.allclose(ours[name], p.grad, atol=1e-12), name


def test_models_take_pairs_and_fold_biases_into_vectors():
    genres = torch.randint(0, 2, (9, 5))
    year = torch.tensor([1990, 2001, -1, 1950, 2015, 1999, 1984, 1977, 2010])
    X = torch.tensor([[0, 1], [5, 8], [3, 2]])
    for m in (rs.MatrixFactorization(6, 9, 4, mean=3.0, seed=1),
              rs.TwoTower(6, genres, year, dim=4, mean=3.0, seed=1)):
        with torch.no_grad():
            m.bu.normal_()
            m.bi.normal_()
            pred = m(X)
            dots = rs.score_matrix(m)[X[:, 0], X[:, 1]]
        # score = mu + b_u + <user vector, item vector>
        assert torch.allclose(pred, m.mu + m.bu[X[:, 0]] + dots, atol=1e-5)
        assert torch.allclose(m.score_candidates(X[:, 0], torch.arange(9)),
                              rs.score_matrix(m)[X[:, 0]], atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        m(torch.zeros(3, dtype=torch.long))


def test_two_tower_gives_unrated_items_their_features_vector():
    genres = torch.tensor([[1, 0], [1, 0], [0, 1]])
    year = torch.tensor([1995, 1995, 1995])
    m = rs.TwoTower(2, genres, year, dim=3, seed=0)
    with torch.no_grad():
        m.Q.zero_()  # ids that training never moved
    v = m.item_vectors()
    assert torch.allclose(v[0], v[1]) and not torch.allclose(v[0], v[2])
    # The seed fixes the whole initialisation and leaves the global generator alone.
    state = torch.get_rng_state()
    again = rs.TwoTower(2, genres, year, dim=3, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(rs.TwoTower(2, genres, year, dim=3, seed=0).parameters(),
                                                 again.parameters()))


def _loader(X, y=None, bs=64):
    ds = torch.utils.data.TensorDataset(X) if y is None else torch.utils.data.TensorDataset(X, y)
    return torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))


def test_rating_step_trains_through_fit_with_validate():
    torch.manual_seed(0)
    U, I = 20, 30
    P, Q = torch.randn(U, 2), torch.randn(I, 2)
    X = torch.stack([torch.randint(0, U, (800,)), torch.randint(0, I, (800,))], 1)
    y = 3 + (P[X[:, 0]] * Q[X[:, 1]]).sum(1)
    m = rs.MatrixFactorization(U, I, 4, mean=y.mean().item(), seed=0)
    before = rs.rating_metrics(m, X, y, clip=None)["rmse"]
    h = fit(m, _loader(X, y), _loader(X, y), epochs=15, lr=0.03, loss_fn=nn.MSELoss(),
            step=rs.RatingStep(1e-4), validate=rs.rating_validation, progress=False,
            verbose=False, device="cpu")
    after = rs.rating_metrics(m, X, y, clip=None)["rmse"]
    assert after < 0.5 * before
    assert len(h.metrics["val/rmse"]) == 15 and len(h.metrics["train/mse"]) == 15
    assert math.isclose(h.val_loss[-1], h.metrics["val/rmse"][-1] ** 2, rel_tol=1e-9)


@pytest.mark.parametrize("make_step", [lambda I: rs.BPRStep(I, 1e-4, seed=0),
                                       lambda I: rs.SoftmaxStep(I, 10, seed=0),
                                       lambda I: rs.SoftmaxStep(I, None, seed=0)])
def test_ranking_steps_learn_which_items_a_user_likes(make_step):
    # Two groups of users, each interacting with one half of the catalogue.
    torch.manual_seed(0)
    U, I = 20, 24
    users = torch.randint(0, U, (1200,))
    items = torch.randint(0, I // 2, (1200,)) + (users % 2) * (I // 2)
    m = rs.MatrixFactorization(U, I, 4, seed=0)
    fit(m, _loader(torch.stack([users, items], 1)), epochs=8, lr=0.05, step=make_step(I),
        progress=False, verbose=False, device="cpu")
    top = rs.ranking_from_scores(rs.score_matrix(m), 5)
    own_half = (top // (I // 2)) == (torch.arange(U) % 2)[:, None]
    assert own_half.float().mean() > 0.95


def test_sampled_softmax_ignores_a_negative_equal_to_the_positive():
    m = rs.MatrixFactorization(2, 3, 2, seed=0)
    step = rs.SoftmaxStep(3, 3, seed=0)  # 3 negatives from 3 items: one always clashes

    class _Loop:
        model = forward = m
        autocast = staticmethod(lambda: torch.autocast("cpu", enabled=False))
        zero_grad = backward = optimizer_step = staticmethod(lambda *a: None)

    out = step(_Loop(), torch.tensor([[0, 1], [1, 2]]), None)
    assert torch.isfinite(out.loss["softmax"])


# --- ranking metrics ------------------------------------------------------------------------ #
def _brute_force(top, relevant, k):
    rec, ndcg, ap = [], [], []
    for row, rel in zip(top.tolist(), relevant.tolist()):
        R = {j for j, r in enumerate(rel) if r}
        if not R:
            continue
        hits = [1 if i in R else 0 for i in row[:k]]
        rec.append(sum(hits) / len(R))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        ndcg.append(dcg / sum(1 / math.log2(j + 2) for j in range(min(len(R), k))))
        ap.append(sum(hits[j] * sum(hits[: j + 1]) / (j + 1) for j in range(k)) / min(len(R), k))
    return np.mean(rec), np.mean(ndcg), np.mean(ap)


@pytest.mark.parametrize("seed", range(6))
def test_ranking_metrics_match_independent_references(seed):
    import torchmetrics.functional.retrieval as tmr

    g = torch.Generator().manual_seed(seed)
    users, items, k = 12, 30, [1, 5, 10, 30, 7, 3][seed]
    scores = torch.rand(users, items, generator=g) + 0.01  # positive: torchmetrics ignores <= 0
    relevant = torch.rand(users, items, generator=g) < [0.05, 0.2, 0.5, 0.1, 0.3, 0.02][seed]
    relevant[0] = False  # a user without relevant items is left out of the means
    relevant[1, :] = False
    relevant[1, 3] = True
    top = rs.ranking_from_scores(scores, k)
    ours = rs.ranking_metrics(top, relevant)
    keep = relevant.any(1)
    assert ours["users"] == int(keep.sum())
    sk = ndcg_score(relevant[keep].int().numpy(), scores[keep].numpy(), k=k)
    tm_ndcg = np.mean([tmr.retrieval_normalized_dcg(s, r, top_k=k).item()
                       for s, r in zip(scores[keep], relevant[keep])])
    tm_recall = np.mean([tmr.retrieval_recall(s, r, top_k=k).item()
                         for s, r in zip(scores[keep], relevant[keep])])
    assert ours["ndcg"] == pytest.approx(sk, abs=1e-6)
    assert ours["ndcg"] == pytest.approx(tm_ndcg, abs=1e-6)
    assert ours["recall"] == pytest.approx(tm_recall, abs=1e-6)
    assert (ours["recall"], ours["ndcg"], ours["map"]) == pytest.approx(_brute_force(top, relevant, k), abs=1e-9)
    # Over the whole list (k = number of items) AP is scikit-learn's average precision.
    full = rs.ranking_metrics(rs.ranking_from_scores(scores, items), relevant, per_user=True)
    sk_ap = [average_precision_score(r.numpy(), s.numpy()) for s, r in zip(scores[keep], relevant[keep])]
    assert torch.allclose(full["map"], torch.tensor(sk_ap, dtype=torch.float64), atol=1e-9)


def test_excluded_items_are_never_recommended():
    scores = torch.arange(12.0).repeat(3, 1)
    exclude = torch.zeros(3, 12, dtype=torch.bool)
    exclude[0, 11] = exclude[1, [11, 10]] = True
    top = rs.ranking_from_scores(scores, 3, exclude)
    assert top.tolist() == [[10, 9, 8], [9, 8, 7], [11, 10, 9]]
    with pytest.raises(ValueError, match="shape of scores"):
        rs.ranking_from_scores(scores, 3, exclude[:2])
    with pytest.raises(ValueError, match="k must be"):
        rs.ranking_from_scores(scores, 13)


def test_coverage_and_popularity():
    top = torch.tensor([[0, 1], [1, 2]])
    assert rs.catalogue_coverage(top, 10) == 0.3
    assert rs.popularity_of(top, torch.tensor([4.0, 2, 0] + [0] * 7)) == 2.0
    mask = rs.interaction_mask(torch.tensor([0, 1]), torch.tensor([2, 0]), 2, 3)
    assert mask.tolist() == [[False, False, True], [True, False, False]]


# --- serving -------------------------------------------------------------------------------- #
def test_exact_topk_and_the_ann_index():
    g = torch.Generator().manual_seed(0)
    items, users = torch.randn(500, 16, generator=g), torch.randn(40, 16, generator=g)
    exact = rs.exact_topk(users, items, 10, batch_size=7)
    brute = torch.tensor([sorted(range(500), key=lambda i: -float(u @ items[i]))[:10] for u in users])
    assert torch.equal(exact, brute)
    index = rs.AnnIndex(items, nlist=20, nprobe=20)  # every list scanned: exact
    assert rs.recall_of_approximation(index.search(users, 10), exact) == 1.0
    index.nprobe = 1
    assert rs.recall_of_approximation(index.search(users, 10), exact) < 1.0
    with pytest.raises(ValueError, match="nprobe"):
        index.nprobe = 21
    assert rs.recall_of_approximation(torch.tensor([[1, 2]]), torch.tensor([[2, 3]])) == 0.5


# --- the explorer (dlkit.widgets.recsys) ----------------------------------------------------- #

def _explorer(**kw):
    titles = [f"Movie {i} (2000)" for i in range(6)]
    tu, ti, tr = torch.tensor([0, 0, 1]), torch.tensor([5, 4, 0]), torch.tensor([4.0, 2.5, 3.0])
    eu, ei = torch.tensor([0, 1]), torch.tensor([3, 5])
    scores = {"a": torch.arange(6.0).repeat(2, 1), "b": -torch.arange(6.0).repeat(2, 1)}
    return recommendation_explorer(titles, tu, ti, tr, eu, ei, scores, k=3, **kw)


def test_explorer_draws_and_redraws_for_other_users_and_models():
    ex = _explorer()
    first = ex.png
    assert first and ex._repr_mimebundle_()["image/png"] == first
    ex.controls["user"].value = 1
    ex.controls["model"].value = "b"
    assert ex.png != first
    assert ex.output.outputs[0]["output_type"] == "display_data"


def test_explorer_rejects_bad_input():
    with pytest.raises(ValueError, match="user must be"):
        _explorer(user=5)
    titles = ["x", "y"]
    z = torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="expected"):
        recommendation_explorer(titles, z, z, z.float(), z, z, {"m": torch.zeros(1, 3)})
    with pytest.raises(ValueError, match="empty"):
        recommendation_explorer(titles, z, z, z.float(), z, z, {})
