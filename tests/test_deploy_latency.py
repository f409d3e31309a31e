"""dlkit.deploy.latency: the report's structure, thread handling and runners (no timed assertions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dlkit.deploy import (
    as_runner,
    export_onnx,
    latency_table,
    measure_latency,
    ort_session,
    torch_threads,
)


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


def test_measure_latency_reports_median_p95_and_threads(one_thread):
    before = torch.get_num_threads()
    lat = measure_latency(small(), torch.randn(5, 3, 8, 8), name="net", warmup=2, repeats=7, threads=1)
    assert (lat.name, lat.batch_size, lat.threads, lat.repeats) == ("net", 5, 1, 7)
    assert 0 < lat.median_ms <= lat.p95_ms
    assert lat.images_per_s == pytest.approx(5 / (lat.median_ms / 1e3))
    assert set(lat.as_dict()) >= {"median_ms", "p95_ms", "threads", "images_per_s"}
    assert torch.get_num_threads() == before


def test_latency_counts_every_call(one_thread):
    calls = []
    measure_latency(lambda x: calls.append(x.shape[0]), torch.zeros(3, 1), warmup=4, repeats=6)
    assert calls == [3] * 10


def test_runners_give_the_same_outputs_for_torch_and_onnxruntime(tmp_path, one_thread):
    net = small()
    x = torch.randn(2, 3, 8, 8)
    path = export_onnx(net, x, tmp_path / "m.onnx")
    out_torch = as_runner(net)(x)
    out_ort = as_runner(ort_session(path, threads=1))(x)
    np.testing.assert_allclose(out_ort, out_torch.numpy(), atol=1e-5)
    with pytest.raises(TypeError, match="callable"):
        as_runner(42)


def test_latency_table_interleaves_models_for_each_batch_size(one_thread):
    rows = latency_table({"a": small(), "b": small()}, torch.randn(3, 3, 8, 8), (1, 7), warmup=1, repeats=3)
    assert [(r.name, r.batch_size) for r in rows] == [("a", 1), ("b", 1), ("a", 7), ("b", 7)]


def test_threads_context_restores_and_checks():
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"), torch_threads(0):
        pass
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(small(), torch.zeros(1, 3, 8, 8), repeats=1)
