"""Regression tests of dlkit.train bugs; each one failed before its fix.

They use only the public interface (``fit``, ``autocast_dtype``), so the same file runs
against the loop before and after it became a package.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.metrics
import torch
from torch import nn

from dlkit.data import make_loader
from dlkit.train import autocast_dtype, fit

pytestmark = pytest.mark.usefixtures("one_thread")


class _SignModel(nn.Module):
    """Predicts class 1 exactly when x[0] > 0; trained with lr=0 so it never changes."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x)


def test_tensorboard_confusion_matrix_pairs_predictions_with_their_labels(tmp_path, monkeypatch):
    """The confusion matrix came from two passes over a shuffling validation loader."""
    import dlkit.plot

    drawn = []
    real = dlkit.plot.plot_confusion_matrix

    def spy(cm, *args, **kwargs):
        drawn.append(torch.as_tensor(cm).clone())
        return real(cm, *args, **kwargs)

    monkeypatch.setattr(dlkit.plot, "plot_confusion_matrix", spy)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 2, generator=g)
    y = (X[:, 0] > 0).long()
    y[:8] = 1 - y[:8]  # 8 mistakes, so the matrix is not trivially diagonal
    val = make_loader(X, y, 8, shuffle=True, seed=1)  # a new order on every pass
    model = _SignModel()
    fit(model, make_loader(X, y, 16), val, epochs=1, device="cpu", progress=False,
        verbose=False, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        log_dir=tmp_path / "tb")
    # Independent reference: scikit-learn on the model's predictions for the unshuffled set.
    with torch.no_grad():
        pred = model(X).argmax(1)
    expected = sklearn.metrics.confusion_matrix(y.numpy(), pred.numpy(), labels=[0, 1])
    assert len(drawn) == 1
    np.testing.assert_array_equal(drawn[0].numpy(), expected)
    assert expected.trace() == 56  # 64 examples, the 8 flipped labels off the diagonal


def test_compile_failure_at_the_first_forward_pass_falls_back_to_eager(monkeypatch):
    """torch.compile fails when the first batch is traced, not when it wraps the model."""
    import torch._dynamo

    real_compile = torch.compile
    calls = []

    def broken_backend(graph_module, example_inputs):
        calls.append(len(example_inputs))
        raise RuntimeError("simulated code-generation failure")

    # The real torch.compile with a backend that fails: wrapping succeeds, the first call fails.
    monkeypatch.setattr(torch, "compile",
                        lambda model, **kw: real_compile(model, backend=broken_backend))
    torch._dynamo.reset()
    try:
        g = torch.Generator().manual_seed(0)
        X = torch.randn(48, 5, generator=g)
        y = torch.randint(0, 3, (48,), generator=g)
        torch.manual_seed(0)
        eager, compiled = nn.Linear(5, 3), nn.Linear(5, 3)
        compiled.load_state_dict(eager.state_dict())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h = fit(compiled, make_loader(X, y, 16), epochs=2, device="cpu", progress=False,
                    verbose=False, compile=True,
                    optimizer=torch.optim.SGD(compiled.parameters(), lr=0.1))
        fit(eager, make_loader(X, y, 16), epochs=2, device="cpu", progress=False, verbose=False,
            optimizer=torch.optim.SGD(eager.parameters(), lr=0.1))
    finally:
        torch._dynamo.reset()
    assert calls, "the failing backend was never reached: the test did not exercise compile"
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert sum("running eagerly" in m for m in messages) == 1, messages  # warned once
    assert len(h) == 2
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(a, b)  # trained eagerly, exactly as without compile


def _pretend_cuda(monkeypatch, bf16_native: bool):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: True)

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return bf16_native or including_emulation  # emulated everywhere, native only if asked

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)


def test_bf16_on_a_gpu_without_native_bf16_falls_back_to_fp16(monkeypatch):
    """A T4 'supports' bf16 only by emulation, slower than fp32: use fp16 there."""
    _pretend_cuda(monkeypatch, bf16_native=False)
    with pytest.warns(RuntimeWarning, match="fp16"):
        assert autocast_dtype("bf16", "cuda") is torch.float16


def test_bf16_on_a_gpu_with_native_bf16_stays_bf16(monkeypatch):
    _pretend_cuda(monkeypatch, bf16_native=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert autocast_dtype("bf16", "cuda") is torch.bfloat16
