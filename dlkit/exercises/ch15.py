"""Exercise checks of chapter 15 (data-centric deep learning)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["check_margin_sampling", "check_ece", "check_completeness"]


def _call(fn: Callable, *args: object, hint: str = "") -> tuple[object, Feedback | None]:
    try:
        return fn(*args), None
    except Exception as err:  # noqa: BLE001 (the learner's code may fail in any way)
        return None, _wrong(f"it raised {type(err).__name__}: {err}",
                            hint or "work on whole tensors with torch operations, row by row along dim=1.")


def _as_tensor(value: object) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (np.ndarray, list, tuple)):
        try:
            return torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


# --------------------------------------------------------------------------------------------- #
# Margin sampling
# --------------------------------------------------------------------------------------------- #
def _smallest(scores: torch.Tensor, k: int) -> set[int]:
    return set(torch.argsort(scores, stable=True)[:k].tolist())


def _margin_cases() -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(15)
    return [(torch.softmax(torch.randn(40, 5, generator=g, dtype=torch.float64) * 1.5, dim=1), 6),
            (torch.softmax(torch.randn(25, 3, generator=g, dtype=torch.float64) * 2.0, dim=1), 1),
            (torch.softmax(torch.randn(30, 10, generator=g, dtype=torch.float64), dim=1), 9)]


def check_margin_sampling(fn: Callable[[torch.Tensor, int], object]) -> Feedback:
    """Check ``fn(probs, k)``: the indices of the ``k`` pool items with the smallest margin.

    The margin of a row is its largest probability minus its second largest
    (:func:`dlkit.datacentric.margin_scores`); margin sampling labels the items whose two most
    likely classes are closest. The order of the returned indices does not matter. Used in
    chapter 15.

    Args:
        fn: The learner's function of an ``N x C`` probability tensor and a count ``k``.

    Returns:
        The :class:`Feedback`.
    """
    for probs, k in _margin_cases():
        n = len(probs)
        top2 = probs.topk(2, dim=1).values
        margin = top2[:, 0] - top2[:, 1]
        truth = _smallest(margin, k)
        before = probs.clone()
        got, error = _call(fn, probs, k)
        if error is not None:
            return error
        if not torch.equal(probs, before):
            return _wrong("it changed the probabilities it was given.",
                          "sort or modify a copy: the pool's probabilities are used again later.")
        if got is None:
            return _wrong("it returned None.", "end the function with a return statement that gives "
                                               f"the {k} positions.")
        t = _as_tensor(got)
        if t is None:
            return _wrong(f"it returned {type(got).__name__}, expected a tensor (or list) of {k} indices.")
        t = t.flatten()
        if t.dtype == torch.bool:
            return _wrong(f"it returned a mask of {t.numel()} booleans.",
                          f"return the positions of the {k} selected rows, not a yes/no per row.")
        if t.is_floating_point():
            if t.numel() == n and n != k:
                return _wrong(f"it returned {n} numbers, one score per pool item.",
                              f"the scores are only the first step: return the positions of the {k} "
                              "rows with the smallest scores.")
            values = sorted(margin[sorted(truth)].tolist())
            if t.numel() == k and np.allclose(sorted(t.double().tolist()), values, atol=1e-6):
                return _wrong(f"it returned the {k} smallest margins themselves.",
                              "return where they are (their row indices), not their values.")
            if t.numel() != k or not bool((t == t.round()).all()):
                return _wrong(f"it returned {t.numel()} non-integer numbers; expected {k} row indices.")
            t = t.long()
        if t.numel() != k:
            return _wrong(f"for k={k} it returned {t.numel()} indices.",
                          f"select exactly k rows out of the {n}.")
        picked = t.tolist()
        if any(i < 0 or i >= n for i in picked):
            return _wrong(f"it returned indices outside 0..{n - 1}: {picked}.",
                          "return row numbers of probs.")
        if len(set(picked)) != k:
            return _wrong(f"it returned a row more than once: {sorted(picked)}.",
                          "each item can be labelled only once: pick k different rows.")
        chosen = set(picked)
        if chosen == truth:
            continue
        if chosen == _smallest(-margin, k):
            return _wrong(f"for k={k} it picked the rows with the largest margins: the items the model "
                          "is surest about.",
                          "a small margin means the two best classes are nearly tied; sort the "
                          "margins in increasing order and keep the first k.")
        if chosen == _smallest(top2[:, 0], k):
            return _wrong(f"for k={k} it picked the rows with the lowest top-1 probability (least "
                          "confidence), not the smallest margin.",
                          "the margin compares the largest probability with the second largest: "
                          "a row like 0.5, 0.49, 0.01 has a tiny margin but a top-1 of 0.5.")
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1)
        if chosen == _smallest(-entropy, k):
            return _wrong(f"for k={k} it picked the rows with the highest entropy.",
                          "entropy looks at all the classes; the margin only at the two most "
                          "likely ones.")
        if chosen == _smallest(probs[:, 0] - probs[:, 1], k) or \
                chosen == _smallest((probs[:, 0] - probs[:, 1]).abs(), k):
            return _wrong(f"for k={k} it used the first two columns of each row.",
                          "the two classes that matter are the two largest probabilities of the "
                          "row, wherever they are: sort each row (or take its top two) first.")
        return _wrong(f"for k={k} it picked rows {sorted(chosen)}, expected {sorted(truth)}.",
                      "per row: largest probability minus second largest; then the k rows where "
                      "that difference is smallest.")
    return _right("it picks the rows whose two most likely classes are nearest, on three pools "
                  "(k = 1 included): the items whose label would settle the most.")


# --------------------------------------------------------------------------------------------- #
# Expected calibration error
# --------------------------------------------------------------------------------------------- #
def _bin_stats(probs: torch.Tensor, labels: torch.Tensor, bins: int, right_open: bool = False):
    """Per-bin counts, mean confidence and accuracy; ``right_open`` uses [lo, hi) bins instead."""
    conf, pred = probs.double().max(1)
    correct = (pred == labels).double()
    if right_open:
        which = (conf * bins).floor().long().clamp(0, bins - 1)
    else:
        which = (conf * bins).ceil().long().sub(1).clamp(0, bins - 1)
        # ceil of an exact product is the edge itself, which belongs to the bin below
    count = torch.bincount(which, minlength=bins).double()
    safe = count.clamp_min(1)
    conf_b = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, conf) / safe
    acc_b = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct) / safe
    return count, conf_b, acc_b, correct.mean()


def _ece_variants(probs: torch.Tensor, labels: torch.Tensor, bins: int) -> dict[str, float]:
    count, conf_b, acc_b, acc_all = _bin_stats(probs, labels, bins)
    full = count > 0
    w = count / count.sum()
    gap = (acc_b - conf_b).abs()
    signed = float((w * (acc_b - conf_b))[full].sum())
    oc, occ, oacc, _ = _bin_stats(probs, labels, bins, right_open=True)
    return {
        "unweighted": float(gap[full].mean()),
        "unweighted_all_bins": float(gap[full].sum() / bins),
        "global_accuracy": float((w * (acc_all - conf_b).abs())[full].sum()),
        "signed": signed,
        "signed_minus": -signed,
        "abs_outside": abs(signed),
        "right_open": float(((oc / oc.sum()) * (oacc - occ).abs())[oc > 0].sum()),
    }


def _miscalibrated(n: int, c: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Under-confident at low confidence, over-confident at high: the bins' gaps change sign."""
    low = 0.5
    conf = low + (1 - low) * torch.rand(n, generator=g, dtype=torch.float64)
    rest = torch.rand(n, c - 1, generator=g, dtype=torch.float64) + 0.5
    rest = rest / rest.sum(1, keepdim=True) * (1 - conf)[:, None]  # each below conf
    pred = torch.randint(0, c, (n,), generator=g)
    probs = torch.empty(n, c, dtype=torch.float64)
    others = (pred[:, None] + torch.arange(1, c)) % c
    probs[torch.arange(n), pred] = conf
    probs.scatter_(1, others, rest)
    accuracy = 0.7 + 0.25 * (conf - low) / (1 - low)  # equals conf at 0.833
    right = torch.rand(n, generator=g, dtype=torch.float64) < accuracy
    wrong = others[torch.arange(n), torch.randint(0, c - 1, (n,), generator=g)]
    return probs.float(), torch.where(right, pred, wrong)


def _ece_cases() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(151)
    cases = [(*_miscalibrated(600, 5, g), 10), (*_miscalibrated(300, 3, g), 5)]
    # Confidences on the edges of 4 bins, and a confidence of exactly 1.
    edges = torch.tensor([[1.0, 0.0, 0.0], [0.75, 0.25, 0.0], [0.5, 0.3, 0.2], [0.25, 0.75, 0.0],
                          [0.1, 0.4, 0.5], [0.6, 0.3, 0.1], [0.9, 0.05, 0.05], [0.0, 0.0, 1.0]])
    cases.append((edges, torch.tensor([0, 1, 0, 1, 2, 0, 1, 1]), 4))
    return cases


def _reference_ece(probs: torch.Tensor, labels: torch.Tensor, bins: int) -> float:
    from dlkit.datacentric import expected_calibration_error

    return expected_calibration_error(probs, labels, bins)


def check_ece(fn: Callable[[torch.Tensor, torch.Tensor, int], object]) -> Feedback:
    """Check ``fn(probs, labels, bins)``: the expected calibration error.

    ``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|`` over ``bins`` equal-width bins of the
    top probability, bins ``(lo, hi]`` with the first one ``[0, hi]``; compared with
    :func:`dlkit.datacentric.expected_calibration_error`. Used in chapter 15.

    Args:
        fn: The learner's function of ``N x C`` probabilities, ``N`` labels and a bin count.

    Returns:
        The :class:`Feedback`.
    """
    for case, (probs, labels, bins) in enumerate(_ece_cases()):
        on_edges = case == 2
        got, error = _call(fn, probs.clone(), labels.clone(), bins,
                           hint=("a confidence of exactly 1 belongs to the last bin, not to a bin "
                                 "after it." if on_edges else ""))
        if error is not None:
            return error
        if isinstance(got, (torch.Tensor, np.ndarray)) and np.asarray(got).size == 1:
            got = float(np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got).reshape(()))
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            return _wrong(f"it returned {type(got).__name__}, expected one number.",
                          "the ECE is a single weighted sum over the bins.")
        got = float(got)
        want = _reference_ece(probs, labels, bins)
        where = f"with {bins} bins" + (" and confidences on the bin edges" if on_edges else "")
        if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5):
            continue
        variants = _ece_variants(probs, labels, bins)

        def near(x: float, got: float = got) -> bool:
            return math.isclose(got, x, rel_tol=1e-4, abs_tol=1e-5)

        if not math.isfinite(got):
            return _wrong(f"{where} it returned {got}.",
                          "an empty bin has no accuracy or confidence: leave it out of the sum.")
        if near(100 * want):
            return _wrong(f"{where} it returned {got:.4f}, a percentage.", "return a fraction in [0, 1].")
        if near(variants["unweighted"]) or near(variants["unweighted_all_bins"]):
            return _wrong(f"{where} it returned {got:.4f}, the plain average of the bins' gaps; "
                          f"expected {want:.4f}.",
                          "weight each bin's gap by the share of predictions that fall in it, "
                          "n_b / N: a bin with 3 predictions should count less than one with 300.")
        if near(variants["global_accuracy"]):
            return _wrong(f"{where} it compares each bin's confidence with the accuracy over all "
                          f"predictions ({got:.4f}, expected {want:.4f}).",
                          "the accuracy of a bin is the fraction correct among the predictions "
                          "in that bin only.")
        if near(variants["signed"]) or near(variants["signed_minus"]) or near(variants["abs_outside"]):
            return _wrong(f"{where} it returned {got:.4f}: over- and under-confident bins cancel "
                          f"out (expected {want:.4f}).",
                          "take the absolute value of each bin's gap before adding the bins up.")
        if not on_edges and near(_reference_ece(probs, labels, 15)):
            return _wrong(f"it used 15 bins where {bins} were asked for.",
                          "build the bins from the bins argument.")
        if on_edges and near(variants["right_open"]):
            return _wrong(f"{where} it returned {got:.4f}, expected {want:.4f}: a confidence equal to "
                          "an edge went to the bin above it.",
                          "the bins are (lo, hi]: a confidence of exactly 0.5 with 4 bins belongs "
                          "to (0.25, 0.5], and 1.0 to the last bin.")
        return _wrong(f"{where} it returned {got:.4f}, expected {want:.4f}.",
                      "confidence = largest probability of a row, correct = its argmax equals the "
                      "label; per bin, |mean correct − mean confidence| weighted by n_b / N.")
    return _right("it matches dlkit's ECE on three cases, with 10, 5 and 4 bins, confidences on "
                  "the bin edges and a confidence of exactly 1 included.")


# --------------------------------------------------------------------------------------------- #
# Completeness of Integrated Gradients
# --------------------------------------------------------------------------------------------- #
def _completeness_model() -> nn.Module:
    g = torch.Generator().manual_seed(152)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.Tanh(), nn.Linear(8, 5))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def _midpoint_attributions(model: nn.Module, x: torch.Tensor, b: torch.Tensor,
                           target: torch.Tensor) -> torch.Tensor:
    """One-step Integrated Gradients (the gradient at the midpoint): complete only roughly."""
    mid = ((x + b) / 2).requires_grad_()
    out = model(mid)[torch.arange(len(x)), target].sum()
    (grad,) = torch.autograd.grad(out, mid)
    return ((x - b) * grad).detach()


def check_completeness(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(model, x, baseline, attributions, target)``: the completeness gap per image.

    The gap is ``sum(attributions) - (f(x) - f(baseline))`` for the ``target`` logit, one value
    per image (:func:`dlkit.datacentric.completeness_gap`); ``target`` is a class index or one
    index per image. Used in chapter 15.

    Args:
        fn: The learner's function.

    Returns:
        The :class:`Feedback`.
    """
    from dlkit.datacentric import completeness_gap

    model = _completeness_model()
    g = torch.Generator().manual_seed(153)
    x = torch.randn(4, 3, 4, 4, generator=g)
    baseline = torch.full_like(x, 0.5)
    for target in (torch.tensor([0, 3, 1, 4]), 2):
        rows = torch.arange(len(x))
        t = torch.as_tensor(target).expand(len(x))
        attributions = _midpoint_attributions(model, x, baseline, t)
        truth = completeness_gap(model, x, baseline, attributions, target).double()
        got, error = _call(fn, model, x.clone(), baseline.clone(), attributions.clone(), target)
        if error is not None:
            return error
        if got is None:
            return _wrong("it returned None.", "end the function with a return statement.")
        value = _as_tensor(got)
        if value is None and isinstance(got, numbers.Real) and not isinstance(got, bool):
            value = torch.tensor(float(got))
        if value is None:
            return _wrong(f"it returned {type(got).__name__}, expected a tensor of {len(x)} gaps.")
        value = value.double()
        which = "one target per image" if isinstance(target, torch.Tensor) else f"target={target}"
        if value.shape != truth.shape:
            if value.numel() == 1 and math.isclose(float(value.reshape(())), float(truth.sum()), abs_tol=1e-4):
                return _wrong("it returned one number for the whole batch.",
                              "sum the attributions of each image separately (over every "
                              "dimension but the first): one gap per image.")
            if value.shape == (len(x), len(x)):
                return _wrong(f"with {which} it returned a {len(x)}×{len(x)} table.",
                              "indexing the outputs with a whole column of targets gives every "
                              "image every target: pair row i with target i instead.")
            return _wrong(f"with {which} it returned shape {tuple(value.shape)}, expected ({len(x)},).",
                          "sum each image's attributions over every dimension except the first.")
        if torch.allclose(value, truth, atol=1e-4, rtol=1e-4):
            continue
        with torch.no_grad():
            fx, fb = model(x).double(), model(baseline).double()
            px, pb = fx.softmax(1), fb.softmax(1)
        total = attributions.flatten(1).sum(1).double()

        def near(other: torch.Tensor, value: torch.Tensor = value) -> bool:
            return bool(torch.allclose(value, other, atol=1e-4, rtol=1e-4))

        if near(-truth):
            return _wrong(f"with {which} it has the wrong sign.",
                          "the gap is what the attributions add up to minus the change of the "
                          "output, in that order: positive when they claim too much.")
        if near(truth.abs()):
            return _wrong(f"with {which} it returned the size of the gap without its sign.",
                          "keep the sign: it tells whether the attributions claim too much or too "
                          "little.")
        if near(total - fx[rows, t]) or near(fx[rows, t] - total):
            return _wrong(f"with {which} it leaves out the baseline's output.",
                          "completeness is about the change of the output between the baseline "
                          "and the input: subtract f(baseline) from f(x).")
        if near(total - (px[rows, t] - pb[rows, t])):
            return _wrong(f"with {which} it measures the change of a probability.",
                          "the attributions explain the target's logit, the raw output of the "
                          "model before the softmax.")
        top = fx.argmax(1)
        if near(total - (fx[rows, top] - fb[rows, top])) or near(total - (fx[:, 0] - fb[:, 0])) or \
                near(total - (fx.sum(1) - fb.sum(1))):
            return _wrong(f"with {which} it uses another output than the target's logit.",
                          "take, for each image, the output of its target class.")
        return _wrong(f"with {which} it returned {[round(v, 4) for v in value.tolist()]}, expected "
                      f"{[round(v, 4) for v in truth.tolist()]}.",
                      "per image: total attribution minus (target logit at x minus target logit "
                      "at the baseline).")
    return _right("it matches dlkit's completeness_gap for a per-image and a shared target. These "
                  "attributions (one gradient at the midpoint) are visibly incomplete; Integrated "
                  "Gradients with enough steps brings the gap near 0.")
