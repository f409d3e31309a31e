"""Tests for dlkit.train: fit, evaluate, predict and History."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch
from torch import nn

from dlkit.data import load, make_loader, to_tensors
from dlkit.env import seed_everything
from dlkit.train import History, Prediction, autocast_dtype, evaluate, fit, predict

CPU = "cpu"

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def _blobs(n_per_class: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two well separated Gaussian blobs in 2-D, labels 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n_per_class, 2, generator=g) + torch.tensor([2.5, 2.5])
    b = torch.randn(n_per_class, 2, generator=g) - torch.tensor([2.5, 2.5])
    X = torch.cat([a, b])
    y = torch.cat([torch.zeros(n_per_class), torch.ones(n_per_class)]).long()
    return X, y


def _linear(seed: int = 0, k: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(2, k)


class _WrongView(nn.Module):
    """Flattens with x.view(-1, n) and the wrong n, so the batch dimension doubles."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.view(-1, 1))


class _NoLen:
    """A re-iterable loader without __len__."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        return iter(self.loader)


def _quiet_fit(*args, **kwargs) -> History:
    kwargs.setdefault("device", CPU)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("verbose", False)
    return fit(*args, **kwargs)


# --------------------------------------------------------------------------- #
# fit
# --------------------------------------------------------------------------- #
def test_fit_learns_blobs():
    X, y = _blobs()
    model = _linear()
    before = evaluate(model, make_loader(X, y, 50), device=CPU)
    h = _quiet_fit(model, make_loader(X, y, 32, shuffle=True, seed=0), epochs=5, lr=0.05)
    after = evaluate(model, make_loader(X, y, 50), device=CPU)
    assert h.train_loss[-1] < h.train_loss[0]
    assert after["loss"] < before["loss"]
    assert h.train_acc[-1] >= 0.97
    assert after["accuracy"] >= 0.97


def test_fit_learns_shapes_with_a_small_cnn():
    torch.manual_seed(0)
    tr = load("shapes", num_samples=600, image_size=16)
    te = load("shapes", "test", num_samples=200, image_size=16)
    X, y = to_tensors(tr, [0.5] * 3, [0.3] * 3)
    Xt, yt = to_tensors(te, [0.5] * 3, [0.3] * 3)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
        nn.Flatten(), nn.Linear(16, 4),
    )
    h = _quiet_fit(model, make_loader(X, y, 32, shuffle=True, seed=0), make_loader(Xt, yt, 100),
                   epochs=8, lr=3e-3)
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert h.val_acc[-1] >= 0.85
    assert h.best_epoch("val_acc") >= 4


def test_history_columns_and_val_nan_without_val_loader():
    X, y = _blobs(20)
    h = _quiet_fit(_linear(), make_loader(X, y, 16), epochs=3)
    assert isinstance(h, History)
    assert len(h) == 3
    assert h.epoch == [1, 2, 3]
    for name, column in h.as_dict().items():
        assert len(column) == 3, name
    assert all(math.isnan(v) for v in h.val_loss + h.val_acc)
    assert all(0.0 <= a <= 1.0 for a in h.train_acc)
    assert all(t > 0 for t in h.time)
    assert all(r > 0 for r in h.images_per_s)
    assert h.lr == pytest.approx([1e-3] * 3)
    assert set(h.as_dict()) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                                "time", "images_per_s"}


def test_history_with_val_loader_matches_evaluate():
    X, y = _blobs(30)
    Xv, yv = _blobs(10, seed=1)
    model = _linear()
    h = _quiet_fit(model, make_loader(X, y, 16), make_loader(Xv, yv, 7), epochs=2, lr=0.05)
    assert not any(math.isnan(v) for v in h.val_loss + h.val_acc)
    last = evaluate(model, make_loader(Xv, yv, 7), device=CPU)
    assert h.val_loss[-1] == pytest.approx(last["loss"])
    assert h.val_acc[-1] == pytest.approx(last["accuracy"])


def test_history_best_epoch():
    h = History(epoch=[1, 2, 3], train_loss=[0.9, 0.5, 0.6], train_acc=[0.5, 0.9, 0.8],
                val_loss=[1.0, 0.8, 0.7], val_acc=[0.4, 0.7, 0.6], lr=[1e-3] * 3,
                time=[1.0] * 3, images_per_s=[10.0] * 3)
    assert h.best_epoch() == 3
    assert h.best_epoch("val_acc") == 2
    assert h.best_epoch("train_loss") == 2
    assert h.best_epoch("train_acc") == 2


def test_history_best_epoch_errors():
    h = History(epoch=[1, 2], train_loss=[0.9, 0.5], train_acc=[0.5, 0.9],
                val_loss=[math.nan, math.nan], val_acc=[math.nan, math.nan], lr=[1e-3] * 2,
                time=[1.0] * 2, images_per_s=[10.0] * 2)
    with pytest.raises(ValueError, match="no recorded values.*val_loader"):
        h.best_epoch("val_loss")
    with pytest.raises(ValueError, match="recorded loss or accuracy column, got 'time'"):
        h.best_epoch("time")
    with pytest.raises(ValueError, match="recorded loss or accuracy column"):
        History().best_epoch()


def test_history_str():
    X, y = _blobs(20)
    h = _quiet_fit(_linear(), make_loader(X, y, 16), epochs=2)
    lines = str(h).splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
    assert len(lines) == 3
    assert lines[1].split()[0] == "1" and lines[2].split()[0] == "2"
    assert f"{h.train_loss[1]:.4f}" in lines[2]
    assert f"{h.train_acc[1]:.2%}" in lines[2]
    assert "nan" in lines[1]
    assert str(History()).splitlines() == [lines[0]]


def test_fit_with_user_optimizer_and_per_step_scheduler():
    X, y = _blobs(25)  # 50 examples
    loader = make_loader(X, y, 16)  # 4 batches, the last of 2
    model = _linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
    epochs = 3
    h = _quiet_fit(model, loader, epochs=epochs, optimizer=opt, scheduler=sched, lr=123.0)
    steps = len(loader)
    assert steps == 4
    assert sched.last_epoch == epochs * steps
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.9 ** (epochs * steps))
    assert h.lr == pytest.approx([0.1 * 0.9 ** (e * steps) for e in range(1, epochs + 1)])


def test_fit_uses_the_given_optimizer():
    X, y = _blobs(10)
    model = _linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: nothing may change
    before = [p.detach().clone() for p in model.parameters()]
    h = _quiet_fit(model, make_loader(X, y, 8), epochs=2, optimizer=opt, lr=1.0)
    for b, p in zip(before, model.parameters()):
        assert torch.equal(b, p)
    assert h.train_loss[0] == pytest.approx(h.train_loss[1])


def test_fit_quiet_prints_nothing(capsys):
    X, y = _blobs(10)
    _quiet_fit(_linear(), make_loader(X, y, 8), epochs=2)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_fit_verbose_prints_one_line_per_epoch(capsys):
    X, y = _blobs(10)
    Xv, yv = _blobs(5, seed=1)
    h = _quiet_fit(_linear(), make_loader(X, y, 8), make_loader(Xv, yv, 4), epochs=3, verbose=True)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 3
    for e, line in enumerate(lines, 1):
        assert line.startswith(f"epoch {e}/3  train loss {h.train_loss[e - 1]:.4f}")
        assert "val loss" in line


def test_fit_verbose_without_val_has_no_val_text(capsys):
    X, y = _blobs(10)
    _quiet_fit(_linear(), make_loader(X, y, 8), epochs=2, verbose=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 2
    assert not any("val" in line for line in lines)


def test_fit_progress_bar_writes_to_stderr(capsys):
    X, y = _blobs(10)
    _quiet_fit(_linear(), make_loader(X, y, 8), epochs=1, progress=True)
    assert "epoch 1/1" in capsys.readouterr().err


def test_fit_wrong_view_mentions_flatten():
    X, y = _blobs(10)
    with pytest.raises(ValueError, match=r"shape \(16, 2\) for a batch of 8.*flatten"):
        _quiet_fit(_WrongView(), make_loader(X, y, 8), epochs=1)


def test_evaluate_wrong_view_mentions_flatten():
    X, y = _blobs(10)
    with pytest.raises(ValueError, match="flatten"):
        evaluate(_WrongView(), make_loader(X, y, 8), device=CPU)


def test_fit_one_dimensional_output_raises():
    X, y = _blobs(10)

    class OneD(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x):
            return self.fc(x).squeeze(1)

    with pytest.raises(ValueError, match=r"expected \(8, num_classes\)"):
        _quiet_fit(OneD(), make_loader(X, y, 8), epochs=1)


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True, "2"])
def test_fit_bad_epochs(epochs):
    X, y = _blobs(5)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        _quiet_fit(_linear(), make_loader(X, y, 4), epochs=epochs)


def test_fit_empty_loader():
    with pytest.raises(ValueError, match="train_loader is empty"):
        _quiet_fit(_linear(), [], epochs=1)
    empty = make_loader(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="train_loader is empty"):
        _quiet_fit(_linear(), empty, epochs=1)


def test_fit_empty_loader_without_len():
    with pytest.raises(ValueError, match="yielded no examples"):
        _quiet_fit(_linear(), _NoLen([]), epochs=1)


def test_fit_loader_without_len_works():
    X, y = _blobs(20)
    h = _quiet_fit(_linear(), _NoLen(make_loader(X, y, 16)), epochs=2, lr=0.05)
    assert len(h) == 2
    assert h.train_loss[1] < h.train_loss[0]


def test_fit_needs_targets():
    X, _ = _blobs(5)
    with pytest.raises(TypeError, match=r"fit needs \(X, y\) batches"):
        _quiet_fit(_linear(), [X], epochs=1)
    with pytest.raises(TypeError, match=r"expected each batch to be a tensor X or a pair \(X, y\).*dict"):
        _quiet_fit(_linear(), [{"x": X}], epochs=1)


def test_fit_nan_loss_raises():
    X, y = _blobs(5)

    def nan_loss(out, target):
        return out.sum() * float("nan")

    with pytest.raises(FloatingPointError, match="nan in epoch 1.*lower the learning rate"):
        _quiet_fit(_linear(), make_loader(X, y, 4), epochs=2, loss_fn=nan_loss)


def test_fit_soft_labels():
    X, y = _blobs(40)
    soft = torch.nn.functional.one_hot(y, 2).float() * 0.9 + 0.05  # label smoothing by hand
    Xv, yv = _blobs(10, seed=1)
    soft_v = torch.nn.functional.one_hot(yv, 2).float() * 0.8 + 0.1
    model = _linear()
    h = _quiet_fit(model, make_loader(X, soft, 16), make_loader(Xv, soft_v, 8), epochs=4, lr=0.05)
    assert h.train_acc[-1] >= 0.95
    assert h.val_acc[-1] >= 0.95
    with torch.no_grad():
        hard = (model(Xv).argmax(1) == yv).double().mean().item()
    assert h.val_acc[-1] == pytest.approx(hard)


def test_fit_is_deterministic_with_a_seed():
    X, y = _blobs(30)

    def run():
        seed_everything(7)
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
        return _quiet_fit(model, make_loader(X, y, 16, shuffle=True, seed=7), epochs=3)

    a, b = run(), run()
    assert a.train_loss == b.train_loss
    assert a.train_acc == b.train_acc


def test_fit_leaves_model_on_device_in_train_mode():
    X, y = _blobs(5)
    model = _linear()
    model.eval()
    _quiet_fit(model, make_loader(X, y, 4), epochs=1)
    assert model.training
    assert next(model.parameters()).device.type == "cpu"


# --------------------------------------------------------------------------- #
# evaluate
# --------------------------------------------------------------------------- #
def test_evaluate_matches_hand_computation_with_short_last_batch():
    X, y = _blobs(5)  # 10 examples
    g = torch.Generator().manual_seed(3)
    X = torch.randn(10, 2, generator=g)  # random data, so accuracy is neither 0 nor 1
    y = torch.randint(0, 3, (10,), generator=g)
    model = _linear(k=3)
    loader = make_loader(X, y, 4)  # batches of 4, 4, 2
    assert [len(b[1]) for b in loader] == [4, 4, 2]
    res = evaluate(model, loader, device=CPU)
    with torch.no_grad():
        out = model(X)
        full = nn.CrossEntropyLoss()(out, y).item()
        batch_means = [nn.CrossEntropyLoss()(out[i:i + 4], y[i:i + 4]).item() for i in (0, 4, 8)]
        hand_acc = (out.argmax(1) == y).sum().item() / 10
    unweighted = sum(batch_means) / 3
    assert abs(unweighted - full) > 1e-4  # the test can tell weighting from no weighting
    assert res["loss"] == pytest.approx(full, rel=1e-6)
    assert res["accuracy"] == hand_acc
    assert set(res) == {"loss", "accuracy"}


def test_evaluate_custom_loss():
    X, y = _blobs(6)
    model = _linear()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2)
    res = evaluate(model, make_loader(X, y, 5), loss_fn=loss_fn, device=CPU)
    with torch.no_grad():
        assert res["loss"] == pytest.approx(loss_fn(model(X), y).item(), rel=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_restores_mode(training):
    X, y = _blobs(5)
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            seen.append(self.training)
            return self.fc(x)

    model = Spy().train(training)
    evaluate(model, make_loader(X, y, 4), device=CPU)
    assert seen and not any(seen)  # evaluated in eval mode
    assert model.training is training


def test_evaluate_restores_mode_after_an_error():
    X, y = _blobs(5)
    model = _WrongView().train()
    with pytest.raises(ValueError):
        evaluate(model, make_loader(X, y, 4), device=CPU)
    assert model.training


def test_evaluate_errors():
    X, y = _blobs(5)
    with pytest.raises(ValueError, match="yielded no examples"):
        evaluate(_linear(), [], device=CPU)
    with pytest.raises(TypeError, match=r"evaluate needs \(X, y\) batches.*predict"):
        evaluate(_linear(), [X], device=CPU)


def test_evaluate_does_not_track_gradients():
    X, y = _blobs(5)
    model = _linear()
    evaluate(model, make_loader(X, y, 4), device=CPU)
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- #
# predict
# --------------------------------------------------------------------------- #
def test_predict_tensor_and_loader_agree():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(23, 2, generator=g)
    y = torch.randint(0, 3, (23,), generator=g)
    model = _linear(k=3)
    a = predict(model, X, device=CPU, batch_size=5)
    b = predict(model, make_loader(X, y, 5), device=CPU)
    c = predict(model, [X[:10], X[10:]], device=CPU)  # loader of X alone
    assert isinstance(a, Prediction)
    assert a.labels.dtype == torch.int64 and a.labels.shape == (23,)
    assert a.probs.dtype == torch.float32 and a.probs.shape == (23, 3)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.probs, b.probs)
    assert torch.equal(a.labels, c.labels)
    torch.testing.assert_close(a.probs, c.probs)
    torch.testing.assert_close(a.probs.sum(1), torch.ones(23))
    with torch.no_grad():
        out = model(X)
    assert torch.equal(a.labels, out.argmax(1))
    torch.testing.assert_close(a.probs, out.softmax(1))


def test_predict_restores_mode():
    model = _linear().train()
    predict(model, torch.randn(4, 2), device=CPU)
    assert model.training
    model.eval()
    predict(model, torch.randn(4, 2), device=CPU)
    assert not model.training


def test_predict_errors():
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        predict(_linear(), torch.randn(4, 2), device=CPU, batch_size=0)
    with pytest.raises(ValueError, match="no inputs to predict"):
        predict(_linear(), [], device=CPU)
    with pytest.raises(ValueError, match=r"expected the model to return \(4, num_classes\) logits"):
        predict(_WrongView(), torch.randn(4, 2), device=CPU)


# --------------------------------------------------------------------------- #
# Options for efficient training (chapter 08) and batch transforms (chapter 03)
# --------------------------------------------------------------------------- #
def _linear_problem(n: int = 48, d: int = 5, k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    torch.manual_seed(seed)
    model = nn.Linear(d, k).double()
    return X, y, model


def _batches(X, y, size):
    return [(X[i:i + size], y[i:i + size]) for i in range(0, len(X), size)]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_gradient_accumulation_equals_the_large_batch(k):
    X, y, small = _linear_problem()
    big = copy.deepcopy(small)
    fit(small, _batches(X, y, 4), epochs=2, optimizer=torch.optim.SGD(small.parameters(), lr=0.5),
        device="cpu", progress=False, verbose=False, accumulation_steps=k)
    fit(big, _batches(X, y, 4 * k), epochs=2, optimizer=torch.optim.SGD(big.parameters(), lr=0.5),
        device="cpu", progress=False, verbose=False)
    for a, b in zip(small.parameters(), big.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradient_accumulation_with_a_short_last_group_weights_examples_equally():
    # 48 examples in batches of 5 and 5 and 5 ... : 10 batches (last has 3), groups of 3 batches
    # give groups of 15, 15, 15, 3 examples; the same as batches of 15 with a last one of 3.
    X, y, small = _linear_problem()
    big = copy.deepcopy(small)
    fit(small, _batches(X, y, 5), epochs=1, optimizer=torch.optim.SGD(small.parameters(), lr=0.3),
        device="cpu", progress=False, verbose=False, accumulation_steps=3)
    fit(big, _batches(X, y, 15), epochs=1, optimizer=torch.optim.SGD(big.parameters(), lr=0.3),
        device="cpu", progress=False, verbose=False)
    for a, b in zip(small.parameters(), big.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_accumulation_without_len_flushes_the_last_group():
    X, y, small = _linear_problem()
    big = copy.deepcopy(small)
    fit(small, iter_loader(_batches(X, y, 8)), epochs=1,
        optimizer=torch.optim.SGD(small.parameters(), lr=0.3), device="cpu", progress=False,
        verbose=False, accumulation_steps=4)  # 6 batches: groups of 4 and 2
    fit(big, [(X[:32], y[:32]), (X[32:], y[32:])], epochs=1,
        optimizer=torch.optim.SGD(big.parameters(), lr=0.3), device="cpu", progress=False,
        verbose=False)
    for a, b in zip(small.parameters(), big.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


class iter_loader:
    """Re-iterable, but without __len__ (like an IterableDataset's loader)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_accumulation_steps_must_be_a_positive_integer(bad):
    X, y, model = _linear_problem()
    with pytest.raises(ValueError, match="accumulation_steps"):
        fit(model, _batches(X, y, 8), epochs=1, device="cpu", progress=False, verbose=False,
            accumulation_steps=bad)


def test_scheduler_steps_once_per_optimizer_step_when_accumulating():
    X, y, model = _linear_problem()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    fit(model, _batches(X, y, 8), epochs=1, optimizer=opt, scheduler=sched, device="cpu",
        progress=False, verbose=False, accumulation_steps=3)  # 6 batches -> 2 steps
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)


def test_train_transform_sees_training_batches_only():
    X, y, model = _linear_problem()
    model = model.float()
    seen = []

    def transform(Xb, yb):
        seen.append(Xb.shape[0])
        return Xb.float() * 0, yb  # zero inputs: the model sees only its bias

    hist = fit(model, _batches(X.float(), y, 16), _batches(X.float(), y, 16), epochs=1,
               device="cpu", progress=False, verbose=False, train_transform=transform)
    assert seen == [16, 16, 16]
    assert len(hist) == 1


def test_precision_names_are_checked_and_bf16_runs_on_cpu():
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype("half", "cpu")
    assert autocast_dtype("fp32", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    X, y, model = _linear_problem()
    model = model.float()
    fp32 = copy.deepcopy(model)
    hist = fit(model, _batches(X.float(), y, 16), epochs=5, lr=0.05, device="cpu",
               progress=False, verbose=False, precision="bf16")
    ref = fit(fp32, _batches(X.float(), y, 16), epochs=5, lr=0.05, device="cpu",
              progress=False, verbose=False)
    assert hist.train_loss[-1] < hist.train_loss[0]  # it learns
    # bf16 keeps 8 bits of mantissa: the losses agree with fp32 to about 1%, not exactly.
    assert hist.train_loss == pytest.approx(ref.train_loss, rel=0.03)
    assert hist.train_loss != ref.train_loss  # autocast really ran in bf16


def test_unsupported_precision_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.warns(RuntimeWarning, match="training in fp32"):
        assert autocast_dtype("bf16", "cpu") is None


def test_channels_last_gives_the_same_training_as_the_default_layout():
    torch.manual_seed(0)
    X = torch.randn(16, 3, 8, 8)
    y = torch.randint(0, 4, (16,))
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 4))
    other = copy.deepcopy(net)
    for model, cl in ((net, False), (other, True)):
        fit(model, _batches(X, y, 8), epochs=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            device="cpu", progress=False, verbose=False, channels_last=cl)
    assert other[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(net.parameters(), other.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compile_falls_back_to_eager_when_wrapping_fails(monkeypatch):
    """The rarer failure, at wrapping time; the first-call failure is in test_train_regressions."""
    def broken(model, **kwargs):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(torch, "compile", broken)
    X, y, model = _linear_problem()
    model = model.float()
    reference = copy.deepcopy(model)
    with pytest.warns(RuntimeWarning, match="running eagerly"):
        fit(model, _batches(X.float(), y, 16), epochs=1, device="cpu", progress=False,
            verbose=False, compile=True, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    fit(reference, _batches(X.float(), y, 16), epochs=1, device="cpu", progress=False,
        verbose=False, optimizer=torch.optim.SGD(reference.parameters(), lr=0.1))
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)  # trained, eagerly, exactly like the uncompiled model


# --------------------------------------------------------------------------- #
# Early stopping and TensorBoard logging (chapter 07)
# --------------------------------------------------------------------------- #
from dlkit.train import EarlyStopping


def _scripted_val_losses(monkeypatch, losses):
    """Make fit's validation return the given losses, recording the weights at each epoch."""
    import dlkit.train

    snapshots = []
    real_evaluate = evaluate  # the function imported above, never an earlier fake

    def fake_evaluate(model, loader, loss_fn=None, device=None):
        snapshots.append(copy.deepcopy(model.state_dict()))
        real = real_evaluate(model, loader, loss_fn=loss_fn, device=device)
        return {"loss": losses[len(snapshots) - 1], "accuracy": real["accuracy"]}

    # fit's validation calls the evaluate of the module that holds the loop.
    monkeypatch.setattr(dlkit.train.loop, "evaluate", fake_evaluate)
    return snapshots


@pytest.mark.parametrize("patience, stop_at", [(1, 3), (2, 4), (3, 8)])
def test_early_stopping_stops_after_patience_and_restores_the_best(monkeypatch, patience, stop_at):
    losses = [1.0, 0.8, 0.9, 0.85, 0.7, 0.95, 0.96, 0.97, 0.98, 0.99]
    snapshots = _scripted_val_losses(monkeypatch, losses)
    X, y = _blobs(20)
    model = _linear()
    stopper = EarlyStopping(patience=patience)
    h = _quiet_fit(model, make_loader(X, y, 8), make_loader(X, y, 8), epochs=10, lr=0.05,
                   early_stopping=stopper)
    assert h.epoch == list(range(1, stop_at + 1))
    best = 2 if stop_at < 5 else 5
    assert stopper.best_epoch == best and stopper.stopped_epoch == stop_at
    assert stopper.best_loss == losses[best - 1]
    assert h.best_epoch() == best
    for name, tensor in model.state_dict().items():  # weights of the best epoch, not the last
        assert torch.equal(tensor, snapshots[best - 1][name])
    assert not torch.equal(model.weight, snapshots[-1]["weight"])


def test_early_stopping_as_an_int_and_min_delta(monkeypatch):
    _scripted_val_losses(monkeypatch, [1.0, 0.99, 0.98, 0.97, 0.5, 0.4])
    X, y = _blobs(10)
    h = _quiet_fit(_linear(), make_loader(X, y, 8), make_loader(X, y, 8), epochs=6,
                   early_stopping=3)
    assert len(h) == 6  # every epoch improved a little
    _scripted_val_losses(monkeypatch, [1.0, 0.99, 0.98, 0.97, 0.5, 0.4])
    stopper = EarlyStopping(patience=3, min_delta=0.05)
    h = _quiet_fit(_linear(), make_loader(X, y, 8), make_loader(X, y, 8), epochs=6,
                   early_stopping=stopper)
    assert len(h) == 4 and stopper.best_epoch == 1  # 0.01 steps are below min_delta


def test_early_stopping_without_restore_keeps_the_last_weights(monkeypatch):
    snapshots = _scripted_val_losses(monkeypatch, [1.0, 2.0, 3.0])
    X, y = _blobs(10)
    model = _linear()
    _quiet_fit(model, make_loader(X, y, 8), make_loader(X, y, 8), epochs=3, lr=0.05,
               early_stopping=EarlyStopping(patience=5, restore_best=False))
    assert torch.equal(model.weight, snapshots[-1]["weight"])


def test_early_stopping_errors():
    X, y = _blobs(5)
    with pytest.raises(ValueError, match="early_stopping watches the validation loss"):
        _quiet_fit(_linear(), make_loader(X, y, 4), epochs=2, early_stopping=2)
    with pytest.raises(ValueError, match="patience must be a positive integer"):
        EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="min_delta must be >= 0"):
        EarlyStopping(patience=2, min_delta=-1.0)
    with pytest.raises(TypeError, match="early_stopping must be a patience"):
        _quiet_fit(_linear(), make_loader(X, y, 4), make_loader(X, y, 4), epochs=2,
                   early_stopping=2.5)


def test_early_stopping_prints_when_it_stops(monkeypatch, capsys):
    _scripted_val_losses(monkeypatch, [1.0, 2.0, 3.0, 4.0])
    X, y = _blobs(5)
    _quiet_fit(_linear(), make_loader(X, y, 4), make_loader(X, y, 4), epochs=4, verbose=True,
               early_stopping=2)
    assert "early stopping: no improvement of the validation loss for 2 epochs; the best was " \
           "epoch 1" in capsys.readouterr().out


def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_logs_scalars_hparams_and_a_confusion_matrix(tmp_path):
    X, y = _blobs(20)
    Xv, yv = _blobs(10, seed=1)
    h = _quiet_fit(_linear(), make_loader(X, y, 8), make_loader(Xv, yv, 8), epochs=3, lr=0.05,
                   log_dir=tmp_path / "run", hparams={"model": "linear", "seed": 0},
                   class_names=["a", "b"])
    acc = _events(tmp_path / "run")
    tags = acc.Tags()
    for tag, column in [("loss/train", h.train_loss), ("accuracy/train", h.train_acc),
                        ("loss/val", h.val_loss), ("accuracy/val", h.val_acc), ("lr", h.lr)]:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2, 3]
        assert [e.value for e in events] == pytest.approx(column, rel=1e-6)  # stored as float32
    assert acc.Scalars("hparam/val_accuracy")[0].value == pytest.approx(h.val_acc[-1])
    assert tags["images"] == ["confusion_matrix"]
    image = acc.Images("confusion_matrix")[0]
    assert image.step == 3 and image.encoded_image_string.startswith(b"\x89PNG")
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    infos = [plugin_data_pb2.HParamsPluginData.FromString(v) for v in content.values()]
    session = next(i.session_start_info for i in infos if i.HasField("session_start_info"))
    assert session.hparams["optimizer"].string_value == "Adam"
    assert session.hparams["lr"].number_value == pytest.approx(0.05)
    assert session.hparams["model"].string_value == "linear"
    assert session.hparams["batch_size"].number_value == 8


def test_tensorboard_resume_does_not_repeat_epochs(tmp_path):
    X, y = _blobs(20)
    loader = make_loader(X, y, 8, shuffle=True, seed=0)
    _quiet_fit(_linear(), loader, epochs=2, log_dir=tmp_path / "tb", checkpoint=tmp_path / "c.pt")
    time.sleep(1.1)  # event file names carry the time in seconds
    _quiet_fit(_linear(), loader, epochs=4, log_dir=tmp_path / "tb",
               checkpoint=tmp_path / "c.pt", resume=True)
    steps = [e.step for e in _events(tmp_path / "tb").Scalars("loss/train")]
    assert steps == [1, 2, 3, 4]


def test_tensorboard_rejects_bad_hparams(tmp_path):
    X, y = _blobs(5)
    with pytest.raises(TypeError, match=r"hparams\['layers'\] must be a number, string or bool"):
        _quiet_fit(_linear(), make_loader(X, y, 4), epochs=1, log_dir=tmp_path,
                   hparams={"layers": [1, 2]})


def test_fit_tells_samplers_and_iterable_datasets_the_epoch():
    class Recorder(torch.utils.data.IterableDataset):
        def __init__(self):
            self.epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

        def __iter__(self):
            g = torch.Generator().manual_seed(len(self.epochs))
            yield torch.randn(4, 3, generator=g), torch.tensor([0, 1, 0, 1])

    ds = Recorder()
    loader = torch.utils.data.DataLoader(ds, batch_size=None)
    X, y, model = _linear_problem(d=3, k=2)
    fit(model.float(), loader, epochs=3, device="cpu", progress=False, verbose=False)
    assert ds.epochs == [0, 1, 2]

    sampler = torch.utils.data.DistributedSampler(range(8), num_replicas=2, rank=0, seed=0)
    data = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    loader = torch.utils.data.DataLoader(data, batch_size=2, sampler=sampler)
    fit(nn.Linear(3, 2), loader, epochs=2, device="cpu", progress=False, verbose=False)
    assert sampler.epoch == 1
