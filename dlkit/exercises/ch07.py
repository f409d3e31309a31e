"""Exercise checks of chapter 07 (training and evaluation)."""

from __future__ import annotations

import hashlib
import hmac
import math
import numbers
from collections.abc import Callable

import numpy as np
import torch

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["LEAKY_CV_LOOP", "check_macro_f1", "check_cv_leak", "check_fold_standardize"]

# The listing of the "spot the leakage" exercise; line numbers as printed by the chapter.
LEAKY_CV_LOOP = """\
1  X = torch.as_tensor(X, dtype=torch.float32)
2  mean, std = X.mean(dim=0), X.std(dim=0)
3  X = (X - mean) / std
4  scores = []
5  for train_idx, val_idx in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
6      model = make_model()
7      fit(model, make_loader(X[train_idx], y[train_idx], 64, shuffle=True), epochs=5)
8      scores.append(evaluate(model, make_loader(X[val_idx], y[val_idx], 256))["accuracy"])
9  print(np.mean(scores), np.std(scores))"""


def _cases() -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    cases = [
        # Class 2 never appears; class 1 is predicted but never true.
        (3, torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1])),
        (4, torch.tensor([0, 1, 2, 3, 3, 3]), torch.tensor([0, 0, 0, 3, 3, 2])),
    ]
    for k, n in ((5, 40), (10, 200), (3, 7)):
        y_true = torch.randint(0, k, (n,), generator=g)
        y_pred = torch.where(torch.rand(n, generator=g) < 0.6, y_true,
                             torch.randint(0, k, (n,), generator=g))
        cases.append((k, y_true, y_pred))
    return cases


def _per_class(y_true: torch.Tensor, y_pred: torch.Tensor, k: int) -> tuple[np.ndarray, ...]:
    cm = np.zeros((k, k))
    np.add.at(cm, (y_true.numpy(), y_pred.numpy()), 1)
    tp, pred, true = np.diag(cm), cm.sum(0), cm.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(pred > 0, tp / np.maximum(pred, 1), 0.0)
        r = np.where(true > 0, tp / np.maximum(true, 1), 0.0)
        f = np.where(pred + true > 0, 2 * tp / np.maximum(pred + true, 1), 0.0)
    return p, r, f, true, pred


def check_macro_f1(fn: Callable[[torch.Tensor, torch.Tensor, int], object]) -> Feedback:
    """Check ``fn(y_true, y_pred, num_classes)``, the macro-averaged F1 score.

    The reference is scikit-learn's ``f1_score(..., labels=range(num_classes),
    average="macro", zero_division=0)``; the cases include classes absent from the targets or
    the predictions. Used in chapter 07.

    Args:
        fn: The learner's function; it must return a float.

    Returns:
        The :class:`Feedback`.
    """
    from sklearn.metrics import f1_score

    for k, t, p in _cases():
        try:
            got = fn(t.clone(), p.clone(), k)
        except Exception as err:  # noqa: BLE001 (the learner's code may fail in any way: explain it)
            return _wrong(f"with {k} classes it raised {type(err).__name__}: {err}",
                          "count TP, FP and FN per class from the confusion matrix first.")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            return _wrong(f"it returned {type(got).__name__}, expected a float.")
        got = float(got)
        truth = f1_score(t.numpy(), p.numpy(), labels=list(range(k)), average="macro",
                         zero_division=0)
        if math.isclose(got, truth, rel_tol=1e-6, abs_tol=1e-9):  # float32 answers pass
            continue
        prec, rec, f1, true, pred = _per_class(t, p, k)
        present = (true + pred) > 0
        pm, rm = prec.mean(), rec.mean()
        if math.isnan(got):
            return _wrong(f"it returned nan with {k} classes.",
                          "a class that is never predicted has 0/0 precision: count it as 0.")
        if math.isclose(got, float((t == p).double().mean()), abs_tol=1e-9):
            return _wrong("that is the micro average (equal to accuracy here).",
                          "compute F1 for each class separately, then take the plain mean.")
        if pm + rm > 0 and math.isclose(got, 2 * pm * rm / (pm + rm), abs_tol=1e-9):
            return _wrong("it takes the harmonic mean of the averaged precision and recall.",
                          "macro-F1 is the mean of the per-class F1 scores.")
        if present.any() and math.isclose(got, f1[present].mean(), abs_tol=1e-9):
            return _wrong(f"with {k} classes it averages only over the classes that occur.",
                          "every class in range(num_classes) counts, an absent one with F1 = 0.")
        if math.isclose(got, float((f1 * true).sum() / true.sum()), abs_tol=1e-9):
            return _wrong("that is the support-weighted average.",
                          "macro gives every class the same weight: a plain mean.")
        return _wrong(f"with {k} classes it returned {got:.4f}, expected {truth:.4f}.",
                      "F1_k = 2·TP_k / (2·TP_k + FP_k + FN_k); then average over all classes.")
    return _right("it matches scikit-learn's macro-F1 on all cases, absent classes included.")


# The leaking line is not written here: the check compares a salted SHA-256 digest of the
# answer, so the installed source does not hand it over (only nine lines can be tried, though).
_CV_LEAK_SALT = "dlkit.exercises.ch07.cv_leak"
_CV_LEAK_DIGEST = "0476237aaefe0535be41ff16a6736318f15ebc95a69aef2295b513e3e82cf6c9"


def _cv_leak_digest(line: int) -> str:
    return hashlib.sha256(f"{_CV_LEAK_SALT}:{line}".encode()).hexdigest()


def check_cv_leak(answer: object) -> Feedback:
    """Check the line number of :data:`LEAKY_CV_LOOP` where information leaks across folds.

    Used in chapter 07. The right line is stored as a digest; a wrong line gets the question to
    ask of every line, not the answer.

    Args:
        answer: The learner's line number (an int).

    Returns:
        The :class:`Feedback`.
    """
    if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):
        return _wrong(f"expected a line number, got {answer!r}.")
    line = int(answer)
    if not 1 <= line <= 9:
        return _wrong(f"the listing has lines 1 to 9, got {line}.")
    if hmac.compare_digest(_cv_leak_digest(line), _CV_LEAK_DIGEST):
        return _right(f"line {line} computes the statistics over all examples, held-out folds "
                      "included, so every fold's model was prepared with statistics of its own "
                      "validation data. Compute them on the training indices inside the loop.")
    if line in (6, 7, 8):
        return _wrong(f"line {line} runs per fold and uses only that fold's own indices.",
                      "look at what happens before the loop, once for all folds.")
    return _wrong(f"line {line} does not let the held-out folds influence what the models learn.",
                  "a leak is a step whose result depends on the held-out examples and reaches the "
                  "training: for each line, ask which examples its result is computed from.")


def check_fold_standardize(
    fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
) -> Feedback:
    """Check ``fn(X_train, X_val) -> (X_train, X_val)`` standardising with training statistics.

    Each feature is shifted by the training fold's mean and divided by its standard deviation;
    the held-out fold is transformed with the same numbers. One feature of the test data is
    constant in the training fold (as the always-blank corner pixels of the digits are), so its
    standard deviation is 0: an answer must guard that division (a scale of 1 for such a
    feature, as scikit-learn's ``StandardScaler`` uses, a clamped std, or the feature dropped)
    and return finite values only. Used in chapter 07.

    Args:
        fn: The learner's function of two N×D float tensors.

    Returns:
        The :class:`Feedback`.
    """
    g = torch.Generator().manual_seed(3)
    scale = torch.tensor([1.0, 5.0, 0.2, 1.0], dtype=torch.float64)
    X_train = torch.randn(40, 4, generator=g, dtype=torch.float64) * scale + 3
    X_train[:, 3] = 0.0  # constant in the training fold: std 0
    X_val = torch.randn(10, 4, generator=g, dtype=torch.float64) * 2 - 4  # a different distribution
    varying = torch.tensor([True, True, True, False])
    try:
        out = fn(X_train.clone(), X_val.clone())
    except Exception as err:  # noqa: BLE001 (report any failure of the learner's code)
        return _wrong(f"it raised {type(err).__name__}: {err}")
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(o, torch.Tensor) for o in out)):
        return _wrong("expected a tuple (X_train, X_val) of tensors.")
    a, b = out
    dropped = a.shape == (40, 3) and b.shape == (10, 3)  # the constant feature removed
    if not dropped and (a.shape != X_train.shape or b.shape != X_val.shape):
        return _wrong(f"the shapes changed: got {tuple(a.shape)} and {tuple(b.shape)}.")
    if dropped:
        a, b = (torch.cat([t.double(), torch.zeros(len(t), 1, dtype=torch.float64)], dim=1)
                for t in (a, b))

    def close(x: torch.Tensor, y: torch.Tensor, cols: torch.Tensor = varying) -> bool:
        return torch.allclose(x.double()[:, cols], y[:, cols], atol=1e-5)

    def std(x: torch.Tensor, unbiased: bool) -> torch.Tensor:
        return x.std(dim=0, unbiased=unbiased)

    everything = torch.ones(4, dtype=torch.bool)
    both = torch.cat([X_train, X_val])
    for unbiased in (True, False):
        m, s = both.mean(0), std(both, unbiased)
        if close(a, (X_train - m) / s, everything):
            return _wrong("the statistics come from both folds together: the held-out fold leaks "
                          "into the preprocessing.",
                          "which examples may a preprocessing step learn from during cross-validation?")
    for unbiased in (True, False):
        if close(b, (X_val - X_val.mean(0)) / std(X_val, unbiased), everything):
            return _wrong("the held-out fold is standardised with its own statistics.",
                          "a model deployed later sees one example at a time and has no statistics "
                          "of its own: which numbers must the held-out fold be transformed with?")
    finite = bool(torch.isfinite(a).all() and torch.isfinite(b).all())
    for unbiased in (True, False):
        m, s = X_train.mean(0), std(X_train, unbiased)
        if close(a, (X_train - m) / s) and close(b, (X_val - m) / s):
            if not finite:
                return _wrong("feature 3 is constant in X_train, so its std is 0 and dividing by it "
                              "gives nan (0/0) in the training fold and ±inf in the held-out fold.",
                              "a constant feature needs no scaling: see what scikit-learn's "
                              "StandardScaler does with a zero variance.")
            if dropped or bool((a.double()[:, 3] == 0).all()):
                return _right("the held-out fold is scaled with the training fold's mean and std "
                              "only, and the constant feature is handled without dividing by 0.")
            return _wrong("feature 3 is constant in X_train; after centring it must be 0 in the "
                          "training fold.", "subtract the training mean from every feature.")
    if not finite:
        return _wrong("the result contains nan or inf.",
                      "a feature that is constant in X_train has std 0: guard that division.")
    if close(a, X_train - X_train.mean(0), everything):
        return _wrong("the features are centred but not scaled.", "each feature should end with unit spread.")
    return _wrong("the values differ from standardising each feature with training statistics.",
                  "one mean and one std per feature (column), not per example (row).")
