"""Detect when the images a deployed model receives stop looking like the ones it was checked on.

A served model fails silently: it returns confident probabilities for dark photos, noisy
uploads or objects it has never seen. Two cheap signals catch many such shifts without labels:
simple statistics of the input images (*input drift*) and the frequencies of the predicted
classes (*prediction drift*), each compared with a reference window (held-out data the model was
validated on) by a two-sample Kolmogorov–Smirnov test and the population stability index (PSI).
Used in chapter 09 (deployment).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats

__all__ = ["FEATURES", "DriftMonitor", "DriftReport", "class_psi", "image_features", "psi"]

FEATURES = ("brightness", "contrast", "red", "green", "blue", "sharpness")


def image_features(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Six statistics per image, in [0, 1] pixel units: the columns of :data:`FEATURES`.

    brightness (mean of all pixels), contrast (their standard deviation), the mean of each
    colour channel, and sharpness (mean absolute difference between horizontal neighbours,
    which noise raises and blur lowers). Used in chapter 09.

    Args:
        images: ``uint8`` N×C×H×W (C = 1 or 3), or float in [0, 1].

    Returns:
        A float64 array N×6.
    """
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be N×C×H×W with C = 1 or 3, got shape {tuple(x.shape)}")
    x = x.double() / 255.0 if x.dtype == torch.uint8 else x.double()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    flat = x.flatten(1)
    channel = x.mean(dim=(2, 3))
    sharp = (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))
    return torch.stack([flat.mean(1), flat.std(1), channel[:, 0], channel[:, 1], channel[:, 2], sharp], 1).numpy()


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``current`` against ``reference`` for one feature.

    ``PSI = Σ_i (q_i − p_i) · ln(q_i / p_i)`` over ``bins`` bins cut at the reference's
    quantiles, where ``p_i`` and ``q_i`` are the reference and current fractions in bin ``i``
    (floored at ``eps`` so that an empty bin does not give infinity). It is the symmetrised
    Kullback–Leibler divergence of the two histograms. Used in chapter 09.

    Args:
        reference: Values of the feature on the reference data (1-D).
        current: Values on the data to check (1-D).
        bins: Number of equal-frequency bins.
        eps: Smallest fraction used for a bin.

    Returns:
        The PSI, ≥ 0; a common rule of thumb reads < 0.1 as stable and > 0.25 as a major shift.
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cur = np.asarray(current, dtype=np.float64).ravel()
    if ref.size == 0 or cur.size == 0:
        raise ValueError("reference and current must both hold values")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / ref.size
    q = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / cur.size
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def class_psi(reference: np.ndarray, current: np.ndarray, num_classes: int, eps: float = 1e-4) -> float:
    """PSI between the predicted-class frequencies of two windows (one bin per class).

    Used in chapter 09.
    """
    p = np.bincount(np.asarray(reference, dtype=np.int64), minlength=num_classes)[:num_classes] / len(reference)
    q = np.bincount(np.asarray(current, dtype=np.int64), minlength=num_classes)[:num_classes] / len(current)
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """What :meth:`DriftMonitor.check` found: per-feature tests, the class test, and the alerts."""

    n: int
    ks_stat: dict[str, float]
    ks_p: dict[str, float]
    psi: dict[str, float]
    class_psi: float
    class_p: float
    alerts: tuple[str, ...]

    @property
    def drift(self) -> bool:
        """True when at least one alert was raised."""
        return bool(self.alerts)

    def __str__(self) -> str:
        lines = [f"{'feature':<11} {'KS stat':>8} {'p-value':>9} {'PSI':>7}"]
        for f in self.ks_stat:
            lines.append(f"{f:<11} {self.ks_stat[f]:8.3f} {self.ks_p[f]:9.2g} {self.psi[f]:7.3f}")
        lines.append(f"{'classes':<11} {'':>8} {self.class_p:9.2g} {self.class_psi:7.3f}")
        lines.append("ALERT: " + "; ".join(self.alerts) if self.alerts else "no drift detected")
        return "\n".join(lines)


class DriftMonitor:
    """Compare windows of served images and predictions with a reference window.

    An alert is raised for a feature when the KS test rejects "same distribution" at level
    ``alpha`` after a Bonferroni correction over the tests run, **and** the PSI exceeds
    ``psi_threshold``: with thousands of images the KS test alone flags differences too small to
    matter, and the PSI alone has no notion of sampling noise. Predicted classes are compared by
    a chi-square test on their counts plus the same PSI rule. Used in chapter 09.

    Args:
        reference_images: Images the model is known to work on (``uint8`` N×C×H×W).
        reference_preds: The model's predicted classes on them (N integers).
        num_classes: Number of classes of the model.
        alpha: Family-wise false-alarm level of one :meth:`check`.
        psi_threshold: Smallest PSI that counts as a shift worth an alert.
    """

    def __init__(self, reference_images: torch.Tensor | np.ndarray, reference_preds: Sequence[int] | np.ndarray,
                 num_classes: int, *, alpha: float = 0.01, psi_threshold: float = 0.1) -> None:
        self.reference = image_features(reference_images)
        self.reference_preds = np.asarray(reference_preds, dtype=np.int64).ravel()
        if len(self.reference_preds) != len(self.reference):
            raise ValueError(f"{len(self.reference)} reference images but {len(self.reference_preds)} predictions")
        if num_classes < 2 or self.reference_preds.min() < 0 or self.reference_preds.max() >= num_classes:
            raise ValueError(f"predictions must be class indices in [0, {num_classes})")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.num_classes = num_classes
        self.alpha = alpha
        self.psi_threshold = psi_threshold

    def check(self, images: torch.Tensor | np.ndarray, preds: Sequence[int] | np.ndarray) -> DriftReport:
        """Test one window of served images and the predictions made on them.

        Args:
            images: The window's images (``uint8`` N×C×H×W).
            preds: The predicted class of each.

        Returns:
            A :class:`DriftReport`; ``report.drift`` says whether to alert.
        """
        feats = image_features(images)
        preds = np.asarray(preds, dtype=np.int64).ravel()
        if len(preds) != len(feats):
            raise ValueError(f"{len(feats)} images but {len(preds)} predictions")
        if len(preds) < 30:
            raise ValueError(f"a window needs at least 30 images for the tests to mean anything, got {len(preds)}")
        level = self.alpha / (len(FEATURES) + 1)  # Bonferroni: the features plus the class test
        ks_stat, ks_p, psis, alerts = {}, {}, {}, []
        for j, name in enumerate(FEATURES):
            res = stats.ks_2samp(self.reference[:, j], feats[:, j])
            ks_stat[name], ks_p[name] = float(res.statistic), float(res.pvalue)
            psis[name] = psi(self.reference[:, j], feats[:, j])
            if ks_p[name] < level and psis[name] > self.psi_threshold:
                direction = "up" if np.median(feats[:, j]) > np.median(self.reference[:, j]) else "down"
                alerts.append(f"{name} shifted {direction} (KS p={ks_p[name]:.1g}, PSI={psis[name]:.2f})")
        ref_counts = np.bincount(self.reference_preds, minlength=self.num_classes)
        cur_counts = np.bincount(preds, minlength=self.num_classes)[: self.num_classes]
        table = np.stack([ref_counts, cur_counts])
        table = table[:, table.sum(0) > 0]
        class_p = float(stats.chi2_contingency(table).pvalue) if table.shape[1] > 1 else 1.0
        cpsi = class_psi(self.reference_preds, preds, self.num_classes)
        if class_p < level and cpsi > self.psi_threshold:
            share = cur_counts / len(preds) - ref_counts / len(self.reference_preds)
            k = int(np.argmax(np.abs(share)))
            alerts.append(f"predicted classes shifted: class {k} {share[k]:+.0%} (χ² p={class_p:.1g}, PSI={cpsi:.2f})")
        return DriftReport(len(preds), ks_stat, ks_p, psis, cpsi, class_p, tuple(alerts))
