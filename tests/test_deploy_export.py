"""dlkit.deploy.export: ONNX export with a dynamic batch, ONNX Runtime parity, torch.export."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from dlkit.deploy import (
    ExportError,
    export_onnx,
    load_exported,
    onnx_parity,
    ort_session,
    run_onnx,
    save_exported,
)


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10),
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that folding them is tested
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


class Gate(nn.Module):
    """Python control flow on a tensor's value: torch.export cannot capture it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return x
        return -x


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    net = tiny_cnn()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(net, torch.randn(2, 3, 16, 16), path)
    return net, path


def test_onnx_matches_torch_at_several_batch_sizes(exported, one_thread):
    net, path = exported
    X = torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    report = onnx_parity(net, path, X, batch_sizes=(1, 5, 64))
    assert report.ok, str(report)
    assert report.max_abs_diff < 1e-4 and report.same_argmax == 1.0
    # An independent check of the same thing, straight through onnxruntime.
    with torch.no_grad():
        ref = net(X).numpy()
    np.testing.assert_allclose(run_onnx(ort_session(path, threads=1), X, batch_size=13), ref, atol=1e-4)


def test_batch_dimension_is_dynamic_and_names_are_set(exported):
    _, path = exported
    graph = onnx.load(str(path)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")
    assert [d.dim_value for d in dims[1:]] == [3, 16, 16]
    assert graph.input[0].name == "images" and graph.output[0].name == "logits"
    assert len(graph.initializer) > 0  # weights inside the file, not in a side file


def test_export_leaves_only_the_target_file_and_restores_training_mode(tmp_path):
    net = tiny_cnn().train()
    export_onnx(net, torch.randn(1, 3, 16, 16), tmp_path / "m.onnx")
    assert net.training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_parity_report_flags_a_different_model(exported):
    _, path = exported
    other = tiny_cnn()
    with torch.no_grad():
        other[-1].bias += 1.0
    report = onnx_parity(other, path, torch.randn(8, 3, 16, 16), batch_sizes=(8,))
    assert not report.ok and report.max_abs_diff == pytest.approx(1.0, abs=1e-3)


def test_export_failure_names_the_layer(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), Gate()), nn.Flatten())
    with pytest.raises(ExportError, match=r"layer '1\.1' \(Gate\)"):
        export_onnx(net, torch.randn(1, 3, 8, 8), tmp_path / "bad.onnx")
    assert not any(tmp_path.iterdir())


def test_bad_arguments_are_explained(tmp_path):
    with pytest.raises(ValueError, match="float"):
        export_onnx(tiny_cnn(), torch.zeros(1, 3, 16, 16, dtype=torch.uint8), tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="nn.Module"):
        export_onnx(lambda x: x, torch.zeros(1, 3, 16, 16), tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(tiny_cnn(), torch.zeros(1, 3, 16, 16), tmp_path / "missing" / "m.onnx")
    with pytest.raises(FileNotFoundError):
        ort_session(tmp_path / "nothing.onnx")


def test_torch_export_program_round_trip(tmp_path, one_thread):
    net = tiny_cnn()
    path = save_exported(net, torch.randn(2, 3, 16, 16), tmp_path / "tiny.pt2")
    loaded = load_exported(path)
    for b in (1, 9):
        x = torch.randn(b, 3, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), net(x), rtol=1e-5, atol=1e-5)


class Unmovable(nn.Sequential):
    """A model that must not be moved: any .cpu()/.to()/.cuda() on it fails the test."""

    def _apply(self, fn, recurse=True):
        raise AssertionError("onnx_parity moved the caller's model to another device")


def test_onnx_parity_does_not_move_the_callers_model(exported):
    net, path = exported
    spy = Unmovable(*tiny_cnn())
    report = onnx_parity(spy, path, torch.randn(8, 3, 16, 16), batch_sizes=(3, 8))
    assert report.ok, str(report)


def test_onnx_parity_restores_every_submodules_mode(exported):
    net, path = exported
    model = tiny_cnn().train()
    model[1].eval()  # BatchNorm frozen on purpose while the rest trains
    before = [m.training for m in model.modules()]
    onnx_parity(model, path, torch.randn(8, 3, 16, 16), batch_sizes=(8,))
    assert [m.training for m in model.modules()] == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_onnx_parity_leaves_a_cuda_model_on_cuda(exported):
    net, path = exported
    model = tiny_cnn().cuda()
    report = onnx_parity(model, path, torch.randn(8, 3, 16, 16), batch_sizes=(8,))
    assert report.max_abs_diff < 1e-3
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(b.device.type == "cuda" for b in model.buffers())
