"""The from-scratch RNN of chapter 10 against torch.nn.RNN with autograd, and gradient clipping."""

from __future__ import annotations

import pytest
import torch

from dlkit.scratch.layers import gradcheck
from dlkit.scratch.rnn import RNN, clip_grad_norm


def _torch_grads(ref, x, h0, grad_out, grad_hn):
    x = x.clone().requires_grad_(True)
    h0 = h0.clone().requires_grad_(True)
    out, hn = ref(x, h0[None])
    ((out * grad_out).sum() + (hn[0] * grad_hn).sum()).backward()
    return out.detach(), hn[0].detach(), x.grad, h0.grad


@pytest.mark.parametrize("seed", range(6))
def test_matches_torch_rnn_on_random_shapes(seed):
    g = torch.Generator().manual_seed(seed)
    n, t, d, h = (int(v) for v in torch.randint(1, 9, (4,), generator=g))
    torch.manual_seed(seed)
    ref = torch.nn.RNN(d, h, batch_first=True, bias=seed % 3 != 0).double()
    layer = RNN.from_torch(ref)
    x = torch.randn(n, t, d, generator=g, dtype=torch.float64)
    h0 = torch.randn(n, h, generator=g, dtype=torch.float64)
    grad_out = torch.randn(n, t, h, generator=g, dtype=torch.float64)
    grad_hn = torch.randn(n, h, generator=g, dtype=torch.float64)
    out_ref, hn_ref, dx_ref, dh0_ref = _torch_grads(ref, x, h0, grad_out, grad_hn)
    out = layer.forward(x, h0)
    dx = layer.backward(grad_out, grad_hn)
    assert (out - out_ref).abs().max() < 1e-10
    assert (layer.h_n - hn_ref).abs().max() < 1e-10
    assert (dx - dx_ref).abs().max() < 1e-10
    assert (layer.grad_h0 - dh0_ref).abs().max() < 1e-10
    assert set(layer.grads) == set(layer.params)
    for name, grad in layer.grads.items():
        assert (grad - getattr(ref, f"{name}_l0").grad).abs().max() < 1e-10, name


def test_matches_autograd_through_the_recurrence_written_as_a_loop():
    # A second reference, independent of torch.nn.RNN's kernels (hidden size 1 included).
    g = torch.Generator().manual_seed(0)
    layer = RNN(6, 1, generator=g, dtype=torch.float64)
    x = torch.randn(5, 8, 6, generator=g, dtype=torch.float64)
    h0 = torch.randn(5, 1, generator=g, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(5, 8, 1, generator=g, dtype=torch.float64)
    p = {k: v.clone().requires_grad_(True) for k, v in layer.params.items()}
    h, outs = h0, []
    for t in range(8):
        h = torch.tanh(x[:, t] @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"])
        outs.append(h)
    (torch.stack(outs, 1) * grad_out).sum().backward()
    layer.forward(x, h0.detach())
    layer.backward(grad_out)
    assert (layer.grad_h0 - h0.grad).abs().max() < 1e-12
    for k, v in p.items():
        assert (layer.grads[k] - v.grad).abs().max() < 1e-12


def test_finite_differences_agree():
    layer = RNN(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(2, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    errors = gradcheck(layer, x)
    assert set(errors) == {"input", "weight_ih", "weight_hh", "bias_ih", "bias_hh"}
    assert max(errors.values()) < 1e-8


def test_a_wrong_backward_would_be_caught():
    # Guard for the test above: dropping the recurrence from backward must show up.
    layer = RNN(2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(1, 4, 2, dtype=torch.float64)
    layer.forward(x)
    good = layer.backward(torch.ones(1, 4, 3, dtype=torch.float64))
    W = layer.params["weight_hh"]
    layer.params["weight_hh"] = torch.zeros_like(W)  # backward now sees no recurrence
    layer.forward(x)
    bad = layer.backward(torch.ones(1, 4, 3, dtype=torch.float64))
    assert (good - bad).abs().max() > 1e-3


def test_chunks_carrying_the_state_give_the_same_forward():
    layer = RNN(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(2, 12, 3, dtype=torch.float64)
    full = layer.forward(x)
    parts, h = [], None
    for chunk in x.split(4, dim=1):
        parts.append(layer.forward(chunk, h))
        h = layer.h_n
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-14)


def test_initialisation_matches_torch_range_and_is_seeded():
    a = RNN(4, 16, generator=torch.Generator().manual_seed(3))
    b = RNN(4, 16, generator=torch.Generator().manual_seed(3))
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name])
        assert a.params[name].abs().max() <= 16 ** -0.5
    assert a.params["weight_hh"].shape == (16, 16) and a.params["weight_ih"].shape == (16, 4)


def test_bad_inputs_explain_themselves():
    layer = RNN(3, 4)
    with pytest.raises(ValueError, match=r"\(N, T, 3\)"):
        layer.forward(torch.randn(2, 3))
    with pytest.raises(ValueError, match="h0 of shape"):
        layer.forward(torch.randn(2, 5, 3), torch.zeros(3, 4))
    with pytest.raises(TypeError, match="dtype"):
        layer.forward(torch.randn(2, 5, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="forward before backward"):
        RNN(3, 4).backward(torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="one unidirectional tanh"):
        RNN.from_torch(torch.nn.RNN(3, 4, num_layers=2))


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e6])
def test_clip_grad_norm_matches_torch(max_norm):
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(s, generator=g, dtype=torch.float64) for s in ((3, 4), (5,), (2, 2, 2))]
    params = [torch.zeros_like(t, requires_grad=True) for t in grads]
    for p, t in zip(params, grads):
        p.grad = t.clone()
    ref_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    mine = [t.clone() for t in grads]
    norm = clip_grad_norm(mine, max_norm)
    assert abs(norm.item() - ref_norm.item()) < 1e-12
    for p, t in zip(params, mine):
        assert torch.allclose(p.grad, t, rtol=0, atol=1e-15)
    total = torch.linalg.vector_norm(torch.cat([t.flatten() for t in mine]))
    assert total <= max_norm * (1 + 1e-9)


def test_clip_grad_norm_rejects_nonpositive():
    with pytest.raises(ValueError, match="positive"):
        clip_grad_norm([torch.ones(2)], 0.0)
