"""Tests for the chapter 07 exercise checks: right answers pass, typical mistakes get specific hints."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics
import torch

from dlkit.exercises import (
    LEAKY_CV_LOOP,
    Feedback,
    check_cv_leak,
    check_fold_standardize,
    check_macro_f1,
)
from dlkit.metrics import precision_recall_f1


def _per_class_f1(t, p, k):
    return sklearn.metrics.f1_score(t, p, labels=list(range(k)), average=None, zero_division=0)


# --------------------------------------------------------------------------- #
# check_macro_f1
# --------------------------------------------------------------------------- #
def test_macro_f1_accepts_correct_implementations():
    assert check_macro_f1(lambda t, p, k: precision_recall_f1(t, p, k, "macro")[2]).ok
    ref = lambda t, p, k: sklearn.metrics.f1_score(t, p, labels=list(range(k)), average="macro",  # noqa: E731
                                                   zero_division=0)
    assert check_macro_f1(ref).ok
    assert check_macro_f1(lambda t, p, k: torch.tensor(ref(t, p, k))).ok  # a 0-d tensor is fine


@pytest.mark.parametrize("wrong, fragment", [
    (lambda t, p, k: (t == p).double().mean().item(), "micro average"),
    (lambda t, p, k: float(np.mean(_per_class_f1(t, p, k)[
        np.isin(np.arange(k), np.union1d(t.numpy(), p.numpy()))])), "only over the classes that occur"),
    (lambda t, p, k: sklearn.metrics.f1_score(t, p, labels=list(range(k)), average="weighted",
                                              zero_division=0), "support-weighted"),
    (lambda t, p, k: float("nan"), "nan"),
    (lambda t, p, k: 0.5, "expected"),
    (lambda t, p, k: "0.5", "expected a float"),
    (lambda t, p, k: 1 / 0, "ZeroDivisionError"),
])
def test_macro_f1_mistakes(wrong, fragment):
    fb = check_macro_f1(wrong)
    assert isinstance(fb, Feedback) and not fb.ok
    assert fragment in str(fb)


def test_macro_f1_harmonic_mean_of_averages_is_recognised():
    def f1_of_means(t, p, k):
        pr, rc, _ = precision_recall_f1(t, p, k, average=None)
        pm, rm = pr.mean().item(), rc.mean().item()
        return 2 * pm * rm / (pm + rm)

    fb = check_macro_f1(f1_of_means)
    assert not fb.ok and "harmonic mean of the averaged precision and recall" in fb.message


# --------------------------------------------------------------------------- #
# check_cv_leak
# --------------------------------------------------------------------------- #
def test_cv_leak_listing_has_nine_numbered_lines():
    lines = LEAKY_CV_LOOP.splitlines()
    assert [int(line.split()[0]) for line in lines] == list(range(1, 10))
    assert "X.mean(dim=0)" in lines[1]


def test_cv_leak_source_does_not_hand_over_the_line():
    import inspect

    import dlkit.exercises.ch07 as ch07

    source = inspect.getsource(ch07.check_cv_leak)
    assert "2" not in source.replace("256", "")  # no literal line number in the check itself
    assert [k for k in range(-3, 20) if check_cv_leak(k).ok] == [2]


def test_cv_leak_answers():
    assert check_cv_leak(2).ok
    assert check_cv_leak(np.int64(2)).ok
    assert "before the loop" in str(check_cv_leak(7))
    # Every other wrong line gets the same question, so no hint points at the answer.
    generic = {str(check_cv_leak(k)).replace(f"line {k}", "line k") for k in (1, 3, 4, 5, 9)}
    assert len(generic) == 1 and "which examples" in generic.pop()
    assert "lines 1 to 9" in str(check_cv_leak(12))
    assert "expected a line number" in str(check_cv_leak("2"))
    assert not check_cv_leak(True).ok


# --------------------------------------------------------------------------- #
# check_fold_standardize
# --------------------------------------------------------------------------- #
def _unguarded(X_train, X_val):
    m, s = X_train.mean(0), X_train.std(0)
    return (X_train - m) / s, (X_val - m) / s


def _good(X_train, X_val):
    m, s = X_train.mean(0), X_train.std(0)
    s = torch.where(s > 0, s, torch.ones_like(s))  # scikit-learn's StandardScaler convention
    return (X_train - m) / s, (X_val - m) / s


def _clamped(X_train, X_val):
    m, s = X_train.mean(0), X_train.std(0, unbiased=False).clamp(min=1e-8)
    return (X_train - m) / s, (X_val - m) / s


def _dropped(X_train, X_val):
    keep = X_train.std(0) > 0
    m, s = X_train[:, keep].mean(0), X_train[:, keep].std(0)
    return (X_train[:, keep] - m) / s, (X_val[:, keep] - m) / s


def test_fold_standardize_accepts_train_statistics():
    assert check_fold_standardize(_good).ok
    assert check_fold_standardize(_clamped).ok
    assert check_fold_standardize(_dropped).ok
    assert check_fold_standardize(lambda a, b: tuple(t.float() for t in _good(a, b))).ok


def test_fold_standardize_rejects_a_division_by_a_zero_std():
    # The check's data has a feature that is constant in the training fold (like the blank corner
    # pixels of the digits): dividing by its std of 0 gives nan and inf, which must not pass.
    a, b = _unguarded(torch.cat([torch.randn(5, 1), torch.zeros(5, 1)], 1), torch.ones(2, 2))
    assert torch.isnan(a).any() and torch.isinf(b).any()  # what the unguarded answer produces
    fb = check_fold_standardize(_unguarded)
    assert not fb.ok
    assert "std is 0" in fb.message and "nan" in fb.message
    assert "StandardScaler" in fb.hint


def test_fold_standardize_rejects_any_non_finite_output():
    fb = check_fold_standardize(lambda a, b: (torch.full_like(a, float("nan")), b))
    assert not fb.ok and "nan or inf" in str(fb)


def _pooled(X_train, X_val):
    both = torch.cat([X_train, X_val])
    m, s = both.mean(0), both.std(0)
    return (X_train - m) / s, (X_val - m) / s


@pytest.mark.parametrize("wrong, fragment", [
    (_pooled, "both folds together"),
    (lambda a, b: ((a - a.mean(0)) / a.std(0), (b - b.mean(0)) / b.std(0)), "its own statistics"),
    (lambda a, b: (a - a.mean(0), b - a.mean(0)), "not scaled"),
    (lambda a, b: ((a - a.mean(1, keepdim=True)) / a.std(1, keepdim=True),
                   (b - b.mean(1, keepdim=True)) / b.std(1, keepdim=True)), "per feature (column)"),
    (lambda a, b: a, "expected a tuple"),
    (lambda a, b: (a[:5], b), "shapes changed"),
    (lambda a, b: a.foo, "AttributeError"),
])
def test_fold_standardize_mistakes(wrong, fragment):
    fb = check_fold_standardize(wrong)
    assert not fb.ok and fragment in str(fb)
