"""Chapter 15's exercise checks accept the right answers and explain the usual wrong ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlkit.datacentric import (
    completeness_gap,
    expected_calibration_error,
    margin_scores,
)
from dlkit.exercises import check_completeness, check_ece, check_margin_sampling

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------- #
# check_margin_sampling
# --------------------------------------------------------------------------------------------- #
def margin_topk(probs, k):
    top2 = probs.topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]).topk(k, largest=False).indices


def test_margin_sampling_accepts_right_answers_in_any_form():
    assert check_margin_sampling(margin_topk).ok
    assert check_margin_sampling(lambda p, k: (-margin_scores(p)).topk(k).indices).ok
    # By sorting, returned as a list or a numpy array, in reverse order.
    assert check_margin_sampling(lambda p, k: torch.argsort(margin_scores(p))[:k].tolist()[::-1]).ok

    def numpy_way(probs, k):
        s = np.sort(probs.numpy(), axis=1)
        return np.argsort(s[:, -1] - s[:, -2])[:k]

    assert check_margin_sampling(numpy_way).ok


def test_margin_sampling_mistakes_get_specific_hints():
    def largest(probs, k):
        return margin_scores(probs).topk(k).indices

    def least_confident(probs, k):
        return probs.max(1).values.topk(k, largest=False).indices

    def entropy(probs, k):
        return (-(probs * probs.log()).sum(1)).topk(k).indices

    def first_columns(probs, k):
        return (probs[:, 0] - probs[:, 1]).abs().topk(k, largest=False).indices

    def scores(probs, k):
        return margin_scores(probs)

    def values(probs, k):
        return margin_scores(probs).topk(k, largest=False).values

    def mask(probs, k):
        m = torch.zeros(len(probs), dtype=torch.bool)
        m[margin_topk(probs, k)] = True
        return m

    def in_place(probs, k):
        probs[:] = probs.sort(dim=1, descending=True).values
        return (probs[:, 0] - probs[:, 1]).topk(k, largest=False).indices

    def repeated(probs, k):
        return margin_topk(probs, 1).repeat(k)

    fb = check_margin_sampling(largest)
    assert not fb.ok and "largest margins" in fb.message and "increasing" in fb.hint
    fb = check_margin_sampling(least_confident)
    assert not fb.ok and "least confidence" in fb.message and "second largest" in fb.hint
    fb = check_margin_sampling(entropy)
    assert not fb.ok and "entropy" in fb.message
    fb = check_margin_sampling(first_columns)
    assert not fb.ok and "first two columns" in fb.message
    fb = check_margin_sampling(scores)
    assert not fb.ok and "one score per pool item" in fb.message and "positions" in fb.hint
    fb = check_margin_sampling(values)
    assert not fb.ok and "margins themselves" in fb.message
    fb = check_margin_sampling(mask)
    assert not fb.ok and "mask" in fb.message
    fb = check_margin_sampling(in_place)
    assert not fb.ok and "changed the probabilities" in fb.message
    fb = check_margin_sampling(repeated)
    assert not fb.ok and ("more than once" in fb.message or "k=1" in fb.message)
    fb = check_margin_sampling(lambda p, k: margin_topk(p, k)[:-1])
    assert not fb.ok and "indices" in fb.message


def test_margin_sampling_never_raises_on_broken_answers():
    for broken in (lambda p, k: None, lambda p, k: 1 / 0, lambda p, k: "rows",
                   lambda p, k: torch.arange(k) + 1000, lambda p, k: torch.arange(k)):
        fb = check_margin_sampling(broken)
        assert not fb.ok and fb.message


# --------------------------------------------------------------------------------------------- #
# check_ece
# --------------------------------------------------------------------------------------------- #
def ece_loop(probs, labels, bins):
    conf, pred = probs.max(1)
    correct = (pred == labels).float()
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.float().mean() * (correct[inside].mean() - conf[inside].mean()).abs()
    return float(total)


def _binned(probs, labels, bins):
    conf, pred = probs.max(1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    which = torch.bucketize(conf, edges[1:-1])
    return conf, correct, which


def test_ece_accepts_dlkit_and_a_loop():
    assert check_ece(expected_calibration_error).ok
    assert check_ece(ece_loop).ok
    assert check_ece(lambda p, y, b: torch.tensor(ece_loop(p, y, b))).ok  # a one-element tensor


def test_ece_mistakes_get_specific_hints():
    def unweighted(probs, labels, bins):
        conf, correct, which = _binned(probs, labels, bins)
        gaps = [(correct[which == b].mean() - conf[which == b].mean()).abs()
                for b in range(bins) if (which == b).any()]
        return float(torch.stack(gaps).mean())

    def global_accuracy(probs, labels, bins):
        conf, correct, which = _binned(probs, labels, bins)
        return float(sum((which == b).float().mean() * (correct.mean() - conf[which == b].mean()).abs()
                         for b in range(bins) if (which == b).any()))

    def no_abs(probs, labels, bins):
        conf, correct, which = _binned(probs, labels, bins)
        return float(sum((which == b).float().mean() * (correct[which == b].mean() - conf[which == b].mean())
                         for b in range(bins) if (which == b).any()))

    def fifteen(probs, labels, bins):
        return expected_calibration_error(probs, labels, 15)

    def left_closed(probs, labels, bins):
        conf, pred = probs.max(1)
        correct = (pred == labels).float()
        which = (conf * bins).floor().long().clamp(max=bins - 1)
        return float(sum((which == b).float().mean() * (correct[which == b].mean() - conf[which == b].mean()).abs()
                         for b in range(bins) if (which == b).any()))

    def overflow(probs, labels, bins):
        conf = probs.max(1).values
        counts = torch.zeros(bins)
        counts[(conf * bins).floor().long()] += 1  # 1.0 lands in bin `bins`
        return ece_loop(probs, labels, bins)

    fb = check_ece(unweighted)
    assert not fb.ok and "plain average" in fb.message and "n_b / N" in fb.hint
    fb = check_ece(global_accuracy)
    assert not fb.ok and "accuracy over all" in fb.message and "in that bin only" in fb.hint
    fb = check_ece(no_abs)
    assert not fb.ok and "cancel" in fb.message and "absolute value" in fb.hint
    fb = check_ece(lambda p, y, b: abs(no_abs(p, y, b)))
    assert not fb.ok and "absolute value" in fb.hint
    fb = check_ece(fifteen)
    assert not fb.ok and "15 bins" in fb.message
    fb = check_ece(left_closed)
    assert not fb.ok and "bin above" in fb.message and "(lo, hi]" in fb.hint
    fb = check_ece(overflow)
    assert not fb.ok and "IndexError" in fb.message and "last bin" in fb.hint
    fb = check_ece(lambda p, y, b: 100 * expected_calibration_error(p, y, b))
    assert not fb.ok and "percentage" in fb.message


def test_ece_never_raises_on_broken_answers():
    for broken in (lambda p, y, b: None, lambda p, y, b: 1 / 0, lambda p, y, b: "0.1",
                   lambda p, y, b: torch.ones(b), lambda p, y, b: float("nan"), lambda p, y, b: 0.0):
        fb = check_ece(broken)
        assert not fb.ok and fb.message


# --------------------------------------------------------------------------------------------- #
# check_completeness
# --------------------------------------------------------------------------------------------- #
def gap_by_hand(model, x, baseline, attributions, target):
    rows = torch.arange(len(x))
    t = torch.as_tensor(target).expand(len(x))
    with torch.no_grad():
        change = model(x)[rows, t] - model(baseline)[rows, t]
    return attributions.reshape(len(x), -1).sum(1) - change


def _target_logits(model, images, target):
    t = torch.as_tensor(target).expand(len(images))
    return model(images)[torch.arange(len(images)), t]


def test_completeness_accepts_dlkit_and_a_hand_version():
    assert check_completeness(completeness_gap).ok
    assert check_completeness(gap_by_hand).ok
    # Without torch.no_grad the result still carries a graph: accepted all the same.
    assert check_completeness(lambda m, x, b, a, t: a.flatten(1).sum(1) - (_target_logits(m, x, t)
                                                                           - _target_logits(m, b, t))).ok


def test_completeness_mistakes_get_specific_hints():
    def flipped(m, x, b, a, t):
        return -gap_by_hand(m, x, b, a, t)

    def no_baseline(m, x, b, a, t):
        return a.flatten(1).sum(1) - _target_logits(m, x, t)

    def probabilities(m, x, b, a, t):
        rows = torch.arange(len(x))
        tt = torch.as_tensor(t).expand(len(x))
        return a.flatten(1).sum(1) - (m(x).softmax(1)[rows, tt] - m(b).softmax(1)[rows, tt])

    def whole_batch(m, x, b, a, t):
        return gap_by_hand(m, x, b, a, t).sum()

    def table(m, x, b, a, t):
        return a.flatten(1).sum(1) - (m(x)[:, t] - m(b)[:, t])

    def predicted_class(m, x, b, a, t):
        return gap_by_hand(m, x, b, a, m(x).argmax(1))

    fb = check_completeness(flipped)
    assert not fb.ok and "wrong sign" in fb.message
    fb = check_completeness(lambda *args: gap_by_hand(*args).abs())
    assert not fb.ok and "without its sign" in fb.message
    fb = check_completeness(no_baseline)
    assert not fb.ok and "baseline" in fb.message and "f(baseline)" in fb.hint
    fb = check_completeness(probabilities)
    assert not fb.ok and "probability" in fb.message and "logit" in fb.hint
    fb = check_completeness(whole_batch)
    assert not fb.ok and "whole batch" in fb.message
    fb = check_completeness(table)
    assert not fb.ok and "table" in fb.message and "row i with target i" in fb.hint
    fb = check_completeness(predicted_class)
    assert not fb.ok and "another output" in fb.message


def test_completeness_never_raises_on_broken_answers():
    for broken in (lambda *a: None, lambda *a: 1 / 0, lambda *a: "gap", lambda *a: 0.0,
                   lambda m, x, b, a, t: torch.zeros(len(x)), lambda m, x, b, a, t: a.sum(1)):
        fb = check_completeness(broken)
        assert not fb.ok and fb.message
