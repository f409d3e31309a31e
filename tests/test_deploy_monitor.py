"""dlkit.deploy.monitor: PSI and image features against direct formulas; alerts fire on shifts only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlkit.data import load
from dlkit.deploy import FEATURES, DriftMonitor, class_psi, image_features, psi


def test_psi_matches_the_formula_on_hand_made_bins():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=10_000)
    cur = rng.normal(0.5, 1.2, size=4_000)
    edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
    p = np.histogram(ref, np.r_[-np.inf, edges, np.inf])[0] / ref.size
    q = np.histogram(cur, np.r_[-np.inf, edges, np.inf])[0] / cur.size
    assert psi(ref, cur) == pytest.approx(np.sum((q - p) * np.log(q / p)), rel=1e-9)
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert psi(ref, cur) > 0.1 > psi(ref, rng.normal(size=4_000))


def test_class_psi_is_zero_for_equal_frequencies_and_symmetric_kl():
    a = np.array([0, 1, 2, 3] * 25)
    assert class_psi(a, np.roll(a, 1), 4) == pytest.approx(0.0)
    b = np.array([0] * 70 + [1] * 10 + [2] * 10 + [3] * 10)
    p, q = np.full(4, 0.25), np.array([0.7, 0.1, 0.1, 0.1])
    assert class_psi(a, b, 4) == pytest.approx(np.sum((q - p) * np.log(q / p)))


def test_image_features_match_direct_computation():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 6, 7), dtype=torch.uint8, generator=g)
    f = image_features(images)
    x = images.double() / 255
    assert f.shape == (5, len(FEATURES))
    np.testing.assert_allclose(f[:, 0], x.mean(dim=(1, 2, 3)))
    np.testing.assert_allclose(f[:, 1], x.flatten(1).std(1))
    np.testing.assert_allclose(f[:, 2:5], x.mean(dim=(2, 3)))
    np.testing.assert_allclose(f[:, 5], (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3)))
    gray = image_features(images[:, :1])
    np.testing.assert_allclose(gray[:, 2], gray[:, 3])
    with pytest.raises(ValueError, match="N×C×H×W"):
        image_features(images[0])


@pytest.fixture(scope="module")
def data():
    ref = load("shapes", "train", num_samples=2000, seed=1)
    cur = load("shapes", "test", num_samples=800, seed=2)
    return ref, cur


def test_no_alert_on_data_from_the_same_distribution(data):
    ref, cur = data
    monitor = DriftMonitor(ref.images, ref.labels, 4)
    for start in (0, 400):
        window = slice(start, start + 400)
        report = monitor.check(cur.images[window], cur.labels[window])
        assert not report.drift, str(report)


def test_alerts_on_brightness_noise_and_a_new_class(data):
    ref, cur = data
    monitor = DriftMonitor(ref.images, ref.labels, 4)
    darker = (cur.images.float() * 0.6).to(torch.uint8)
    report = monitor.check(darker, cur.labels)
    assert report.drift and any(a.startswith("brightness shifted down") for a in report.alerts)
    g = torch.Generator().manual_seed(0)
    noisy = (cur.images.float() + 40 * torch.randn(cur.images.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    report = monitor.check(noisy, cur.labels)
    assert any(a.startswith("sharpness shifted up") for a in report.alerts)
    # Images of something unseen: the model piles them onto class 1.
    preds = cur.labels.clone()
    preds[: len(preds) // 2] = 1
    report = monitor.check(cur.images, preds)
    assert any(a.startswith("predicted classes shifted: class 1") for a in report.alerts), str(report)


def test_monitor_checks_its_inputs(data):
    ref, cur = data
    with pytest.raises(ValueError, match="predictions"):
        DriftMonitor(ref.images, ref.labels[:10], 4)
    with pytest.raises(ValueError, match="class indices"):
        DriftMonitor(ref.images, ref.labels + 4, 4)
    monitor = DriftMonitor(ref.images, ref.labels, 4)
    with pytest.raises(ValueError, match="at least 30"):
        monitor.check(cur.images[:10], cur.labels[:10])
