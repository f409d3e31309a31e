"""Tests of dlkit.train.callbacks: the events, and each callback on its own.

The keyword options of ``fit`` build these callbacks; here each is passed explicitly through
``callbacks=[...]`` and checked against a reference (a hand computation, the keyword path,
or torch's own function).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from dlkit.data import make_loader
from dlkit.train import (EVENTS, BatchTransform, Callback, ChannelsLast, Checkpoint, Compile,
                         EarlyStopping, GradientAccumulation, GradientClipping, MixedPrecision,
                         ProgressBar, TensorBoard, Throughput, fit)
from dlkit.train.precision import FirstCallCompiled, compile_supported

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n=48, d=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    return X, torch.randint(0, k, (n,), generator=g)


def _model(d=5, k=3):
    torch.manual_seed(0)
    return nn.Linear(d, k)


def _fit(model, loader, val=None, lr=0.1, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("verbose", False)
    return fit(model, loader, val, epochs=kwargs.pop("epochs", 2), device="cpu",
               optimizer=torch.optim.SGD(model.parameters(), lr=lr), **kwargs)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def __getattribute__(self, name):
        if name in EVENTS:
            return lambda loop: object.__getattribute__(self, "events").append(name)
        return object.__getattribute__(self, name)


# Make every event "implemented" at class level, so the loop dispatches them all.
for _event in EVENTS:
    setattr(Recorder, _event, lambda self, loop: None)


def test_events_fire_in_the_documented_order():
    X, y = _data(8)
    rec = Recorder()
    _fit(_model(), make_loader(X, y, 4), make_loader(X, y, 4), callbacks=[rec])
    batch = ["before_batch", "before_backward", "after_backward", "before_step", "after_step",
             "after_batch"]
    epoch = ["before_epoch", *batch, *batch, "before_validation", "after_validation", "after_epoch"]
    assert rec.events == ["before_fit", *epoch, *epoch, "after_fit"]


def test_only_implemented_events_are_dispatched_and_stop_ends_training():
    class StopAfterTwo(Callback):
        def after_epoch(self, loop):
            loop.stop = loop.epoch == 2

    X, y = _data(8)
    cb = StopAfterTwo()
    from dlkit.train.callbacks import implements

    assert implements(cb, "after_epoch") and not implements(cb, "before_batch")
    h = _fit(_model(), make_loader(X, y, 4), epochs=5, callbacks=[cb])
    assert h.epoch == [1, 2]
    with pytest.raises(TypeError, match="callbacks must implement at least one of"):
        _fit(_model(), make_loader(X, y, 4), callbacks=[object()])


def test_callbacks_run_in_order_of_their_order_attribute():
    calls = []

    def make(name, order):
        cb = type(name, (Callback,), {"order": order,
                                      "before_fit": lambda self, loop: calls.append(name)})
        return cb()

    X, y = _data(8)
    _fit(_model(), make_loader(X, y, 4), callbacks=[make("late", 5), make("early", -5),
                                                    make("middle", 0)])
    assert calls == ["early", "middle", "late"]


def test_batch_transform_changes_training_batches_only():
    seen_train, seen_val = [], []

    def double(X, y):
        seen_train.append(X.clone())
        return 2 * X, y

    class Spy(nn.Linear):
        def forward(self, x):
            (seen_val if not self.training else []).append(x.clone())
            return super().forward(x)

    X, y = _data(8)
    torch.manual_seed(0)
    model = Spy(5, 3)
    ref = copy.deepcopy(model)
    _fit(model, make_loader(X, y, 4), make_loader(X, y, 8), epochs=1,
         callbacks=[BatchTransform(double)])
    _fit(ref, make_loader(2 * X, y, 4), epochs=1)  # reference: data doubled beforehand
    assert len(seen_train) == 2
    torch.testing.assert_close(model.weight, ref.weight)
    torch.testing.assert_close(seen_val[0], X)  # validation batches untouched
    with pytest.raises(TypeError, match="callable"):
        BatchTransform("not a function")


def test_gradient_clipping_matches_torch_clip_grad_norm():
    X, y = _data(16)
    model, ref = _model(), _model()
    clip = GradientClipping(max_norm=0.05)
    h = _fit(model, make_loader(X, y, 16), epochs=1, lr=1.0, callbacks=[clip])
    opt = torch.optim.SGD(ref.parameters(), lr=1.0)  # the hand-written reference step
    loss = nn.functional.cross_entropy(ref(X), y)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.05)
    opt.step()
    assert norm > 0.05  # clipping was active
    torch.testing.assert_close(model.weight, ref.weight)
    assert clip.norms[0].item() == pytest.approx(norm.item())
    assert h.metrics["grad_norm"] == [pytest.approx(norm.item())]
    with pytest.raises(ValueError, match="max_norm must be positive"):
        GradientClipping(0)


@pytest.mark.parametrize("k", [2, 3])
def test_gradient_accumulation_callback_equals_the_keyword_and_the_large_batch(k):
    X, y = _data(24)
    a, b, big = _model(), _model(), _model()
    _fit(a, make_loader(X, y, 4), epochs=1, callbacks=[GradientAccumulation(k)])
    _fit(b, make_loader(X, y, 4), epochs=1, accumulation_steps=k)
    _fit(big, make_loader(X, y, 4 * k), epochs=1)
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)
    torch.testing.assert_close(a.weight, big.weight)
    with pytest.raises(ValueError, match="accumulation_steps must be a positive integer"):
        GradientAccumulation(0)


def test_mixed_precision_bf16_on_cpu_runs_autocast():
    dtypes = []

    class Probe(nn.Linear):
        def forward(self, x):
            out = super().forward(x)
            dtypes.append(out.dtype)
            return out

    X, y = _data(8)
    torch.manual_seed(0)
    mp = MixedPrecision("bf16")
    h = _fit(Probe(5, 3), make_loader(X, y, 8), epochs=1, callbacks=[mp])
    assert dtypes == [torch.bfloat16] and mp.dtype is torch.bfloat16 and not mp.use_scaler
    assert math.isfinite(h.train_loss[0])
    with pytest.raises(ValueError, match="precision must be one of"):
        MixedPrecision("half")


def test_mixed_precision_fp16_on_cuda_uses_a_grad_scaler(monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: True)
    mp = MixedPrecision("fp16")
    mp.setup(torch.device("cuda"))
    assert mp.dtype is torch.float16 and mp.use_scaler
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True:
                        including_emulation)  # a T4: bf16 only emulated
    mp = MixedPrecision("bf16")
    with pytest.warns(RuntimeWarning, match="fp16 with a gradient scaler"):
        mp.setup(torch.device("cuda"))
    assert mp.dtype is torch.float16 and mp.use_scaler
    mp = MixedPrecision("fp16")
    mp.setup(torch.device("cpu"))
    assert not mp.use_scaler  # the scaler is for CUDA's fp16 only


def test_channels_last_callback_formats_weights_and_inputs():
    layouts = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 36, 2)

        def forward(self, x):
            layouts.append(x.is_contiguous(memory_format=torch.channels_last))
            return self.fc(self.conv(x).flatten(1))

    torch.manual_seed(0)
    X, y = torch.randn(8, 3, 8, 8), torch.randint(0, 2, (8,))
    model = Probe()
    _fit(model, make_loader(X, y, 8), epochs=1, callbacks=[ChannelsLast()])
    assert layouts == [True]
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_callback_compiles_and_trains_like_eager():
    import torch._dynamo

    X, y = _data(32)
    eager, compiled = _model(), _model()
    cb = Compile()
    torch._dynamo.reset()
    try:
        _fit(compiled, make_loader(X, y, 16), epochs=1, callbacks=[cb],
             )
    except Exception as error:  # pragma: no cover - depends on a C++ toolchain
        pytest.skip(f"torch.compile cannot run here: {error}")
    finally:
        torch._dynamo.reset()
    _fit(eager, make_loader(X, y, 16), epochs=1)
    assert isinstance(cb.compiled, FirstCallCompiled)
    if cb.compiled.fallback_reason is None:  # compiled for real: same numbers, up to rounding
        torch.testing.assert_close(eager.weight, compiled.weight, rtol=1e-5, atol=1e-6)


def test_compile_is_skipped_on_gpus_older_than_compute_capability_7(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 1))
    assert not compile_supported(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert compile_supported(torch.device("cuda"))
    assert compile_supported(torch.device("cpu"))

    class FakeLoop:
        device = torch.device("cuda")
        model = nn.Linear(2, 2)
        forward = model

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 0))
    loop = FakeLoop()
    with pytest.warns(RuntimeWarning, match="compute capability 7.0"):
        Compile().before_fit(loop)
    assert loop.forward is FakeLoop.model  # eager


def test_first_call_compiled_falls_back_once_and_reraises_real_model_errors():
    calls = []

    def compiler(model):
        def run(x):
            calls.append("compiled")
            raise RuntimeError("codegen failed")
        return run

    model = nn.Linear(2, 2)
    wrapped = FirstCallCompiled(model, compiler)
    x = torch.randn(3, 2)
    with pytest.warns(RuntimeWarning, match="running eagerly"):
        torch.testing.assert_close(wrapped(x), model(x))
    wrapped(x)
    assert calls == ["compiled"]  # the compiled version is tried once only
    broken = FirstCallCompiled(model, compiler)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="mat1 and mat2"):
        broken(torch.randn(3, 5))  # the eager model's own error is not hidden


def test_throughput_leaves_out_the_warmup_batches(monkeypatch):
    import dlkit.train.callbacks as cbs

    clock = iter(range(1000))
    monkeypatch.setattr(cbs.time, "perf_counter", lambda: float(next(clock)))
    X, y = _data(40)
    tp = Throughput(warmup=2)
    h = _fit(_model(), make_loader(X, y, 8), epochs=1, callbacks=[tp])
    # 5 batches: the clock starts after batch 2 (t=0) and reads t=1, 2, 3 after batches 3-5;
    # 3 batches of 8 examples in 3 ticks.
    assert tp.rates == [pytest.approx(24 / 3)]
    assert h.metrics["steady_images_per_s"] == tp.rates
    with pytest.raises(ValueError, match="warmup"):
        Throughput(-1)


def test_progress_bar_counts_every_batch_and_prints_a_summary(capsys):
    X, y = _data(24)
    bar = ProgressBar(bar=True, summary=True)
    _fit(_model(), make_loader(X, y, 8), make_loader(X, y, 8), epochs=2, callbacks=[bar])
    assert bar.bar.n == 6 and bar.bar.total == 6
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and "val loss" in lines[0]
    assert "epoch 2/2" in out.err  # the bar itself goes to stderr


def test_early_stopping_callback_in_the_list_works_like_the_keyword(monkeypatch):
    import dlkit.train.loop

    losses = iter([1.0, 0.5, 0.7, 0.8, 0.9])
    monkeypatch.setattr(dlkit.train.loop, "evaluate",
                        lambda *a, **k: {"loss": next(losses), "accuracy": 0.5})
    X, y = _data(8)
    stopper = EarlyStopping(patience=2)
    h = _fit(_model(), make_loader(X, y, 4), make_loader(X, y, 4), epochs=5,
             callbacks=[stopper])
    assert h.epoch == [1, 2, 3, 4] and stopper.best_epoch == 2 and stopper.stopped_epoch == 4


def test_checkpoint_callback_resumes_bit_identically(tmp_path):
    X, y = _data(32)
    whole = _model()
    _fit(whole, make_loader(X, y, 8, shuffle=True, seed=0), epochs=4)
    first = _model()
    _fit(first, make_loader(X, y, 8, shuffle=True, seed=0), epochs=2,
         callbacks=[Checkpoint(tmp_path / "c.pt")])
    resumed = _model()
    h = _fit(resumed, make_loader(X, y, 8, shuffle=True, seed=0), epochs=4,
             callbacks=[Checkpoint(tmp_path / "c.pt", resume=True)])
    assert h.epoch == [1, 2, 3, 4]
    assert torch.equal(resumed.weight, whole.weight) and torch.equal(resumed.bias, whole.bias)
    with pytest.raises(ValueError, match="resume=True continues from the checkpoint file"):
        Checkpoint(None, resume=True)


def test_tensorboard_callback_writes_scalars_per_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    X, y = _data(16)
    h = _fit(_model(), make_loader(X, y, 8), make_loader(X, y, 8), epochs=2,
             callbacks=[TensorBoard(tmp_path / "tb", class_names=["a", "b", "c"])])
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("loss/val")] == pytest.approx(h.val_loss, rel=1e-6)
    assert acc.Tags()["images"] == ["confusion_matrix"]
    with pytest.raises(TypeError, match="must be a number, string or bool"):
        TensorBoard(tmp_path, hparams={"x": [1]})
