"""dlkit.deploy.quantize: int8 models stay accurate and shrink; bad arguments are explained."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dlkit.data import load
from dlkit.deploy import (
    export_onnx,
    file_size_mb,
    ort_session,
    quantize_dynamic_onnx,
    quantize_static_onnx,
    run_onnx,
    state_dict_size_mb,
)

# The bound the chapter states: int8 may cost at most this much test accuracy.
MAX_ACCURACY_DROP = 0.01


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small CNN trained to ~95% on scikit-learn's 8×8 digits, exported to ONNX."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train, test = load("digits", "train"), load("digits", "test")
    Xtr, ytr = train.images.float() / 255, train.labels
    Xte, yte = test.images.float() / 255, test.labels
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(15):
        for idx in torch.randperm(len(Xtr)).split(64):
            loss = nn.functional.cross_entropy(net(Xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    folder = tmp_path_factory.mktemp("quant")
    fp32 = export_onnx(net, Xte[:2], folder / "fp32.onnx")
    torch.set_num_threads(threads)
    return net, fp32, Xtr, Xte, yte.numpy(), folder


def accuracy(path, X, y) -> float:
    return float((run_onnx(ort_session(path, threads=1), X).argmax(1) == y).mean())


def test_static_int8_keeps_accuracy_and_is_about_four_times_smaller(trained):
    net, fp32, Xtr, Xte, yte, folder = trained
    int8 = quantize_static_onnx(fp32, folder / "static.onnx", Xtr[:256].split(64))
    acc32, acc8 = accuracy(fp32, Xte, yte), accuracy(int8, Xte, yte)
    assert acc32 > 0.9, "the reference model did not train"
    assert acc8 >= acc32 - MAX_ACCURACY_DROP, (acc32, acc8)
    assert file_size_mb(int8) < 0.35 * file_size_mb(fp32)
    # The float model file holds the same weights as the PyTorch state_dict.
    assert file_size_mb(fp32) == pytest.approx(state_dict_size_mb(net), rel=0.15)
    # Logits stay close to the float ones, not merely the argmax.
    diff = np.abs(run_onnx(ort_session(int8), Xte) - run_onnx(ort_session(fp32), Xte))
    assert np.median(diff) < 0.1


def test_dynamic_int8_keeps_accuracy(trained):
    _, fp32, _, Xte, yte, folder = trained
    for ops, name in ((None, "dyn_all.onnx"), (["MatMul", "Gemm"], "dyn_fc.onnx")):
        int8 = quantize_dynamic_onnx(fp32, folder / name, op_types=ops)
        assert accuracy(int8, Xte, yte) >= accuracy(fp32, Xte, yte) - MAX_ACCURACY_DROP
        assert file_size_mb(int8) < file_size_mb(fp32)


def test_quantization_arguments_are_checked(trained, tmp_path):
    _, fp32, _, _, _, _ = trained
    with pytest.raises(ValueError, match="no batches"):
        quantize_static_onnx(fp32, tmp_path / "q.onnx", [])
    with pytest.raises(ValueError, match="method"):
        quantize_static_onnx(fp32, tmp_path / "q.onnx", [torch.zeros(1, 1, 8, 8)], method="magic")
    with pytest.raises(ValueError, match="float32"):
        quantize_static_onnx(fp32, tmp_path / "q.onnx", [torch.zeros(1, 1, 8, 8, dtype=torch.float64)])
    with pytest.raises(ValueError, match="differ"):
        quantize_dynamic_onnx(fp32, fp32)
    with pytest.raises(FileNotFoundError):
        quantize_dynamic_onnx(tmp_path / "none.onnx", tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary files left behind
