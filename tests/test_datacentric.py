"""Tests for dlkit.datacentric (chapter 15): sampling, label noise, calibration, subgroups, explanations.

Everything runs on small synthetic tensors; no dataset is read. Reference values are computed
independently in the tests (brute-force greedy, explicit outer products, numpy loops, scipy).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.datacentric import (
    STRATEGIES,
    Head,
    accuracy_of,
    badge_select,
    brightness,
    colourfulness,
    completeness_gap,
    cross_val_probs,
    detection_report,
    difference_interval,
    entropy_scores,
    expected_calibration_error,
    extract_features,
    fit_head,
    fit_temperature,
    generalized_cross_entropy,
    group_table,
    kcenter_greedy,
    margin_scores,
    mark_region,
    pair_noise,
    plant_mark,
    randomized_copy,
    rank_correlation,
    region_share,
    reliability_bins,
    run_active_learning,
    scale_brightness,
    select,
    symmetric_noise,
    wilson_interval,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _blobs(n: int, num_classes: int = 3, dim: int = 6, spread: float = 6.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * spread
    y = torch.arange(n) % num_classes
    x = centres[y] + torch.randn(n, dim, generator=g)
    return x, y


# --------------------------------------------------------------------------------------------- #
# Sampling strategies
# --------------------------------------------------------------------------------------------- #
def test_entropy_and_margin_scores_match_hand_values():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    want_entropy = [0.0, math.log(2), -(0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5)),
                    math.log(3)]
    assert torch.allclose(entropy_scores(probs), torch.tensor(want_entropy), atol=1e-6)
    assert torch.allclose(margin_scores(probs), torch.tensor([1.0, 0.0, 0.2, 0.0]), atol=1e-6)
    with pytest.raises(ValueError, match="two classes"):
        margin_scores(torch.ones(3, 1))


def test_select_entropy_and_margin_pick_the_expected_items():
    # Row 2 is the least confident by top-1 but has a wide margin; rows 0 and 3 have the smallest
    # margins; rows 4 and 2 the highest entropy.
    probs = torch.tensor([
        [0.50, 0.49, 0.01],   # margin 0.01, low entropy
        [0.90, 0.05, 0.05],   # confident
        [0.40, 0.30, 0.30],   # margin 0.10, high entropy
        [0.48, 0.46, 0.06],   # margin 0.02
        [0.36, 0.32, 0.32],   # margin 0.04, almost uniform: the highest entropy
        [0.98, 0.01, 0.01],
    ])
    kw = {"probs": probs, "pool_features": torch.zeros(6, 2), "labelled_features": torch.zeros(0, 2),
          "generator": torch.Generator().manual_seed(0)}
    assert set(select("margin", 2, **kw).tolist()) == {0, 3}
    assert select("margin", 3, **kw).tolist() == [0, 3, 4]
    assert set(select("entropy", 2, **kw).tolist()) == {2, 4}
    assert select("entropy", 1, **kw).tolist() == [4]
    random_pick = select("random", 6, **kw)
    assert sorted(random_pick.tolist()) == list(range(6))


def test_select_rejects_unknown_strategy_and_bad_k():
    probs = torch.full((5, 2), 0.5)
    kw = {"probs": probs, "pool_features": torch.zeros(5, 2), "labelled_features": torch.zeros(0, 2),
          "generator": torch.Generator().manual_seed(0)}
    with pytest.raises(ValueError, match="unknown strategy"):
        select("bald", 2, **kw)
    with pytest.raises(ValueError, match="cannot pick 6 of 5"):
        select("entropy", 6, **kw)
    with pytest.raises(ValueError):
        select("margin", 0, **kw)
    with pytest.raises(ValueError):
        kcenter_greedy(torch.zeros(3, 2), torch.zeros(0, 2), 4)


def _brute_kcenter(pool: np.ndarray, labelled: np.ndarray, k: int) -> list[int]:
    centres = [c for c in labelled]
    picks: list[int] = []
    for _ in range(k):
        best, best_d = -1, -1.0
        for i, x in enumerate(pool):
            if i in picks:
                continue
            if centres:
                d = min(float(np.linalg.norm(x - c)) for c in centres)
            else:  # no centre at all: the package starts from the point farthest from the mean
                d = float(np.linalg.norm(x - pool.mean(0)))
            if d > best_d:
                best, best_d = i, d
        picks.append(best)
        centres.append(pool[best])
    return picks


@pytest.mark.parametrize("m", [0, 1, 5])
def test_kcenter_greedy_matches_a_brute_force_greedy(m):
    g = torch.Generator().manual_seed(m)
    pool = torch.randn(40, 3, generator=g)
    labelled = torch.randn(m, 3, generator=g)
    got = kcenter_greedy(pool, labelled, 12)
    assert got.tolist() == _brute_kcenter(pool.numpy(), labelled.numpy(), 12)
    assert len(set(got.tolist())) == 12


def test_kcenter_greedy_returns_distinct_indices_even_with_duplicate_points():
    pool = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    got = kcenter_greedy(pool, torch.zeros(0, 2), 4)
    assert sorted(got.tolist()) == [0, 1, 2, 3]


def _badge_inputs(n: int = 30, c: int = 4, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(n, c, generator=g) * 2, dim=1)
    z = torch.randn(n, d, generator=g)
    return probs, z


def _explicit_embeddings(probs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    p = probs.double()
    a = p - F.one_hot(p.argmax(1), p.shape[1]).double()
    return torch.stack([torch.outer(a[i], z[i].double()).flatten() for i in range(len(p))])


def test_badge_distinct_deterministic_and_starts_at_the_longest_embedding():
    probs, z = _badge_inputs()
    picks = badge_select(probs, z, 10, torch.Generator().manual_seed(3))
    assert len(set(picks.tolist())) == 10
    again = badge_select(probs, z, 10, torch.Generator().manual_seed(3))
    assert torch.equal(picks, again)
    others = [badge_select(probs, z, 10, torch.Generator().manual_seed(s)).tolist() for s in range(4, 9)]
    assert any(o != picks.tolist() for o in others)  # the draws do depend on the generator
    g = _explicit_embeddings(probs, z)
    assert picks[0] == int(g.norm(dim=1).argmax())
    everything = badge_select(probs, z, 30, torch.Generator().manual_seed(0))
    assert sorted(everything.tolist()) == list(range(30))


def test_badge_draws_in_proportion_to_squared_distances_of_explicit_outer_products():
    # The second pick is drawn with probability |g_j - g_first|² / sum; the embeddings g are
    # formed explicitly here, the package computes the distances from the factors.
    probs, z = _badge_inputs(n=6, c=3, d=4, seed=0)
    g = _explicit_embeddings(probs, z)
    first = int(g.norm(dim=1).argmax())
    d2 = ((g - g[first]) ** 2).sum(1)
    draws = 4000
    seconds = torch.tensor([int(badge_select(probs, z, 2, torch.Generator().manual_seed(s))[1])
                            for s in range(draws)])
    counts = torch.bincount(seconds, minlength=6).double()
    assert counts[first] == 0

    def chi2(weights: torch.Tensor) -> float:
        expected = weights / weights.sum() * draws
        keep = torch.arange(6) != first
        return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())

    assert chi2(d2) < 25  # 4 degrees of freedom: p < 1e-4 above 25
    assert chi2(d2.sqrt()) > 25  # the test can tell squared from plain distances


def test_badge_never_draws_a_duplicate_of_a_centre():
    # Items 0/1 and 2/3 are exact duplicates (same probabilities, same features); 0 is longer.
    probs = torch.tensor([[0.4, 0.35, 0.25], [0.4, 0.35, 0.25], [0.2, 0.5, 0.3], [0.2, 0.5, 0.3]])
    z = torch.tensor([[3.0, -1.0], [3.0, -1.0], [0.5, 2.0], [0.5, 2.0]])
    for s in range(50):
        picks = badge_select(probs, z, 4, torch.Generator().manual_seed(s)).tolist()
        assert picks[0] == 0 and picks[1] in (2, 3), picks  # distance 0 to a centre: never drawn
        assert sorted(picks) == [0, 1, 2, 3]  # then the coinciding ones, all distinct


def _cheap_fit(features, labels, num_classes, seed=0):
    return fit_head(features, labels, num_classes, steps=25, seed=seed)


def test_run_active_learning_rounds_labels_and_shared_start():
    x, y = _blobs(120, seed=1)
    xv, yv = _blobs(60, seed=2)
    runs = {s: run_active_learning(s, (x, y), (xv, yv), start=9, step=6, rounds=3, num_classes=3,
                                   seed=5, fit=_cheap_fit) for s in STRATEGIES}
    first = runs["random"].labelled[:9]
    for s, run in runs.items():
        assert run.strategy == s and run.seed == 5
        assert run.labels == [9, 15, 21, 27]
        assert len(run.val_accuracy) == 4 and all(0.0 <= a <= 1.0 for a in run.val_accuracy)
        assert len(run.labelled) == 27
        assert len(set(run.labelled.tolist())) == 27, s
        assert torch.equal(run.labelled[:9], first), s
    # Different strategies then buy different images.
    assert len({tuple(r.labelled[9:].tolist()) for r in runs.values()}) > 1
    # A different seed starts from a different set.
    other = run_active_learning("random", (x, y), (xv, yv), start=9, step=6, rounds=0, num_classes=3,
                                seed=6, fit=_cheap_fit)
    assert other.labels == [9] and not torch.equal(other.labelled, first)


def test_run_active_learning_rejects_a_budget_larger_than_the_pool():
    x, y = _blobs(20)
    with pytest.raises(ValueError, match="pool has 20"):
        run_active_learning("entropy", (x, y), (x, y), start=10, step=5, rounds=3, num_classes=3,
                            fit=_cheap_fit)
    with pytest.raises(ValueError, match="unknown strategy"):
        run_active_learning("bald", (x, y), (x, y), start=5, step=5, rounds=1, num_classes=3,
                            fit=_cheap_fit)


# --------------------------------------------------------------------------------------------- #
# Label noise
# --------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("n, rate", [(10_000, 0.3), (10, 0.25), (7, 0.5), (101, 0.0), (50, 1.0)])
def test_symmetric_noise_flips_exactly_round_rate_n(n, rate):
    clean = torch.arange(n) % 10
    c = symmetric_noise(clean, rate, 10, seed=1)
    assert int(c.flipped.sum()) == round(rate * n)
    assert (c.labels[c.flipped] != clean[c.flipped]).all()
    assert torch.equal(c.labels[~c.flipped], clean[~c.flipped])
    assert c.labels.min() >= 0 and c.labels.max() < 10
    assert math.isclose(c.rate, round(rate * n) / n, rel_tol=1e-6)


def test_symmetric_noise_new_classes_are_uniform_and_seeded():
    clean = torch.arange(20_000) % 10
    c = symmetric_noise(clean, 0.5, 10, seed=0)
    shift = (c.labels[c.flipped] - clean[c.flipped]) % 10
    counts = torch.bincount(shift, minlength=10).double()
    assert counts[0] == 0
    expected = counts.sum() / 9
    chi2 = float(((counts[1:] - expected) ** 2 / expected).sum())
    assert chi2 < 40, chi2  # 8 degrees of freedom: p < 1e-5 above 40
    # Each wrong class is reached from every clean class.
    wrong_given_clean = torch.zeros(10, 10)
    wrong_given_clean.index_put_((clean[c.flipped], c.labels[c.flipped]), torch.tensor(1.0), accumulate=True)
    assert (wrong_given_clean.diagonal() == 0).all()
    assert (wrong_given_clean + torch.eye(10) > 0).all()
    again = symmetric_noise(clean, 0.5, 10, seed=0)
    assert torch.equal(c.labels, again.labels) and torch.equal(c.flipped, again.flipped)
    other = symmetric_noise(clean, 0.5, 10, seed=1)
    assert not torch.equal(c.flipped, other.flipped)


def test_pair_noise_moves_exactly_round_rate_nc_of_each_source():
    clean = torch.cat([torch.full((101,), 3), torch.full((57,), 5), torch.full((40,), 1), torch.full((33,), 0)])
    clean = clean[torch.randperm(len(clean), generator=torch.Generator().manual_seed(0))]
    c = pair_noise(clean, {3: 5, 5: 3, 1: 0}, 0.2, 10, seed=2)
    assert int(((clean == 3) & (c.labels == 5)).sum()) == round(0.2 * 101) == 20
    assert int(((clean == 5) & (c.labels == 3)).sum()) == round(0.2 * 57) == 11
    assert int(((clean == 1) & (c.labels == 0)).sum()) == round(0.2 * 40) == 8
    assert torch.equal(c.flipped, c.labels != clean)
    assert int(c.flipped.sum()) == 39
    # Class 0 is only a target: none of its members move; nothing lands anywhere else.
    assert (c.labels[clean == 0] == 0).all()
    moved = c.flipped
    assert set(zip(clean[moved].tolist(), c.labels[moved].tolist())) <= {(3, 5), (5, 3), (1, 0)}
    again = pair_noise(clean, {3: 5, 5: 3, 1: 0}, 0.2, 10, seed=2)
    assert torch.equal(again.labels, c.labels)


def test_noise_rejects_bad_rates_pairs_and_labels():
    y = torch.tensor([0, 1, 2, 3])
    for rate in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="rate"):
            symmetric_noise(y, rate, 4)
        with pytest.raises(ValueError, match="rate"):
            pair_noise(y, {0: 1}, rate, 4)
    for pairs in ({1: 1}, {0: 4}, {-1: 2}):
        with pytest.raises(ValueError, match="pair"):
            pair_noise(y, pairs, 0.1, 4)
    for bad in (torch.tensor([0, 4]), torch.tensor([-1, 0]), torch.tensor([0.0, 1.0]), torch.zeros(2, 2, dtype=torch.long)):
        with pytest.raises(ValueError, match="labels"):
            symmetric_noise(bad, 0.1, 4)
        with pytest.raises(ValueError, match="labels"):
            pair_noise(bad, {0: 1}, 0.1, 4)
    with pytest.raises(ValueError, match="two classes"):
        symmetric_noise(torch.zeros(3, dtype=torch.long), 0.1, 1)


def test_detection_report_hand_example_and_nan_cases():
    suspected = torch.tensor([True, True, False, False, True])
    flipped = np.array([True, False, True, False, False])
    d = detection_report(suspected, flipped)
    assert (d.found, d.corrupted, d.true_positives) == (3, 2, 1)
    assert math.isclose(d.precision, 1 / 3) and math.isclose(d.recall, 1 / 2)
    nothing = detection_report(torch.zeros(5, dtype=torch.bool), flipped)
    assert math.isnan(nothing.precision) and nothing.recall == 0.0
    clean = detection_report(suspected, np.zeros(5, dtype=bool))
    assert clean.precision == 0.0 and math.isnan(clean.recall)
    with pytest.raises(ValueError):
        detection_report(torch.zeros(4, dtype=torch.bool), flipped)


def test_cross_val_probs_never_scores_an_item_with_a_model_that_saw_it():
    n = 60
    ids = torch.arange(n, dtype=torch.float32)[:, None]  # feature = identity of the item
    labels = torch.arange(n) % 3
    fits = []

    def fit(features, y):
        seen = set(features[:, 0].long().tolist())
        fits.append(seen)

        def predict(queries):
            # column 1 when the model trained on the item, column 0 otherwise
            inside = torch.tensor([int(q) in seen for q in queries[:, 0].long().tolist()])
            return F.one_hot(inside.long(), 2).float()

        return predict

    probs = cross_val_probs(ids, labels, fit, k=5, seed=0)
    assert len(fits) == 5 and all(len(s) == 48 for s in fits)
    assert probs.shape == (n, 2)
    assert (probs[:, 0] == 1).all()


def test_cross_val_probs_of_one_nearest_neighbour_do_not_memorise_labels():
    g = torch.Generator().manual_seed(0)
    n, c = 90, 3
    x = torch.randn(n, 4, generator=g)  # unique points, labels unrelated to them
    labels = torch.randperm(n, generator=g) % c

    def fit(features, y):
        def predict(queries):
            nearest = torch.cdist(queries, features).argmin(1)
            return F.one_hot(y[nearest], c).float()
        return predict

    in_sample = fit(x, labels)(x)
    assert (in_sample.argmax(1) == labels).all()  # what a leak would give
    probs = cross_val_probs(x, labels, fit, k=3, seed=1)
    assert torch.allclose(probs.sum(1), torch.ones(n))
    agreement = (probs.argmax(1) == labels).float().mean().item()
    assert agreement < 0.6, agreement


def test_generalized_cross_entropy_limits_and_gradient():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 5, generator=g) * 2
    y = torch.randint(0, 5, (16,), generator=g)
    ce = F.cross_entropy(z, y, reduction="none")
    assert torch.allclose(generalized_cross_entropy(z, y, q=1e-4), ce, rtol=1e-2, atol=1e-3)
    p_y = torch.softmax(z, 1)[torch.arange(16), y]
    assert torch.allclose(generalized_cross_entropy(z, y, q=1.0), 1 - p_y, atol=1e-6)
    for q in (0.3, 0.7):
        zz = z.clone().requires_grad_()
        (grad_gce,) = torch.autograd.grad(generalized_cross_entropy(zz, y, q=q).sum(), zz)
        zc = z.clone().requires_grad_()
        (grad_ce,) = torch.autograd.grad(F.cross_entropy(zc, y, reduction="sum"), zc)
        assert torch.allclose(grad_gce, grad_ce * p_y[:, None] ** q, atol=1e-5), q
    for q in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError):
            generalized_cross_entropy(z, y, q=q)


# --------------------------------------------------------------------------------------------- #
# Calibration
# --------------------------------------------------------------------------------------------- #
def _numpy_ece(probs: np.ndarray, labels: np.ndarray, bins: int) -> float:
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi)
        if b == 0:
            inside |= conf == 0
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(total)


@pytest.mark.parametrize("bins", [1, 5, 15])
def test_ece_matches_an_independent_numpy_computation(bins):
    g = torch.Generator().manual_seed(bins)
    probs = torch.softmax(torch.randn(2000, 6, generator=g) * 2.5, dim=1)
    labels = torch.randint(0, 6, (2000,), generator=g)
    labels[:1200] = probs[:1200].argmax(1)  # some right, some wrong
    want = _numpy_ece(probs.double().numpy(), labels.numpy(), bins)
    # float32 sums inside: about 1e-6 absolute error on an ECE of a few thousandths
    assert math.isclose(expected_calibration_error(probs, labels, bins), want, rel_tol=1e-4, abs_tol=5e-6)
    b = reliability_bins(probs, labels, bins)
    assert int(b.count.sum()) == 2000 and len(b.edges) == bins + 1


def test_ece_is_near_zero_when_labels_are_drawn_from_the_probabilities():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(100_000, 4, generator=g) * 1.5, dim=1)
    labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
    assert expected_calibration_error(probs, labels, 15) < 0.01
    # The same predictions with every label wrong are far from calibrated.
    wrong = (probs.argmax(1) + 1) % 4
    assert expected_calibration_error(probs, wrong, 15) > 0.5


def test_ece_hand_example_and_bin_edges():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = torch.tensor([0, 0, 0, 1])
    # bin (0.75, 1]: 0.9 right, 0.8 wrong -> |0.5 - 0.85|; bin (0.5, 0.75]: both right -> |1 - 0.65|
    assert math.isclose(expected_calibration_error(probs, labels, 4), 0.5 * 0.35 + 0.5 * 0.35, rel_tol=1e-6)
    # A confidence equal to an inner edge belongs to the bin below it; 1.0 to the last bin.
    edge = torch.tensor([[0.5, 0.5], [0.75, 0.25], [1.0, 0.0], [0.25, 0.25]])
    b = reliability_bins(edge, torch.tensor([0, 0, 0, 0]), 4)
    assert b.count.tolist() == [1, 1, 1, 1]
    assert torch.isnan(reliability_bins(torch.tensor([[0.9, 0.1]]), torch.tensor([0]), 4).accuracy[0])


def test_calibration_rejects_bad_shapes():
    with pytest.raises(ValueError):
        expected_calibration_error(torch.ones(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        expected_calibration_error(torch.ones(4, 2) / 2, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError):
        expected_calibration_error(torch.ones(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError):
        expected_calibration_error(torch.ones(4, 2) / 2, torch.zeros(4, dtype=torch.long), bins=0)
    with pytest.raises(ValueError):
        fit_temperature(torch.ones(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        fit_temperature(torch.ones(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError):
        fit_temperature(torch.ones(0, 3), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("k", [0.5, 3.0])
def test_fit_temperature_recovers_the_scale_and_keeps_the_argmax(k):
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20_000, 5, generator=g) * 2
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=g).squeeze(1)
    logits = true_logits * k
    t = fit_temperature(logits, labels)
    assert abs(t - k) / k < 0.1, t
    assert torch.equal((logits / t).argmax(1), logits.argmax(1))
    calibrated = torch.softmax(logits / t, 1)
    assert expected_calibration_error(calibrated, labels) < expected_calibration_error(torch.softmax(logits, 1), labels)


# --------------------------------------------------------------------------------------------- #
# Subgroups
# --------------------------------------------------------------------------------------------- #
def test_brightness_of_constant_images_and_colourfulness_of_grey_images():
    consts = torch.tensor([0.0, 17.0, 128.0, 255.0])
    grey = consts.view(-1, 1, 1, 1).expand(4, 3, 5, 6).clone()
    assert torch.allclose(brightness(grey), consts, atol=1e-3)
    assert torch.allclose(colourfulness(grey), torch.zeros(4), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    varying_grey = torch.randint(0, 256, (3, 1, 8, 8), generator=g).expand(3, 3, 8, 8).to(torch.uint8)
    assert torch.allclose(colourfulness(varying_grey), torch.zeros(3), atol=1e-4)
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 255
    assert math.isclose(brightness(red).item(), 0.299 * 255, rel_tol=1e-6)
    with pytest.raises(ValueError):
        brightness(torch.zeros(2, 1, 4, 4))


def _hasler(img: np.ndarray) -> float:
    r, g, b = (img[c].astype(np.float64) for c in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return math.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)


def test_colourfulness_matches_a_numpy_hasler_susstrunk():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (5, 3, 9, 7), generator=g, dtype=torch.uint8)
    images[1, 2] = 0  # a strongly coloured one
    want = torch.tensor([_hasler(im) for im in images.numpy()], dtype=torch.float32)
    assert torch.allclose(colourfulness(images), want, rtol=1e-4)


def _wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / denom, (centre + spread) / denom


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (7, 20), (812, 1000), (1, 3)])
def test_wilson_interval_matches_the_closed_form_and_scipy(k, n):
    from scipy.stats import binomtest

    lo, hi = wilson_interval(k, n)
    want = _wilson(k, n)
    assert math.isclose(lo, max(0.0, want[0]), abs_tol=1e-9) and math.isclose(hi, min(1.0, want[1]), abs_tol=1e-9)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert math.isclose(lo, ci.low, abs_tol=1e-6) and math.isclose(hi, ci.high, abs_tol=1e-6)
    assert 0.0 <= lo <= k / n <= hi + 1e-12 and hi <= 1.0  # k = n gives 1 - 1e-16 (rounding)


def test_wilson_interval_rejects_impossible_counts():
    for k, n in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            wilson_interval(k, n)


def test_difference_interval_newcombe_hand_values():
    # Newcombe (1998), Table II, method 10: 56/70 - 48/80 and 9/10 - 3/10.
    d, lo, hi = difference_interval(56, 70, 48, 80)
    assert math.isclose(d, 0.2) and lo < d < hi
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)
    d, lo, hi = difference_interval(9, 10, 3, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.1705, 0.8090)
    # Built from the two Wilson intervals as written.
    l1, u1 = _wilson(30, 50)
    l2, u2 = _wilson(20, 60)
    d, lo, hi = difference_interval(30, 50, 20, 60)
    p1, p2 = 0.6, 1 / 3
    assert math.isclose(lo, d - math.hypot(p1 - l1, u2 - p2)) and math.isclose(hi, d + math.hypot(u1 - p1, p2 - l2))
    # Equal proportions and sizes: symmetric around 0.
    d, lo, hi = difference_interval(7, 20, 7, 20)
    assert d == 0 and math.isclose(lo, -hi)


def test_group_table_counts_and_accuracy():
    correct = torch.tensor([True, False, True, True, False, True])
    rows = group_table(correct, {"dark": torch.tensor([1, 1, 1, 0, 0, 0]).bool(),
                                 "bright": np.array([False, False, False, True, True, True])})
    assert [r.group for r in rows] == ["dark", "bright"]
    assert [r.n for r in rows] == [3, 3]
    assert [r.accuracy for r in rows] == [2 / 3, 2 / 3]
    assert (rows[0].low, rows[0].high) == pytest.approx(_wilson(2, 3))
    with pytest.raises(ValueError, match="empty"):
        group_table(correct, {"none": torch.zeros(6, dtype=torch.bool)})
    with pytest.raises(ValueError):
        group_table(correct, {"short": torch.ones(5, dtype=torch.bool)})


def test_scale_brightness_identity_and_halving():
    mean, std = torch.tensor([125.3, 123.0, 113.9]), torch.tensor([63.0, 62.1, 66.7])
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(4, 3, 5, 5, generator=g) * 255
    norm = (raw - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    assert torch.allclose(scale_brightness(norm, 1.0, mean, std), norm, atol=1e-5)
    half = scale_brightness(norm, 0.5, mean, std)
    assert torch.allclose(half * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1), raw * 0.5, atol=1e-3)
    per_image = scale_brightness(norm, torch.tensor([1.0, 0.5, 0.25, 0.0]), mean, std)
    back = per_image * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    for i, f in enumerate([1.0, 0.5, 0.25, 0.0]):
        assert torch.allclose(back[i], raw[i] * f, atol=1e-3)


# --------------------------------------------------------------------------------------------- #
# Explanations
# --------------------------------------------------------------------------------------------- #
def test_completeness_gap_is_zero_for_exact_linear_attributions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(3, 3, 4, 4)
    b = torch.randn(3, 3, 4, 4) * 0.5
    w = model[1].weight.detach()
    for target in (2, torch.tensor([0, 4, 1])):
        t = torch.as_tensor(target).expand(3)
        attr = (x - b) * w[t].view(3, 3, 4, 4)
        assert torch.allclose(completeness_gap(model, x, b, attr, target), torch.zeros(3), atol=1e-5)
    # Attributions that ignore the baseline are incomplete by the baseline's output.
    t = torch.tensor([0, 4, 1])
    gap = completeness_gap(model, x, b, x * w[t].view(3, 3, 4, 4), t)
    assert torch.allclose(gap, (b.flatten(1) * w[t]).sum(1), atol=1e-5)
    with pytest.raises(ValueError):
        completeness_gap(model, x, b, attr[:2], 0)


def test_completeness_gap_of_captum_integrated_gradients_is_small():
    from captum.attr import IntegratedGradients

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 4)).eval()
    x = torch.randn(4, 3, 8, 8) * 2
    b = torch.zeros_like(x)
    target = torch.tensor([0, 1, 2, 3])
    attr = IntegratedGradients(model).attribute(x, baselines=b, target=target, n_steps=200)
    gap = completeness_gap(model, x, b, attr, target)
    with torch.no_grad():
        delta = model(x)[torch.arange(4), target] - model(b)[torch.arange(4), target]
    assert (delta.abs() > 1e-3).all()
    assert ((gap.abs() / delta.abs()) < 0.02).all(), (gap, delta)
    # A crude sum is visibly less complete, which is what the check is for.
    coarse = IntegratedGradients(model).attribute(x, baselines=b, target=target, n_steps=2,
                                                  method="riemann_right")
    assert completeness_gap(model, x, b, coarse, target).abs().max() > gap.abs().max()


def test_region_share_of_concentrated_and_uniform_maps():
    region = mark_region(8, 8, size=3, corner="bottom-right")
    inside = torch.zeros(2, 3, 8, 8)
    inside[:, :, 5:, 5:] = torch.randn(2, 3, 3, 3)
    assert torch.allclose(region_share(inside, region), torch.ones(2))
    uniform = -torch.ones(2, 8, 8)
    assert torch.allclose(region_share(uniform, region), torch.full((2,), 9 / 64))
    assert torch.allclose(region_share(uniform[:, None], region), torch.full((2,), 9 / 64))
    with pytest.raises(ValueError):
        region_share(uniform, torch.zeros(4, 4, dtype=torch.bool))


def _small_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_randomized_copy_resets_only_the_named_layers():
    model = _small_net()
    model.train()
    model(torch.randn(8, 3, 8, 8))  # move the batch-norm running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy_ = randomized_copy(model, ["4", "1"], seed=3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # original untouched
    new = copy_.state_dict()
    assert not torch.equal(new["4.weight"], before["4.weight"])
    assert not torch.equal(new["1.running_mean"], before["1.running_mean"])
    assert torch.equal(new["1.running_mean"], torch.zeros(4))
    assert torch.equal(new["0.weight"], before["0.weight"]) and torch.equal(new["0.bias"], before["0.bias"])
    same_seed = randomized_copy(model, ["4"], seed=3).state_dict()["4.weight"]
    assert torch.equal(same_seed, randomized_copy(model, ["4"], seed=3).state_dict()["4.weight"])
    assert not torch.equal(same_seed, randomized_copy(model, ["4"], seed=4).state_dict()["4.weight"])
    with pytest.raises(KeyError):
        randomized_copy(model, ["head"])


def test_rank_correlation_self_sign_flip_and_scipy():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 2, 5, 5, generator=g)
    assert torch.allclose(rank_correlation(a, a), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(rank_correlation(a, -a), torch.ones(4, dtype=torch.float64))
    b = torch.randn(4, 2, 5, 5, generator=g) + a
    b[0, 0, 0, :3] = b[0, 0, 0, 0]  # ties
    got = rank_correlation(a, b)
    for i in range(4):
        want = spearmanr(a[i].abs().flatten().numpy(), b[i].abs().flatten().numpy()).statistic
        assert math.isclose(float(got[i]), float(want), rel_tol=1e-6, abs_tol=1e-9)
    with pytest.raises(ValueError):
        rank_correlation(a, b[:, :1])


@pytest.mark.parametrize("corner", ["top-left", "top-right", "bottom-left", "bottom-right"])
def test_plant_mark_stamps_only_the_region_of_the_selected_images(corner):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 7, 9, generator=g) * 100
    keep = images.clone()
    which = torch.tensor([True, False, True, False, False])
    out = plant_mark(images, which, size=2, value=255.0, corner=corner)
    region = mark_region(7, 9, size=2, corner=corner)
    assert torch.equal(images, keep)  # input unchanged
    assert int(region.sum()) == 4
    assert (out[which][:, :, region] == 255.0).all()
    assert torch.equal(out[which][:, :, ~region], images[which][:, :, ~region])
    assert torch.equal(out[~which], images[~which])
    expected_rows = slice(0, 2) if corner.startswith("top") else slice(5, 7)
    expected_cols = slice(0, 2) if corner.endswith("left") else slice(7, 9)
    assert region[expected_rows, expected_cols].all()


def test_plant_mark_and_mark_region_reject_bad_arguments():
    images = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError):
        plant_mark(images, torch.tensor([True, False]), corner="middle")
    with pytest.raises(ValueError):
        plant_mark(images, torch.tensor([True, False]), size=5)
    with pytest.raises(ValueError):
        plant_mark(images, torch.tensor([True]))
    with pytest.raises(ValueError):
        mark_region(4, 4, corner="middle")


# --------------------------------------------------------------------------------------------- #
# Heads
# --------------------------------------------------------------------------------------------- #
def test_fit_head_separates_blobs_and_is_deterministic():
    x, y = _blobs(300, num_classes=3, dim=10, spread=3.0)
    head = fit_head(x, y, 3, steps=100)
    assert isinstance(head, Head) and not head.training
    assert accuracy_of(head, x, y) > 0.95
    again = fit_head(x, y, 3, steps=100)
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), again.state_dict().values()))
    other = fit_head(x, y, 3, steps=100, seed=1)
    assert not torch.equal(other.net.weight, head.net.weight)
    mlp = fit_head(x, y, 3, hidden=16, steps=100)
    assert accuracy_of(mlp, x, y) > 0.95


def test_fit_head_weights_change_the_result_and_are_checked():
    x, y = _blobs(90, num_classes=3, dim=4, spread=1.0)
    plain = fit_head(x, y, 3, steps=50)
    uniform = fit_head(x, y, 3, steps=50, weights=torch.full((90,), 2.0))
    assert torch.allclose(uniform.net.weight, plain.net.weight, atol=1e-5)  # only relative weights count
    weights = torch.where(y == 0, 10.0, 1.0)
    weighted = fit_head(x, y, 3, steps=50, weights=weights)
    assert not torch.allclose(weighted.net.weight, plain.net.weight, atol=1e-3)
    with pytest.raises(ValueError, match="non-negative"):
        fit_head(x, y, 3, weights=-weights)
    with pytest.raises(ValueError, match="non-negative"):
        fit_head(x, y, 3, weights=weights[:10])
    with pytest.raises(ValueError, match="lie in"):
        fit_head(x, y + 1, 3)
    with pytest.raises(ValueError):
        fit_head(x[:, 0], y, 3)


@pytest.mark.parametrize("stages", [2, 4])
def test_extract_features_is_the_heads_input(stages):
    from dlkit.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(num_classes=10, width=4, stages=stages, dropout=0.5)
    model.train()
    model(torch.randn(8, 3, 16, 16))  # non-trivial batch-norm statistics
    images = torch.randn(7, 3, 16, 16)
    feats = extract_features(model, images, batch_size=3)
    assert feats.shape == (7, 4 * 2 ** (stages - 1)) and feats.dtype == torch.float32
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        want = model.head[1](model.head[0](model.features(images)))
        assert torch.allclose(feats, want, atol=1e-5)
        assert torch.allclose(model.head[-1](feats), model(images), atol=1e-5)
    with pytest.raises(TypeError):
        extract_features(nn.Linear(3, 2), images)



# --------------------------------------------------------------------------------------------- #
# Paired bootstrap, grayscale augmentation, candidate subsampling, the label-issue browser
# --------------------------------------------------------------------------------------------- #
def test_bootstrap_interval_covers_the_estimate_and_matches_the_binomial_spread():
    from dlkit.datacentric import bootstrap_interval

    gen = torch.Generator().manual_seed(0)
    hits = torch.rand(4000, generator=gen) < 0.3
    est, low, high = bootstrap_interval(lambda h: h.float().mean().item(), hits, n_boot=800, seed=1)
    assert est == pytest.approx(hits.float().mean().item())
    assert low < est < high
    half = 1.96 * math.sqrt(est * (1 - est) / len(hits))
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)


def test_bootstrap_interval_is_paired():
    from dlkit.datacentric import bootstrap_interval

    # Model b is right exactly where a is, plus 2% more items: the paired difference is nearly
    # constant, so its interval is far narrower than the two accuracies' separate spreads.
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2000, generator=gen) < 0.6
    b = a | (torch.rand(2000, generator=gen) < 0.05)
    est, low, high = bootstrap_interval(lambda p, q: q.float().mean().item() - p.float().mean().item(),
                                        a, b, n_boot=500)
    assert low > 0 and high - low < 0.02
    with pytest.raises(ValueError, match="one length"):
        bootstrap_interval(lambda p, q: 0.0, a, b[:10])


def test_grayscale_gives_equal_raw_channels_and_leaves_unpicked_images():
    from dlkit.datacentric import grayscale

    gen = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (5, 3, 6, 6), generator=gen).float()
    mean, std = torch.tensor([125.0, 120.0, 110.0]), torch.tensor([60.0, 58.0, 62.0])
    x = (raw - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    which = torch.tensor([True, False, True, False, False])
    out = grayscale(x, mean, std, which) * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    luma = 0.299 * raw[:, 0] + 0.587 * raw[:, 1] + 0.114 * raw[:, 2]
    for c in range(3):
        torch.testing.assert_close(out[which, c], luma[which], atol=1e-3, rtol=0)
    torch.testing.assert_close(out[~which], raw[~which], atol=1e-3, rtol=0)
    assert colourfulness(out[which]).abs().max() < 1e-2
    with pytest.raises(ValueError, match="N x 3"):
        grayscale(x[:, :1], mean, std)


def test_candidates_bound_the_items_a_strategy_sees():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(600, 4, generator=gen)
    y = (X[:, 0] > 0).long()
    run = run_active_learning("coreset", (X, y), (X[:100], y[:100]), start=20, step=10, rounds=3,
                              num_classes=2, seed=0, candidates=50)
    assert run.labels == [20, 30, 40, 50]
    assert len(set(run.labelled.tolist())) == 50
    full = run_active_learning("coreset", (X, y), (X[:100], y[:100]), start=20, step=10, rounds=3,
                               num_classes=2, seed=0)
    assert torch.equal(full.labelled[:20], run.labelled[:20])  # same start, different candidates
    assert not torch.equal(full.labelled, run.labelled)
    with pytest.raises(ValueError, match="candidates"):
        run_active_learning("random", (X, y), (X, y), start=20, step=10, rounds=1, num_classes=2,
                            candidates=0)


def test_label_issue_browser_pages_and_filters():
    from dlkit.widgets.datacentric import label_issue_browser, plot_label_issues

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 8, 8), generator=gen, dtype=torch.uint8)
    given = torch.arange(40) % 4
    probs = torch.softmax(torch.randn(40, 4, generator=gen), 1)
    ranked = torch.arange(39, -1, -1)
    classes = ["a", "b", "c", "d"]
    fig = plot_label_issues(images, given, probs, ranked, classes, page=0, per_page=16)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 16 and titles[0].startswith("#39\n")
    fig = plot_label_issues(images, given, probs, ranked, classes, only_class=2, per_page=16)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 10 and all("\nc " in t for t in titles)
    browser = label_issue_browser(images, given, probs, ranked, classes, per_page=16)
    assert browser.controls["page"].max == 2
    first = browser.png
    browser.controls["page"].value = 1
    assert browser.png != first
    with pytest.raises(ValueError, match="one row per image"):
        plot_label_issues(images, given[:5], probs, ranked, classes)
