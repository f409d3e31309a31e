"""A recurrent layer from scratch: forward over time and backpropagation through time.

Chapter 10 (sequence models) derives the Elman network (Elman, 1990)

    h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),    t = 1..T,

and its backward pass, then checks both against :class:`torch.nn.RNN` with autograd. The layer
keeps the contract of chapter 05's layers (:mod:`dlkit.scratch.layers`): ``forward`` stores what
``backward`` needs, ``backward`` returns dL/d(input) and overwrites ``grads``, and ``params``
hold tensors with the shapes of the :mod:`torch.nn` twin (``weight_ih``, ``weight_hh``,
``bias_ih``, ``bias_hh``: torch's ``weight_ih_l0`` ... without the layer suffix).
:func:`clip_grad_norm` is gradient clipping by the global norm (Pascanu et al., 2013), the twin
of :func:`torch.nn.utils.clip_grad_norm_`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from dlkit.scratch.layers import Layer, _check_shape

__all__ = ["RNN", "clip_grad_norm"]


class RNN(Layer):
    """One tanh recurrent layer over ``(N, T, input_size)`` inputs (``batch_first`` layout).

    ``forward(x, h0=None)`` returns all hidden states ``(N, T, hidden_size)`` and keeps the last
    one in ``h_n``. ``backward(grad_out, grad_hn=None)`` runs backpropagation through time:
    the gradient of the loss w.r.t. ``h_t`` is what reaches ``h_t`` directly (``grad_out[:, t]``)
    plus what flows back from ``h_{t+1}``; it returns dL/dx and stores dL/dh0 in ``grad_h0``.
    Truncated BPTT is this layer run on consecutive chunks, each starting from the previous
    chunk's ``h_n`` treated as a constant (its ``grad_h0`` is dropped). Used in chapter 10.

    Args:
        input_size: Features per time step.
        hidden_size: Width of the hidden state.
        bias: Whether to add the two biases.
        generator: Random generator for the initial weights (the global one if ``None``).
        dtype: Dtype of the parameters; inputs must match it.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"sizes must be >= 1, got {input_size} and {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        # torch.nn.RNN draws every parameter from U(-1/sqrt(H), 1/sqrt(H)).
        bound = 1 / math.sqrt(hidden_size)
        shapes = {"weight_ih": (hidden_size, input_size), "weight_hh": (hidden_size, hidden_size)}
        if bias:
            shapes |= {"bias_ih": (hidden_size,), "bias_hh": (hidden_size,)}
        for name, shape in shapes.items():
            self.params[name] = torch.empty(shape, dtype=dtype).uniform_(
                -bound, bound, generator=generator)
        self._shapes = dict(shapes)
        self.h_n: torch.Tensor | None = None
        self.grad_h0: torch.Tensor | None = None

    def _config(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={'bias_ih' in self.params}"

    @classmethod
    def from_torch(cls, module: nn.RNN) -> RNN:
        """Return an :class:`RNN` holding a copy of a one-layer tanh ``module``'s weights.

        Raises:
            ValueError: If ``module`` is not a single-layer, unidirectional tanh RNN.
        """
        m = module
        if m.num_layers != 1 or m.bidirectional or m.nonlinearity != "tanh" or m.proj_size:
            raise ValueError(f"RNN.from_torch needs one unidirectional tanh layer, got {m}")
        layer = cls(m.input_size, m.hidden_size, m.bias, dtype=m.weight_ih_l0.dtype)
        layer.params = {name: getattr(m, f"{name}_l0").detach().clone() for name in layer.params}
        return layer

    @torch.no_grad()
    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        _check_shape("RNN", x, ("N", "T", self.input_size))
        n, steps, _ = x.shape
        W_ih, W_hh = self._param("weight_ih", x), self._param("weight_hh", x)
        if h0 is None:
            h0 = x.new_zeros(n, self.hidden_size)
        elif tuple(h0.shape) != (n, self.hidden_size):
            raise ValueError(f"RNN expected h0 of shape ({n}, {self.hidden_size}), "
                             f"got {tuple(h0.shape)}")
        # The input part of every step at once: one matrix product over all N*T rows.
        a_in = x @ W_ih.T
        if "bias_ih" in self.params:
            a_in = a_in + self._param("bias_ih", x) + self._param("bias_hh", x)
        hs, h = [], h0
        for t in range(steps):
            h = torch.tanh(a_in[:, t] + h @ W_hh.T)
            hs.append(h)
        out = torch.stack(hs, dim=1) if hs else x.new_zeros(n, 0, self.hidden_size)
        self.h_n = h
        return self._save(out, x, h0, out, W_ih, W_hh)

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor, grad_hn: torch.Tensor | None = None) -> torch.Tensor:
        x, h0, hs, W_ih, W_hh = self._saved(grad_out)
        steps = x.shape[1]
        dh = torch.zeros_like(h0) if grad_hn is None else grad_hn.clone()
        da_all = torch.empty_like(hs)
        for t in range(steps - 1, -1, -1):
            dh = dh + grad_out[:, t]  # what reaches h_t directly, plus from h_{t+1}
            da = dh * (1 - hs[:, t] ** 2)  # through tanh: d tanh(a)/da = 1 - tanh(a)^2
            da_all[:, t] = da
            dh = da @ W_hh  # to h_{t-1}
        self.grad_h0 = dh
        h_prev = torch.cat([h0[:, None], hs[:, :-1]], dim=1)  # h_{t-1} for every t
        # Each weight is shared by all steps: its gradient is a sum over time (and the batch).
        self.grads = {"weight_ih": torch.einsum("nth,nti->hi", da_all, x),
                      "weight_hh": torch.einsum("nth,ntj->hj", da_all, h_prev)}
        if "bias_ih" in self.params:
            db = da_all.sum(dim=(0, 1))
            self.grads |= {"bias_ih": db, "bias_hh": db.clone()}
        return da_all @ W_ih


def clip_grad_norm(grads: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Rescale gradients in place so that their global L2 norm is at most ``max_norm``.

    The norm is taken over all tensors together, ``sqrt(sum_i ||g_i||^2)``; if it exceeds
    ``max_norm`` every tensor is multiplied by ``max_norm / (norm + 1e-6)``, so the direction of
    the step is kept and only its length is capped (Pascanu et al., 2013). The same arithmetic
    as :func:`torch.nn.utils.clip_grad_norm_`. Used in chapter 10.

    Args:
        grads: The gradient tensors (modified in place).
        max_norm: The largest allowed norm (positive).

    Returns:
        The total norm before clipping.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm!r}")
    grads = list(grads)
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale)
    return total
