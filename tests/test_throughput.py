"""Tests for dlkit.throughput: the baseline pipeline, budgets, profiler phases, memory counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from dlkit.data import ImageSet, make_loader, to_tensors
from dlkit.throughput import (
    PHASES,
    Budget,
    PILImageDataset,
    measure,
    per_image_transform,
    profile_steps,
    saved_activation_bytes,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 3))


def test_pil_pipeline_gives_the_same_tensors_as_the_batched_conversion():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(6) % 3
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    ds = PILImageDataset(images, labels, per_image_transform(mean, std))
    X_ref, y_ref = to_tensors(ImageSet(images, labels, ["a", "b", "c"], "random", "train"), mean, std)
    X, y = next(iter(DataLoader(ds, batch_size=6)))
    torch.testing.assert_close(X, X_ref, rtol=0, atol=1e-6)
    assert torch.equal(y, y_ref)
    with pytest.raises(ValueError, match="uint8"):
        PILImageDataset(images.float(), labels, per_image_transform(mean, std))
    with pytest.raises(ValueError, match="labels"):
        PILImageDataset(images, labels[:3], per_image_transform(mean, std))


def test_budget_counts_warmup_then_steps_and_cycles_a_short_loader():
    budget = Budget(range(3), steps=5, warmup=2)
    assert len(budget) == 2 and list(budget) == [0, 1]
    assert len(budget) == 5 and list(budget) == [0, 1, 2, 0, 1]
    assert list(Budget(range(3), steps=2, warmup=0)) == [0, 1]
    with pytest.raises(ValueError):
        Budget(range(3), steps=0)


def test_profile_steps_reports_every_phase():
    X, y = torch.randn(32, 3, 8, 8), torch.randint(0, 3, (32,))
    seconds, prof = profile_steps(_tiny_net(), make_loader(X, y, 8), steps=3, device="cpu")
    assert set(seconds) == set(PHASES)
    assert all(v > 0 for v in seconds.values())
    counts = {e.key: e.count for e in prof.key_averages() if e.key in PHASES}
    assert counts == {name: 3 for name in PHASES}


def test_measure_trains_the_timed_steps():
    batches = []

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _tiny_net()

        def forward(self, x):
            batches.append(x.shape[0])
            return self.net(x)

    built = []

    def make():
        built.append(Counting())
        return built[-1]

    X, y = torch.randn(64, 3, 8, 8), torch.randint(0, 3, (64,))
    start = [p.detach().clone() for p in _tiny_net().parameters()]
    result = measure(make, make_loader(X, y, 16), steps=3, warmup=1, device="cpu")
    assert len(built) == 1  # one model for the warm-up and the timed pass
    assert batches == [16] * 4  # 1 warm-up batch, then exactly the 3 timed ones
    # images/s is the timed examples over the timed seconds (which also hold the epoch's
    # bookkeeping, hence the tolerance).
    assert result["images_per_s"] == pytest.approx(3 * 16 / result["seconds"], rel=0.5)
    assert result["warmup_seconds"] > 0
    assert math.isnan(result["peak_memory_mb"])  # CUDA only
    trained = list(built[0].net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(trained, start))  # the weights moved


def test_saved_activation_bytes_matches_a_hand_count_and_halves_in_bf16():
    net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    X = torch.randn(7, 10)
    # Linear saves its input (7×10), ReLU its output (7×20), the second Linear its input, which
    # is the same 7×20 storage: (70 + 140) float32 values.
    assert saved_activation_bytes(net, X) == (70 + 140) * 4
    # bf16 autocast saves bf16 copies, 2 bytes a value, plus the second layer's bf16 weight
    # (needed for the gradient of its input; X needs none, so the first weight is not saved).
    bf16 = saved_activation_bytes(net, X, precision="bf16")
    assert bf16 == (70 + 140 + 20 * 5) * 2
