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


# --------------------------------------------------------------------------- #
# precision_recall_f1 (chapter 07)
# --------------------------------------------------------------------------- #
from dlkit.metrics import CVResult, cross_validate, precision_recall_f1


def _many_cases():
    # More and larger cases than _cases(), still with classes absent on either side.
    yield from _cases(300)
    rng = np.random.default_rng(1)
    for _ in range(100):
        k = int(rng.integers(2, 12))
        n = int(rng.integers(1, 200))
        y_true = rng.integers(0, k, n)
        y_pred = np.where(rng.random(n) < rng.random(), y_true, rng.integers(0, k, n))
        yield k, y_true, y_pred


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_precision_recall_f1_matches_sklearn(average):
    n_cases = 0
    for k, t, p in _many_cases():
        got = precision_recall_f1(t, p, k, average=average)
        ref = sklearn.metrics.precision_recall_fscore_support(
            t, p, labels=list(range(k)), average=average, zero_division=0)
        for g, r in zip(got, ref[:3]):
            if average is None:
                assert isinstance(g, torch.Tensor) and g.dtype == torch.float64 and g.shape == (k,)
                np.testing.assert_allclose(g.numpy(), r, rtol=0, atol=1e-12)
            else:
                assert isinstance(g, float)
                assert g == pytest.approx(float(r), abs=1e-12)
        n_cases += 1
    assert n_cases == 400


def test_precision_recall_f1_absent_classes_count_as_zero():
    # Class 2 is neither true nor predicted; class 1 is predicted but never true.
    p, r, f = precision_recall_f1([0, 0, 0, 1], [0, 0, 1, 1], 3, average=None)
    assert p.tolist() == [1.0, 0.5, 0.0]
    assert r.tolist() == [pytest.approx(2 / 3), 1.0, 0.0]
    assert f.tolist() == [pytest.approx(0.8), pytest.approx(2 / 3), 0.0]
    macro = precision_recall_f1([0, 0, 0, 1], [0, 0, 1, 1], 3)
    assert macro[2] == pytest.approx((0.8 + 2 / 3 + 0.0) / 3)  # mean of F1s, not F1 of means


def test_micro_f1_equals_accuracy():
    for k, t, p in _cases():
        reference = sklearn.metrics.accuracy_score(t, p)  # not dlkit's own accuracy
        assert precision_recall_f1(t, p, k, "micro")[2] == pytest.approx(reference, abs=1e-12)


def test_precision_recall_f1_bad_average():
    with pytest.raises(ValueError, match=r"average must be one of \['macro', 'micro', 'weighted', None\]"):
        precision_recall_f1([0, 1], [0, 1], 2, average="binary")
    with pytest.raises(ValueError, match="expected class indices in"):
        precision_recall_f1([0, 5], [0, 1], 2)


# --------------------------------------------------------------------------- #
# cross_validate (chapter 07)
# --------------------------------------------------------------------------- #
def _cv_data(n: int = 90, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    X = centres[y] + 0.8 * torch.randn(n, 2, generator=g)
    return X, y


def _tiny_net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


@pytest.mark.usefixtures("one_thread")
def test_cross_validate_folds_are_stratified_and_reproducible(monkeypatch):
    import dlkit.train

    seen = []
    real_fit = dlkit.train.fit

    def spy_fit(model, loader, *args, **kwargs):
        ys = torch.cat([b[1] for b in loader])
        seen.append(torch.bincount(ys, minlength=3).tolist())
        return real_fit(model, loader, *args, **kwargs)

    # cross_validate lives in dlkit.train.cv and calls the fit it imported there.
    monkeypatch.setattr(getattr(dlkit.train, "cv", dlkit.train), "fit", spy_fit)
    X, y = _cv_data()
    a = cross_validate(_tiny_net, X, y, num_folds=5, epochs=15, lr=0.03, batch_size=16, device="cpu")
    assert seen == [[24, 24, 24]] * 5  # every training split keeps the 1:1:1 proportions
    b = cross_validate(_tiny_net, X, y, num_folds=5, epochs=15, lr=0.03, batch_size=16, device="cpu")
    assert isinstance(a, CVResult)
    assert a.scores == b.scores
    assert set(a.scores) == {"accuracy", "macro_f1", "loss"}
    assert all(len(v) == 5 for v in a.scores.values())
    assert a.mean() > 0.85  # separable blobs: every fold learns them
    assert a.mean() == pytest.approx(np.mean(a.scores["accuracy"]))
    assert a.std() == pytest.approx(np.std(a.scores["accuracy"], ddof=1))
    assert str(a).startswith(f"5-fold CV: accuracy {a.mean():.4f} ± {a.std():.4f}")


@pytest.mark.usefixtures("one_thread")
def test_cross_validate_matches_a_hand_written_loop():
    """Reference: scikit-learn's folds and a plain PyTorch loop, not dlkit's fit or metrics."""
    from sklearn.model_selection import StratifiedKFold

    from dlkit.data import make_loader

    X, y = _cv_data(60, seed=3)
    res = cross_validate(_tiny_net, X, y, num_folds=3, epochs=5, lr=0.02, batch_size=8, seed=4,
                         device="cpu")
    for fold, (tr, va) in enumerate(StratifiedKFold(3, shuffle=True, random_state=4).split(X, y)):
        tr, va = torch.from_numpy(tr), torch.from_numpy(va)
        torch.manual_seed(4 + fold)
        net = _tiny_net()
        opt = torch.optim.Adam(net.parameters(), lr=0.02)
        loader = make_loader(X[tr], y[tr], 8, shuffle=True, seed=4 + fold)
        for _ in range(5):  # the textbook loop, written out
            for xb, yb in loader:
                loss = torch.nn.functional.cross_entropy(net(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            pred = net(X[va]).argmax(dim=1)
        assert res.scores["accuracy"][fold] == pytest.approx(
            sklearn.metrics.accuracy_score(y[va], pred), abs=1e-12)
        f1 = sklearn.metrics.f1_score(y[va], pred, labels=[0, 1, 2], average="macro", zero_division=0)
        assert res.scores["macro_f1"][fold] == pytest.approx(f1, abs=1e-12)
        loss = torch.nn.functional.cross_entropy(net(X[va]), y[va]).item()
        assert res.scores["loss"][fold] == pytest.approx(loss, rel=1e-5)


@pytest.mark.usefixtures("one_thread")
def test_cross_validate_prepare_sees_only_the_training_folds():
    X, y = _cv_data(30)
    X = X + torch.arange(30).unsqueeze(1) * 1000.0  # each row's magnitude identifies it
    sizes = []

    def prepare(X_train, X_val):
        sizes.append((len(X_train), len(X_val)))
        rows = set((X_train[:, 1] / 1000).round().long().tolist())
        assert len(rows) == len(X_train)
        assert rows.isdisjoint(set((X_val[:, 1] / 1000).round().long().tolist()))
        mean, std = X_train.mean(0), X_train.std(0)
        return (X_train - mean) / std, (X_val - mean) / std

    cross_validate(_tiny_net, X, y, num_folds=3, epochs=1, device="cpu", prepare=prepare)
    assert sizes == [(20, 10)] * 3


def test_cross_validate_errors():
    X, y = _cv_data(30)
    with pytest.raises(ValueError, match=r"num_folds must be an integer in \[2, 10\]"):
        cross_validate(_tiny_net, X, y, num_folds=11, epochs=1)
    with pytest.raises(ValueError, match="num_folds"):
        cross_validate(_tiny_net, X, y, num_folds=1, epochs=1)
    with pytest.raises(ValueError, match="same length"):
        cross_validate(_tiny_net, X[:10], y, epochs=1)
    with pytest.raises(ValueError, match="optimizer"):
        cross_validate(_tiny_net, X, y, epochs=1, optimizer=torch.optim.SGD(_tiny_net().parameters(), lr=1))
    with pytest.raises(KeyError, match="no metric 'f1'"):
        CVResult({"accuracy": [0.5, 0.6]}).mean("f1")
