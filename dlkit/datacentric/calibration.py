"""Calibration: does a 90% confidence mean 90% correct? (chapter 15)

:func:`reliability_bins` groups predictions by confidence; :func:`expected_calibration_error`
(Naeini et al., 2015; Guo et al., 2017) is the bin-weighted gap between confidence and
accuracy; :func:`fit_temperature` fits the single temperature of Guo et al. on validation
logits, which changes confidences but never the predicted class.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Bins(NamedTuple):
    """Equal-width confidence bins: count, mean confidence and accuracy in each (``nan`` if empty)."""

    edges: torch.Tensor
    count: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor


def _check(probs: torch.Tensor, labels: torch.Tensor, bins: int) -> None:
    if probs.ndim != 2 or labels.shape != (len(probs),):
        raise ValueError(f"expected N x C probabilities and N labels, got {tuple(probs.shape)} "
                         f"and {tuple(labels.shape)}")
    if len(probs) == 0:
        raise ValueError("no predictions to calibrate")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> Bins:
    """Confidence (top probability) and accuracy in ``bins`` equal-width bins over ``[0, 1]``.

    A confidence equal to an inner edge falls in the bin below it (bins are ``(lo, hi]``, the
    first one ``[0, hi]``), the convention of Guo et al. (2017).
    """
    _check(probs, labels, bins)
    conf, pred = probs.float().max(1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    which = (torch.bucketize(conf, edges[1:-1], right=False)).clamp(0, bins - 1)
    count = torch.bincount(which, minlength=bins).float()
    conf_sum = torch.zeros(bins).index_add_(0, which, conf)
    acc_sum = torch.zeros(bins).index_add_(0, which, correct)
    safe = count.clamp_min(1)
    nan = torch.full((bins,), float("nan"))
    return Bins(edges, count.long(), torch.where(count > 0, conf_sum / safe, nan),
                torch.where(count > 0, acc_sum / safe, nan))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: ``sum_b (n_b / N) * |accuracy_b - confidence_b|`` over :func:`reliability_bins`."""
    b = reliability_bins(probs, labels, bins)
    full = b.count > 0
    gaps = (b.accuracy[full] - b.confidence[full]).abs()
    return float((b.count[full].float() / len(labels) * gaps).sum())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature ``T`` that minimises the NLL of ``softmax(logits / T)`` on these (validation) data.

    Searched over ``log T`` in ``[log 0.05, log 20]`` with scipy's bounded scalar minimiser;
    dividing by a positive ``T`` keeps every row's argmax, so accuracy cannot change.
    """
    from scipy.optimize import minimize_scalar

    if logits.ndim != 2 or labels.shape != (len(logits),) or len(logits) == 0:
        raise ValueError(f"expected N x C logits and N labels, got {tuple(logits.shape)} and {tuple(labels.shape)}")
    logits = logits.double()

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits / float(torch.exp(torch.tensor(log_t))), labels))

    res = minimize_scalar(nll, bounds=(float(torch.log(torch.tensor(0.05))), float(torch.log(torch.tensor(20.0)))),
                          method="bounded", options={"xatol": 1e-5})
    return float(torch.exp(torch.tensor(res.x)))
