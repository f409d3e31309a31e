"""Tests for dlkit.metrics: accuracy and confusion_matrix against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics
import torch

from dlkit.metrics import accuracy, confusion_matrix

# scikit-learn warns about one-label inputs even when `labels` is given; those cases are wanted.
pytestmark = pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")


def _cases(n_cases: int = 60):
    rng = np.random.default_rng(0)
    for i in range(n_cases):
        k = int(rng.integers(1, 8))
        n = int(rng.integers(1, 40))
        # Draw from a subset of the classes so some are absent from y_true or y_pred.
        hi_true = int(rng.integers(1, k + 1))
        hi_pred = int(rng.integers(1, k + 1))
        y_true = rng.integers(0, hi_true, n)
        y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, hi_pred, n)) if i % 2 else \
            rng.integers(k - hi_pred, k, n)
        yield k, y_true, y_pred


def test_cases_include_absent_classes():
    absent_true = absent_pred = 0
    for k, t, p in _cases():
        absent_true += len(set(range(k)) - set(t.tolist())) > 0
        absent_pred += len(set(range(k)) - set(p.tolist())) > 0
    assert absent_true > 10 and absent_pred > 10


@pytest.mark.parametrize("kind", ["numpy", "torch", "list"])
def test_accuracy_matches_sklearn(kind):
    convert = {"numpy": lambda a: a, "torch": torch.from_numpy, "list": lambda a: a.tolist()}[kind]
    for _, t, p in _cases():
        got = accuracy(convert(t), convert(p))
        assert isinstance(got, float)
        assert got == pytest.approx(sklearn.metrics.accuracy_score(t, p), abs=1e-12)


@pytest.mark.parametrize("kind", ["numpy", "torch", "list"])
def test_confusion_matrix_matches_sklearn(kind):
    convert = {"numpy": lambda a: a, "torch": torch.from_numpy, "list": lambda a: a.tolist()}[kind]
    for k, t, p in _cases():
        got = confusion_matrix(convert(t), convert(p), k)
        assert got.dtype == torch.int64
        assert got.shape == (k, k)
        expected = sklearn.metrics.confusion_matrix(t, p, labels=list(range(k)))
        np.testing.assert_array_equal(got.numpy(), expected)
        assert got.sum().item() == len(t)


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix([0, 0, 1], [1, 1, 1], 3)
    assert cm.tolist() == [[0, 2, 0], [0, 1, 0], [0, 0, 0]]


def test_accuracy_simple_values():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
    assert accuracy(torch.tensor([3]), torch.tensor([3])) == 1.0
    assert accuracy(np.array([0, 1], dtype=np.int32), np.array([1, 0], dtype=np.int32)) == 0.0


def test_metrics_accept_other_integer_dtypes():
    t = torch.tensor([0, 1, 2, 2], dtype=torch.uint8)
    p = torch.tensor([0, 2, 2, 2], dtype=torch.int32)
    assert accuracy(t, p) == 0.75
    assert confusion_matrix(t, p, 3).tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]


def test_length_mismatch():
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="same length, got 2 and 3"):
        confusion_matrix([0, 1], [0, 1, 1], 3)


def test_empty_inputs():
    with pytest.raises(ValueError, match="empty"):
        accuracy(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))


@pytest.mark.parametrize("y_true, y_pred, fragment", [
    ([0, 3], [0, 1], r"y_true holds values in \[0, 3\], expected class indices in \[0, 3\)"),
    ([0, 1], [-1, 1], r"y_pred holds values in \[-1, 1\], expected class indices in \[0, 3\)"),
])
def test_confusion_matrix_out_of_range(y_true, y_pred, fragment):
    with pytest.raises(ValueError, match=fragment):
        confusion_matrix(y_true, y_pred, 3)


@pytest.mark.parametrize("fn", [accuracy, lambda t, p: confusion_matrix(t, p, 3)])
def test_float_labels_rejected(fn):
    with pytest.raises(TypeError, match="y_true must hold integer class indices, got dtype torch.float"):
        fn(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="y_pred must hold integer class indices"):
        fn(np.array([0, 1]), np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="y_pred must hold integer class indices, got dtype torch.bool"):
        fn([0, 1], [True, False])


@pytest.mark.parametrize("fn", [accuracy, lambda t, p: confusion_matrix(t, p, 3)])
def test_two_dimensional_input_rejected(fn):
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"y_pred must be a 1-D sequence of class indices, got shape \(4, 3\)"):
        fn(torch.tensor([0, 1, 2, 0]), logits)  # logits instead of their argmax
    with pytest.raises(ValueError, match=r"y_true must be a 1-D sequence.*shape \(\)"):
        fn(torch.tensor(1), torch.tensor([1]))


@pytest.mark.parametrize("k", [0, -2, 2.0, True, None])
def test_confusion_matrix_bad_num_classes(k):
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        confusion_matrix([0, 1], [1, 0], k)
