"""Tests for dlkit.exercises: every check returns specific Feedback and never raises."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from dlkit.exercises import (
    Feedback,
    check_accuracy_fn,
    check_flatten_size,
    check_model,
    check_num_steps,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- #
# Feedback
# --------------------------------------------------------------------------- #
def test_feedback_truthiness_and_text():
    good = Feedback(True, "fine.")
    bad = Feedback(False, "off by one.", "count again.")
    bare = Feedback(False, "wrong.")
    assert good and not bad and not bare
    assert str(good) == "✔ Correct. fine."
    assert str(bad) == "✘ Not yet. off by one.\n   Hint: count again."
    assert str(bare) == "✘ Not yet. wrong."
    assert repr(bad) == str(bad)
    with pytest.raises(dataclasses.FrozenInstanceError):
        good.ok = False  # type: ignore[misc]


# --------------------------------------------------------------------------- #
# check_flatten_size
# --------------------------------------------------------------------------- #
def _layers() -> nn.Module:
    # 3×32×32 -> 8×32×32 -> 8×16×16 = 2048 features.
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


@pytest.mark.parametrize("answer", [2048, 2048.0, 8 * 16 * 16])
def test_flatten_size_right(answer):
    fb = check_flatten_size(answer, _layers(), 32)
    assert fb
    assert "8×16×16 = 2,048 features" in fb.message
    assert str(fb).startswith("✔")


def test_flatten_size_positions_only():
    fb = check_flatten_size(16 * 16, _layers(), 32)
    assert not fb
    assert "256 counts positions only" in fb.message
    assert "16×16 positions has 8 channels" in fb.hint
    assert str(fb).startswith("✘") and "Hint: each of the 16×16" in str(fb)


def test_flatten_size_before_pooling():
    fb = check_flatten_size(8 * 32 * 32, _layers(), 32)
    assert not fb
    assert "size before pooling" in fb.message
    assert "shrink 32×32 to 16×16" in fb.hint


def test_flatten_size_article_guess():
    fb = check_flatten_size(64 * 7 * 7, _layers(), 32)
    assert not fb
    assert "64×7×7 is the article's guess" in fb.message
    assert "padding" in fb.hint


def test_flatten_size_other_wrong_number():
    fb = check_flatten_size(1000, _layers(), 32)
    assert not fb
    assert "1,000 is not the size these layers produce for a 32×32 image" in fb.message
    assert "channels × height × width" in fb.hint


@pytest.mark.parametrize("answer", [2048.5, "2048", None, True, float("nan"), float("inf"), [2048]])
def test_flatten_size_not_a_whole_number(answer):
    fb = check_flatten_size(answer, _layers(), 32)
    assert not fb
    assert "expected a whole number" in fb.message


def test_flatten_size_is_measured():
    # Strided convolutions, grayscale input, another image size.
    layers = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.MaxPool2d(2))
    # 28 -> 24 -> 11 -> 5: 6×5×5 = 150.
    assert check_flatten_size(150, layers, 28, in_channels=1)
    assert not check_flatten_size(2048, layers, 28, in_channels=1)
    assert "25 counts positions only" in check_flatten_size(25, layers, 28, in_channels=1).message


def test_flatten_size_layers_ending_in_flatten():
    layers = nn.Sequential(_layers(), nn.Flatten())
    assert check_flatten_size(2048, layers, 32)
    assert not check_flatten_size(256, layers, 32)


# --------------------------------------------------------------------------- #
# check_model
# --------------------------------------------------------------------------- #
class GoodNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(8 * 8 * 8, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


class WrongViewNet(GoodNet):
    def forward(self, x):
        # The wrong n: 4*8*8 instead of 8*8*8, so each image becomes two rows.
        return nn.functional.linear(self.features(x).view(-1, 4 * 8 * 8),
                                    self.fc.weight[:, : 4 * 8 * 8], self.fc.bias)


class CrashNet(GoodNet):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(100, 10)  # wrong in_features


class TupleNet(GoodNet):
    def forward(self, x):
        return (super().forward(x),)


class NanNet(GoodNet):
    def forward(self, x):
        return super().forward(x) * float("nan")


def test_check_model_right():
    fb = check_model(GoodNet())
    assert fb
    n_params = sum(p.numel() for p in GoodNet().parameters())
    assert f"2 conv layer(s), {n_params:,} parameters, outputs (3, 10)" in fb.message
    assert str(fb).startswith("✔ Correct.")


def test_check_model_other_shapes():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    assert check_model(net, num_classes=3, image_shape=(1, 8, 8))
    assert not check_model(net, num_classes=10, image_shape=(1, 8, 8))


def test_check_model_class_instead_of_instance():
    fb = check_model(GoodNet)  # type: ignore[arg-type]
    assert not fb
    assert "you passed the class" in fb.message
    assert "check_model(MyNet())" in fb.hint


def test_check_model_not_a_module():
    fb = check_model(lambda x: x)  # type: ignore[arg-type]
    assert not fb
    assert "expected an nn.Module, got function" in fb.message


def test_check_model_wrong_view():
    fb = check_model(WrongViewNet())
    assert not fb
    assert "a batch of 2 images gave outputs of shape (4, 10), expected (2, 10)" in fb.message
    assert "x.flatten(1) instead of x.view(-1, n)" in fb.hint


def test_check_model_wrong_number_of_outputs():
    fb = check_model(GoodNet(num_classes=5))
    assert not fb
    assert "expected (2, 10)" in fb.message
    assert "the last layer should have 10 outputs" in fb.hint


@pytest.mark.parametrize("training", [True, False])
def test_check_model_that_raises_does_not_raise(training):
    net = CrashNet().train(training)
    fb = check_model(net)
    assert not fb
    assert "a batch of shape (2, 3, 32, 32) raised RuntimeError" in fb.message
    assert "print x.shape" in fb.hint
    assert net.training is training


@pytest.mark.parametrize("training", [True, False])
def test_check_model_restores_mode(training):
    seen = []

    class Spy(GoodNet):
        def forward(self, x):
            seen.append(self.training)
            return super().forward(x)

    net = Spy().train(training)
    assert check_model(net)
    assert seen == [False, False]
    assert net.training is training


def test_check_model_too_few_convs():
    fb = check_model(GoodNet(), min_conv_layers=3)
    assert not fb
    assert "the network has 2 Conv2d layer(s); the exercise asks for 3" in fb.message
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    assert not check_model(mlp)
    assert check_model(mlp, min_conv_layers=0)


def test_check_model_non_tensor_output():
    fb = check_model(TupleNet())
    assert not fb
    assert "forward() returned tuple" in fb.message


def test_check_model_nan_outputs():
    fb = check_model(NanNet())
    assert not fb
    assert "nan or inf" in fb.message


# --------------------------------------------------------------------------- #
# check_accuracy_fn
# --------------------------------------------------------------------------- #
def _right_fn(logits, y):
    return (logits.argmax(dim=1) == y).float().mean().item()


@pytest.mark.parametrize("fn", [
    _right_fn,
    lambda logits, y: (logits.argmax(dim=-1) == y).double().mean().item(),
    lambda logits, y: float((logits.softmax(1).argmax(1) == y).sum()) / len(y),
    lambda logits, y: np.mean(logits.argmax(1).numpy() == y.numpy()),  # a NumPy float64
])
def test_accuracy_fn_right(fn):
    fb = check_accuracy_fn(fn)
    assert fb, str(fb)
    assert "matches the reference" in fb.message
    assert str(fb).startswith("✔")


def test_accuracy_fn_percentage():
    fb = check_accuracy_fn(lambda logits, y: 100 * _right_fn(logits, y))
    assert not fb
    assert "a percentage" in fb.message
    assert "fraction in [0, 1]" in fb.hint


def test_accuracy_fn_tensor():
    fb = check_accuracy_fn(lambda logits, y: (logits.argmax(dim=1) == y).float().mean())
    assert not fb
    assert "it returned a tensor" in fb.message
    assert ".item()" in fb.hint


def test_accuracy_fn_wrong_dim():
    fb = check_accuracy_fn(lambda logits, y: (logits.argmax(dim=0) == y).float().mean().item())
    assert not fb
    assert "largest score" in fb.hint


def test_accuracy_fn_wrong_value():
    # Counts instead of a fraction: a number, but the wrong one.
    fb = check_accuracy_fn(lambda logits, y: int((logits.argmax(dim=1) == y).sum()))
    assert not fb
    assert "expected" in fb.message
    assert "dim=1" in fb.hint


def test_accuracy_fn_that_raises_does_not_raise():
    def broken(logits, y):
        return 1 / 0

    fb = check_accuracy_fn(broken)
    assert not fb
    assert "raised ZeroDivisionError: division by zero" in fb.message


@pytest.mark.parametrize("value, name", [("0.5", "str"), (None, "NoneType"), (True, "bool")])
def test_accuracy_fn_not_a_number(value, name):
    fb = check_accuracy_fn(lambda logits, y: value)
    assert not fb
    assert f"it returned {name}, expected a float" in fb.message



# --------------------------------------------------------------------------- #
# check_num_steps
# --------------------------------------------------------------------------- #
def test_check_num_steps_right_answer():
    fb = check_num_steps(3 * 40, 1000, 25, 3)
    assert fb and "40 steps per epoch" in fb.message
    assert check_num_steps(3 * 8, 1000, 128, 3)  # 7 full batches + 1 partial
    assert check_num_steps(3 * 7, 1000, 128, 3, drop_last=True)


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (8, "one epoch"),
        (21, "last, smaller batch"),
        (3000, "counts examples"),
        (99, "is not the number of steps"),
        (None, "whole number"),
        (2.5, "whole number"),
    ],
)
def test_check_num_steps_wrong_answers(answer, fragment):
    fb = check_num_steps(answer, 1000, 128, 3)
    assert not fb
    assert fragment in fb.message
    assert fb.hint


# --------------------------------------------------------------------------- #
# check_relu_backward, check_softmax_ce_grad, check_adam_step (chapters 05, 06)
# --------------------------------------------------------------------------- #
from dlkit.exercises import check_adam_step, check_relu_backward, check_softmax_ce_grad  # noqa: E402


@pytest.mark.parametrize(
    ("fn", "ok", "fragment"),
    [
        (lambda x, g: g * (x > 0), True, "x > 0"),
        (lambda x, g: g, False, "passes through everywhere"),
        (lambda x, g: (x > 0).double(), False, "local derivative only"),
        (lambda x, g: g * (x >= 0), False, "at x = 0"),
        (lambda x, g: g[:, :2], False, "shape"),
        (lambda x, g: 1 / 0, False, "ZeroDivisionError"),
        (lambda x, g: g.tolist(), False, "should be a tensor"),
    ],
)
def test_check_relu_backward(fn, ok, fragment):
    fb = check_relu_backward(fn)
    assert bool(fb) is ok
    assert fragment in fb.message


def _onehot(y, k):
    return torch.nn.functional.one_hot(y, k).to(torch.float64)


@pytest.mark.parametrize(
    ("fn", "ok", "fragment"),
    [
        (lambda z, y: (torch.softmax(z, 1) - _onehot(y, z.shape[1])) / len(y), True, "stable"),
        (lambda z, y: torch.softmax(z, 1) - _onehot(y, z.shape[1]), False, "summed loss"),
        (lambda z, y: (_onehot(y, z.shape[1]) - torch.softmax(z, 1)) / len(y), False, "sign"),
        (lambda z, y: torch.softmax(z, 1) / len(y), False, "term of the true class"),
        (lambda z, y: (z.exp() / z.exp().sum(1, keepdim=True) - _onehot(y, z.shape[1])) / len(y),
         False, "nan or inf"),
    ],
)
def test_check_softmax_ce_grad(fn, ok, fragment):
    fb = check_softmax_ce_grad(fn)
    assert bool(fb) is ok
    assert fragment in fb.message


def _adam(p, g, m, v, t, lr, b1, b2, eps, correct=True, square=True):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * (g * g if square else g.abs())
    mh, vh = (m / (1 - b1**t), v / (1 - b2**t)) if correct else (m, v)
    return p - lr * mh / (vh.sqrt() + eps), m, v


def test_check_adam_step_right_and_wrong():
    assert check_adam_step(_adam)
    fb = check_adam_step(lambda *a: _adam(*a, correct=False))
    assert not fb and "without bias correction" in fb.message and "start at zero" in fb.hint
    fb = check_adam_step(lambda *a: _adam(*a, square=False))
    assert not fb and "second moment" in fb.message
    fb = check_adam_step(lambda p, g, m, v, t, lr, b1, b2, eps: p)
    assert not fb and "tuple (param, m, v)" in fb.message


def test_check_critical_lr():
    from dlkit.exercises import check_critical_lr

    assert check_critical_lr(2 / 25, [1, 25])
    fb = check_critical_lr(1 / 25, [1, 25])
    assert not fb and "one step" in fb.message
    fb = check_critical_lr(2.0, [1, 25])
    assert not fb and "flattest" in fb.message
    fb = check_critical_lr(0.3, [1, 25])
    assert not fb and "not the threshold" in fb.message
    assert not check_critical_lr("fast", [1, 25])
    with pytest.raises(ValueError, match="positive"):
        check_critical_lr(0.1, [0, 1])
