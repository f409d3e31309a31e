"""Tests for dlkit.scratch.layers: every forward and backward pass against torch.nn + autograd."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.scratch.layers import (
    Conv2d,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    gradcheck,
    numerical_grad,
)

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
TOL = 1e-10


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def _copy_params(ours: Layer, twin: nn.Module) -> None:
    """Copy the twin's weights in through the params dict (this also exercises the live store)."""
    for name, p in twin.named_parameters():
        ours.params[name] = p.detach().clone()


def _assert_matches_torch(ours: Layer, twin: nn.Module, x: torch.Tensor, seed: int) -> None:
    """Forward output, input gradient and parameter gradients agree with autograd to 1e-10."""
    x = x.clone().requires_grad_(True)
    expected = twin(x)
    g = _randn(*expected.shape, seed=seed + 1000)
    expected.backward(g)

    out = ours.forward(x.detach())
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected.detach(), atol=TOL, rtol=0)
    torch.testing.assert_close(ours.backward(g), x.grad, atol=TOL, rtol=0)
    assert set(ours.grads) == {name for name, _ in twin.named_parameters()}
    for name, p in twin.named_parameters():
        assert ours.grads[name].shape == p.shape
        torch.testing.assert_close(ours.grads[name], p.grad, atol=TOL, rtol=0)


def _linear_case(seed: int) -> tuple[Linear, nn.Linear, torch.Tensor]:
    r = random.Random(seed)
    n, fin, fout, bias = r.randint(1, 5), r.randint(1, 8), r.randint(1, 6), r.random() < 0.7
    twin = nn.Linear(fin, fout, bias=bias, dtype=F64)
    ours = Linear(fin, fout, bias=bias, dtype=F64)
    return ours, twin, _randn(n, fin, seed=seed)


def _conv_case(seed: int) -> tuple[Conv2d, nn.Conv2d, torch.Tensor]:
    r = random.Random(seed)
    cin, cout, kh, kw = r.randint(1, 3), r.randint(1, 4), r.randint(1, 5), r.randint(1, 5)
    stride = r.randint(1, 3) if r.random() < 0.5 else (r.randint(1, 3), r.randint(1, 3))
    padding = r.randint(0, 2) if r.random() < 0.5 else (r.randint(0, 2), r.randint(0, 2))
    bias = r.random() < 0.7
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    h, w = r.randint(max(1, kh - 2 * ph), kh + 5), r.randint(max(1, kw - 2 * pw), kw + 5)
    twin = nn.Conv2d(cin, cout, (kh, kw), stride, padding, bias=bias, dtype=F64)
    ours = Conv2d(cin, cout, (kh, kw), stride, padding, bias=bias, dtype=F64)
    return ours, twin, _randn(r.randint(1, 3), cin, h, w, seed=seed)


def _pool_case(seed: int) -> tuple[MaxPool2d, nn.MaxPool2d, torch.Tensor]:
    r = random.Random(seed)
    k = r.randint(2, 3)
    stride = None if r.random() < 0.3 else r.randint(1, 3)
    n, c, h, w = r.randint(1, 3), r.randint(1, 3), r.randint(k, k + 5), r.randint(k, k + 5)
    x = _randn(n, c, h, w, seed=seed)
    return MaxPool2d(k, stride), nn.MaxPool2d(k, stride), x


def _small_net(seed: int = 0) -> tuple[Sequential, nn.Sequential]:
    torch.manual_seed(seed)
    twin = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(48, 4)
    ).double()
    ours = Sequential(
        Conv2d(2, 3, 3, padding=1, dtype=F64),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(48, 4, dtype=F64),
    )
    for i in (0, 4):
        _copy_params(ours[i], twin[i])
    return ours, twin


# --------------------------------------------------------------------------- #
# Forward and backward against torch.nn + autograd
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", range(10))
def test_linear_matches_torch(seed: int):
    ours, twin, x = _linear_case(seed)
    _copy_params(ours, twin)
    _assert_matches_torch(ours, twin, x, seed)


@pytest.mark.parametrize("seed", range(30))
def test_conv2d_matches_torch(seed: int):
    ours, twin, x = _conv_case(seed)
    _copy_params(ours, twin)
    _assert_matches_torch(ours, twin, x, seed)


def test_conv2d_cases_cover_the_grid():
    """The random cases reach every kernel size, stride, padding and non-square inputs."""
    convs = [_conv_case(seed) for seed in range(30)]
    assert {k for c, _, _ in convs for k in c.kernel_size} == {1, 2, 3, 4, 5}
    assert {s for c, _, _ in convs for s in c.stride} == {1, 2, 3}
    assert {p for c, _, _ in convs for p in c.padding} == {0, 1, 2}
    assert any(x.shape[2] != x.shape[3] for _, _, x in convs)
    assert {"bias" in c.params for c, _, _ in convs} == {True, False}


@pytest.mark.parametrize("seed", range(15))
def test_maxpool2d_matches_torch(seed: int):
    ours, twin, x = _pool_case(seed)
    _assert_matches_torch(ours, twin, x, seed)


def test_maxpool2d_ties_go_to_the_first_maximum_like_torch():
    for stride in (1, 2):
        x = torch.zeros(1, 2, 5, 4, dtype=F64)
        _assert_matches_torch(MaxPool2d(2, stride), nn.MaxPool2d(2, stride), x, seed=0)


@pytest.mark.parametrize(
    ("ours", "twin"), [(ReLU(), nn.ReLU()), (Sigmoid(), nn.Sigmoid()), (Flatten(), nn.Flatten())]
)
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 5)])
def test_elementwise_and_flatten_match_torch(ours: Layer, twin: nn.Module, shape: tuple[int, ...]):
    _assert_matches_torch(ours, twin, 3 * _randn(*shape, seed=len(shape)), seed=len(shape))


def test_sigmoid_and_relu_survive_extreme_inputs():
    x = torch.tensor([[-1e4, -800.0, 0.0, 800.0, 1e4]], dtype=F64)
    _assert_matches_torch(Sigmoid(), nn.Sigmoid(), x, seed=0)
    _assert_matches_torch(ReLU(), nn.ReLU(), x, seed=0)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_softmax_cross_entropy_matches_torch(seed: int, scale: float):
    r = random.Random(seed)
    n, k = r.randint(1, 6), r.randint(2, 7)
    logits = (scale * _randn(n, k, seed=seed)).requires_grad_(True)
    targets = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed))
    expected = F.cross_entropy(logits, targets)
    expected.backward()

    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(logits.detach(), targets)
    grad = loss_fn.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, expected.detach(), atol=TOL * scale, rtol=TOL)
    torch.testing.assert_close(grad, logits.grad, atol=TOL, rtol=0)


def test_softmax_cross_entropy_gradient_formula_and_grad_out():
    logits, targets = _randn(3, 4), torch.tensor([0, 3, 3])
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(logits, targets)
    expected = (torch.softmax(logits, 1) - F.one_hot(targets, 4)) / 3
    torch.testing.assert_close(loss_fn.backward(), expected, atol=TOL, rtol=0)
    torch.testing.assert_close(loss_fn.backward(torch.tensor(2.0, dtype=F64)), 2 * expected)


def test_small_network_end_to_end_matches_torch():
    ours, twin = _small_net()
    x, y = _randn(3, 2, 8, 8, seed=1), torch.tensor([0, 3, 1])
    F.cross_entropy(twin(x), y).backward()

    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(ours.forward(x), y)
    dx = ours.backward(loss_fn.backward())
    assert dx.shape == x.shape
    for i in (0, 4):
        for name, p in twin[i].named_parameters():
            torch.testing.assert_close(ours[i].grads[name], p.grad, atol=TOL, rtol=0)


# --------------------------------------------------------------------------- #
# No autograd inside
# --------------------------------------------------------------------------- #
def test_results_do_not_depend_on_autograd():
    ours, _ = _small_net()
    x, y = _randn(2, 2, 8, 8, seed=2), torch.tensor([1, 2])
    loss_fn = SoftmaxCrossEntropy()

    def run(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        loss = loss_fn.forward(ours.forward(x), y)
        dx = ours.backward(loss_fn.backward())
        return (loss, dx, *(layer.grads[name] for layer, name in ours.parameters()))

    plain = run(x)
    with torch.no_grad():
        in_no_grad = run(x)
    with torch.set_grad_enabled(False):
        grad_disabled = run(x)
    tracked = run(x.clone().requires_grad_(True))
    for results in (in_no_grad, grad_disabled, tracked):
        for a, b in zip(plain, results):
            assert torch.equal(a, b)
    assert not any(t.requires_grad for t in tracked)


def test_parameters_that_require_grad_are_fine():
    layer = Linear(3, 2, dtype=F64)
    layer.params["weight"] = nn.Parameter(_randn(2, 3))
    out = layer.forward(_randn(4, 3))
    assert not out.requires_grad and not layer.backward(torch.ones_like(out)).requires_grad


# --------------------------------------------------------------------------- #
# params, grads, initialisation and from_torch
# --------------------------------------------------------------------------- #
def test_params_is_the_live_store_and_grads_are_overwritten():
    layer = Linear(3, 2, dtype=F64)
    x = _randn(4, 3)
    layer.params["weight"] = torch.zeros(2, 3, dtype=F64)
    layer.params["bias"] = torch.tensor([1.0, -1.0], dtype=F64)
    assert torch.equal(layer.forward(x), torch.tensor([[1.0, -1.0]] * 4, dtype=F64))
    g = torch.ones(4, 2, dtype=F64)
    layer.backward(g)
    first = {k: v.clone() for k, v in layer.grads.items()}
    layer.backward(g)
    for name in first:
        assert torch.equal(layer.grads[name], first[name])  # not doubled


def test_layers_without_params_have_empty_dicts():
    for layer in (ReLU(), Sigmoid(), Flatten(), MaxPool2d(2), SoftmaxCrossEntropy()):
        assert layer.params == {} and layer.grads == {} and list(layer.parameters()) == []


@pytest.mark.parametrize(
    ("make_ours", "make_twin", "fan_in"),
    [
        (lambda: Linear(7, 4), lambda: nn.Linear(7, 4), 7),
        (lambda: Conv2d(3, 5, (2, 3)), lambda: nn.Conv2d(3, 5, (2, 3)), 18),
    ],
)
def test_initialisation_is_torch_default(make_ours, make_twin, fan_in: int):
    torch.manual_seed(0)
    ours = make_ours()
    torch.manual_seed(0)
    twin = make_twin()
    for name, p in twin.named_parameters():
        assert ours.params[name].dtype == torch.float32
        assert torch.equal(ours.params[name], p.detach())  # same seed, same numbers
        assert ours.params[name].abs().max() <= 1 / fan_in**0.5


def test_generator_and_dtype():
    a = Conv2d(2, 3, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    b = Conv2d(2, 3, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    assert a.params["weight"].dtype == F64 and a.params["weight"].shape == (3, 2, 3, 3)
    assert all(torch.equal(a.params[k], b.params[k]) for k in ("weight", "bias"))
    assert set(Linear(3, 2, bias=False).params) == {"weight"}


def test_from_torch_copies_weights():
    twin = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1, bias=False),
        nn.Sigmoid(),
        nn.MaxPool2d(2, 1),
        nn.Flatten(),
        nn.Sequential(nn.Linear(8, 3), nn.ReLU()),
    )
    ours = Sequential.from_torch(twin)
    assert [type(layer) for layer in ours] == [Conv2d, Sigmoid, MaxPool2d, Flatten, Sequential]
    assert ours[0].stride == (2, 2) and ours[0].padding == (1, 1) and "bias" not in ours[0].params
    assert ours[2].kernel_size == (2, 2) and ours[2].stride == (1, 1)
    x = torch.randn(2, 1, 6, 6)
    torch.testing.assert_close(ours.forward(x), twin(x).detach())
    ours[0].params["weight"].zero_()
    assert twin[0].weight.abs().sum() > 0  # a copy, not shared


def test_from_torch_rejects_what_it_cannot_copy():
    with pytest.raises(TypeError, match="cannot convert Dropout"):
        Sequential.from_torch(nn.Sequential(nn.Linear(2, 2), nn.Dropout()))
    with pytest.raises(ValueError, match="groups=1"):
        Conv2d.from_torch(nn.Conv2d(2, 2, 3, groups=2))
    with pytest.raises(ValueError, match="ceil_mode"):
        MaxPool2d.from_torch(nn.MaxPool2d(2, ceil_mode=True))
    with pytest.raises(ValueError, match="dilation"):
        MaxPool2d.from_torch(nn.MaxPool2d(2, dilation=2))


def test_sequential_helpers():
    ours, _ = _small_net()
    assert len(ours) == 5 and ours.layers[0] is ours[0] and list(ours) == ours.layers
    assert [(type(layer).__name__, name) for layer, name in ours.parameters()] == [
        ("Conv2d", "weight"), ("Conv2d", "bias"), ("Linear", "weight"), ("Linear", "bias")
    ]
    assert ours.params == {} and "(4): Linear(48, 4, bias=True)" in repr(ours)


def test_plain_sgd_through_parameters_lowers_the_loss():
    ours, _ = _small_net()
    x, y = _randn(4, 2, 8, 8, seed=3), torch.tensor([0, 1, 2, 3])
    loss_fn = SoftmaxCrossEntropy()
    losses = []
    for _ in range(5):
        losses.append(loss_fn.forward(ours.forward(x), y).item())
        ours.backward(loss_fn.backward())
        for layer, name in ours.parameters():
            layer.params[name] = layer.params[name] - 0.5 * layer.grads[name]
    assert losses[-1] < losses[0]


# --------------------------------------------------------------------------- #
# gradcheck and numerical_grad
# --------------------------------------------------------------------------- #
def test_numerical_grad_of_a_scalar_function():
    x = _randn(3, 2)
    cubes = numerical_grad(lambda z: (z**3).sum(), x)
    torch.testing.assert_close(cubes, 3 * x**2, atol=1e-8, rtol=0)
    product = numerical_grad(lambda z: float(z.prod()), torch.tensor([2.0, 5.0], dtype=F64))
    assert product.tolist() == pytest.approx([5.0, 2.0], abs=1e-8)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (Linear(4, 3, dtype=F64), (3, 4)),
        (Linear(4, 3, bias=False, dtype=F64), (2, 4)),
        (Conv2d(2, 3, (3, 2), stride=(2, 1), padding=1, dtype=F64), (2, 2, 5, 4)),
        (MaxPool2d(2, 1), (1, 2, 4, 5)),
        (ReLU(), (3, 5)),
        (Sigmoid(), (3, 5)),
        (Flatten(), (2, 3, 2)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Layer) else None,
)
def test_gradcheck_agrees_with_autograd(layer: Layer, shape: tuple[int, ...]):
    errors = gradcheck(layer, _randn(*shape, seed=4))
    assert set(errors) == {"input", *layer.params}
    assert max(errors.values()) < 1e-7


def test_gradcheck_on_loss_and_sequential():
    errors = gradcheck(SoftmaxCrossEntropy(), _randn(4, 3), torch.tensor([0, 2, 1, 1]))
    assert set(errors) == {"input"} and errors["input"] < 1e-7
    ours, _ = _small_net()
    errors = gradcheck(ours, _randn(1, 2, 8, 8, seed=5))
    assert set(errors) == {"input", "0.weight", "0.bias", "4.weight", "4.bias"}
    assert max(errors.values()) < 1e-7


def test_gradcheck_catches_a_wrong_backward():
    class ForgetfulReLU(ReLU):
        def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
            self._saved(grad_out)
            return grad_out  # forgot the mask

    class DoubledBiasLinear(Linear):
        def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
            dx = super().backward(grad_out)
            self.grads["bias"] = 2 * self.grads["bias"]
            return dx

    assert gradcheck(ForgetfulReLU(), _randn(4, 5))["input"] > 0.1
    errors = gradcheck(DoubledBiasLinear(3, 2, dtype=F64), _randn(4, 3))
    assert errors["input"] < 1e-7 and errors["weight"] < 1e-7 and errors["bias"] > 0.1


def test_gradcheck_leaves_the_layer_as_it_was():
    layer = Linear(3, 2, dtype=F64)
    weight = layer.params["weight"]
    before = weight.clone()
    gradcheck(layer, _randn(2, 3))
    assert layer.params["weight"] is weight and torch.equal(weight, before)


def test_gradcheck_needs_float64():
    with pytest.raises(TypeError, match="finite differences need float64"):
        gradcheck(ReLU(), torch.randn(2, 3))
    with pytest.raises(TypeError, match="finite differences need float64.*float32"):
        gradcheck(Linear(3, 2), torch.randn(2, 3, dtype=F64))
    with pytest.raises(TypeError, match="finite differences need float64"):
        numerical_grad(lambda z: z.sum(), torch.randn(3))
    with pytest.raises(ValueError, match="scalar"):
        numerical_grad(lambda z: z, _randn(3))


# --------------------------------------------------------------------------- #
# Errors that say what was expected
# --------------------------------------------------------------------------- #
def test_shape_errors():
    with pytest.raises(ValueError, match=r"Linear expected input of shape \(N, 5\), got \(N, 7\)"):
        Linear(5, 3).forward(torch.randn(4, 7))
    with pytest.raises(ValueError, match=r"\(N, 5\), got a 3-D tensor \(2, 4, 5\)"):
        Linear(5, 3).forward(torch.randn(2, 4, 5))
    expected = r"Conv2d expected input of shape \(N, 3, H, W\), got \(N, 1, 8, 8\)"
    with pytest.raises(ValueError, match=expected):
        Conv2d(3, 4, 3).forward(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got a 3-D tensor \(3, 8, 8\)"):
        Conv2d(3, 4, 3).forward(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="smaller than the kernel 5x5"):
        Conv2d(1, 1, 5, padding=1).forward(torch.randn(1, 1, 2, 9))
    with pytest.raises(ValueError, match=r"MaxPool2d expected input of shape \(N, C, H, W\)"):
        MaxPool2d(3).forward(torch.randn(1, 2, 5))
    with pytest.raises(ValueError, match="input 2x5 is smaller than its window 3x3"):
        MaxPool2d(3).forward(torch.randn(1, 1, 2, 5))
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        Conv2d(1, 1, 3, stride=0)


def test_a_transposed_weight_is_caught():
    layer = Linear(5, 3)
    layer.params["weight"] = torch.randn(5, 3)
    expected = r"params\['weight'\] must have shape \(3, 5\), got \(5, 3\)"
    with pytest.raises(ValueError, match=expected):
        layer.forward(torch.randn(2, 5))


def test_dtype_mismatch_names_both_dtypes():
    with pytest.raises(TypeError, match="torch.float64.*torch.float32"):
        Linear(5, 3).forward(_randn(2, 5))
    with pytest.raises(TypeError, match="torch.int64.*torch.float32"):
        Conv2d(1, 1, 1).forward(torch.ones(1, 1, 2, 2, dtype=torch.int64))


@pytest.mark.parametrize(
    "layer",
    [Linear(2, 2), ReLU(), Sigmoid(), Conv2d(1, 1, 1), MaxPool2d(2), Flatten(), Sequential(ReLU())],
)
def test_backward_before_forward(layer: Layer):
    with pytest.raises(RuntimeError, match="call forward before backward"):
        layer.backward(torch.ones(1, 1, 2, 2))


def test_loss_backward_before_forward():
    with pytest.raises(RuntimeError, match="SoftmaxCrossEntropy: call forward before backward"):
        SoftmaxCrossEntropy().backward()


def test_grad_out_shape_mismatch():
    layer = Linear(5, 3)
    layer.forward(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"expected grad_out of shape \(4, 3\).*got \(4, 2\)"):
        layer.backward(torch.ones(4, 2))
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"grad_out of shape \(\)"):
        loss_fn.backward(torch.ones(2))


def test_softmax_cross_entropy_errors():
    loss_fn, logits = SoftmaxCrossEntropy(), torch.randn(3, 4)
    with pytest.raises(TypeError, match="targets of dtype torch.int64.*got torch.float32"):
        loss_fn.forward(logits, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\], got values from 0 to 4"):
        loss_fn.forward(logits, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\], got values from -1 to 2"):
        loss_fn.forward(logits, torch.tensor([-1, 2, 1]))
    with pytest.raises(ValueError, match=r"targets of shape \(3,\)"):
        loss_fn.forward(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"logits of shape \(N, K\)"):
        loss_fn.forward(torch.randn(4), torch.tensor([0]))
    with pytest.raises(TypeError, match="floating-point logits"):
        loss_fn.forward(torch.ones(3, 4, dtype=torch.int64), torch.tensor([0, 1, 2]))


# --------------------------------------------------------------------------- #
# Empty batches and max-pool padding, against torch.nn + autograd
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", range(4))
def test_conv2d_handles_an_empty_batch_like_torch(seed: int):
    ours, twin, x = _conv_case(seed)
    _copy_params(ours, twin)
    _assert_matches_torch(ours, twin, x[:0], seed)
    assert all(float(g.abs().sum()) == 0.0 for g in ours.grads.values())


@pytest.mark.parametrize("seed", range(4))
def test_maxpool2d_handles_an_empty_batch_like_torch(seed: int):
    ours, twin, x = _pool_case(seed)
    _assert_matches_torch(ours, twin, x[:0], seed)


def _padded_pool_case(seed: int) -> tuple[MaxPool2d, nn.MaxPool2d, torch.Tensor]:
    r = random.Random(seed)
    kh, kw = r.randint(1, 4), r.randint(1, 4)
    kernel = kh if r.random() < 0.4 else (kh, kw)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    stride = None if r.random() < 0.3 else (r.randint(1, 3), r.randint(1, 3))
    padding = (r.randint(0, kh // 2), r.randint(0, kw // 2))  # torch allows up to half the window
    n, c = r.choice([0, 1, 2, 3]), r.randint(1, 3)
    h, w = r.randint(max(1, kh - 2 * padding[0]), kh + 5), r.randint(max(1, kw - 2 * padding[1]), kw + 5)
    # All inputs negative: padding with zeros instead of -inf would change the maxima.
    x = -(_randn(n, c, h, w, seed=seed).abs() + 0.5)
    return MaxPool2d(kernel, stride, padding), nn.MaxPool2d(kernel, stride, padding), x


@pytest.mark.parametrize("seed", range(30))
def test_maxpool2d_with_padding_matches_torch(seed: int):
    ours, twin, x = _padded_pool_case(seed)
    _assert_matches_torch(ours, twin, x, seed)
    torch.testing.assert_close(ours.forward(x), F.max_pool2d(x, twin.kernel_size, twin.stride, twin.padding),
                               atol=0, rtol=0)


def test_padded_maxpool_cases_cover_the_grid():
    cases = [_padded_pool_case(s) for s in range(30)]
    assert any(p.padding != (0, 0) and x.shape[0] > 0 for p, _, x in cases)
    assert any(x.shape[0] == 0 for _, _, x in cases)
    assert any(p.padding[0] != p.padding[1] for p, _, _ in cases)


def test_maxpool2d_padding_is_minus_infinity_not_zero():
    x = -torch.ones(1, 1, 2, 2, dtype=F64)
    out = MaxPool2d(2, 1, 1).forward(x)
    assert out.shape == (1, 1, 3, 3) and bool((out == -1).all())


def test_maxpool2d_padding_checks_and_from_torch():
    with pytest.raises(ValueError, match=r"padding must be at most half the window"):
        MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="padding must be an int >= 0"):
        MaxPool2d(2, padding=-1)
    ours = MaxPool2d.from_torch(nn.MaxPool2d(3, 2, padding=1))
    assert (ours.kernel_size, ours.stride, ours.padding) == ((3, 3), (2, 2), (1, 1))
    assert "padding=(1, 1)" in repr(ours)


def test_gradcheck_on_padded_maxpool():
    errors = gradcheck(MaxPool2d(3, 2, 1), _randn(2, 2, 5, 6, seed=3))
    assert set(errors) == {"input"} and errors["input"] < 1e-7
