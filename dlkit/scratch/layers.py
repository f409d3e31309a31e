"""Neural-network layers written from scratch, each with a hand-derived backward pass.

Chapter 05 (backpropagation) derives every layer here, checks it with :func:`gradcheck` and
against :mod:`torch.nn` with autograd, and trains a network built from them. Every layer has the
same small interface:

* ``forward(x)`` computes the output and keeps what the backward pass will need;
* ``backward(grad_out)`` takes dL/d(output), returns dL/d(input) and stores dL/d(parameter) in
  ``grads``;
* ``params`` and ``grads`` are dicts keyed ``"weight"``/``"bias"`` whose tensors have the shapes
  of the :mod:`torch.nn` twin, so weights copy across either way.

The arithmetic is plain tensor math under ``torch.no_grad()``: autograd is what these layers
replace, so it plays no part (the tests compare against it instead).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Layer",
    "Linear",
    "ReLU",
    "Sigmoid",
    "Conv2d",
    "MaxPool2d",
    "Flatten",
    "SoftmaxCrossEntropy",
    "Sequential",
    "numerical_grad",
    "gradcheck",
]

Pair = int | tuple[int, int]  # a size given once for both dimensions, or as (height, width)


def _pair(value: Pair, name: str, minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= minimum for v in pair):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def _check_shape(who: str, x: torch.Tensor, expected: tuple[int | str, ...]) -> None:
    """Raise unless ``x`` fits ``expected``, where a letter (``"N"``, ``"H"``) fits any size."""
    if x.ndim == len(expected) and all(
        isinstance(e, str) or e == s for e, s in zip(expected, x.shape)
    ):
        return
    # The batch size is never the problem, so show it as N, like the expectation does.
    if x.ndim == len(expected):
        got = _fmt(("N", *x.shape[1:]))
    else:
        got = f"a {x.ndim}-D tensor {tuple(x.shape)}"
    raise ValueError(f"{who} expected input of shape {_fmt(expected)}, got {got}")


def _fmt(shape: tuple[int | str, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


class Layer:
    """Base class: ``forward``/``backward`` and the ``params``/``grads`` stores.

    ``params`` is the live store: ``forward`` reads the weights from it on every call, so
    ``layer.params["weight"] = W`` changes the layer. ``backward`` *overwrites* ``grads`` (unlike
    ``.grad`` in PyTorch it does not accumulate), so there is nothing to zero between steps.
    Layers without parameters have empty dicts. Used in chapter 05 (backpropagation).
    """

    def __init__(self) -> None:
        self.params: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._cache: Any = None
        self._out_shape: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, *args: Any) -> torch.Tensor:
        return self.forward(*args)

    def parameters(self) -> Iterator[tuple[Layer, str]]:
        """Yield ``(layer, name)`` per parameter; an optimiser updates ``layer.params[name]``."""
        for name in self.params:
            yield self, name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._config()})"

    def _config(self) -> str:
        return ""

    def _init_params(
        self,
        weight_shape: tuple[int, ...],
        bias: bool,
        generator: torch.Generator | None,
        dtype: torch.dtype,
    ) -> None:
        fan_in = math.prod(weight_shape[1:])
        # torch.nn's kaiming_uniform_(a=sqrt(5)) computed exactly as torch does, so the same seed
        # gives bit-identical weights. Both bounds come to 1/sqrt(fan_in).
        gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
        bound = math.sqrt(3.0) * gain / math.sqrt(fan_in)
        weight = torch.empty(weight_shape, dtype=dtype).uniform_(-bound, bound, generator=generator)
        self.params["weight"] = weight
        if bias:
            bound = 1 / math.sqrt(fan_in)
            self.params["bias"] = torch.empty(weight_shape[0], dtype=dtype).uniform_(
                -bound, bound, generator=generator
            )
        self._shapes = {name: tuple(p.shape) for name, p in self.params.items()}

    def _copy_params(self, module: nn.Module) -> Layer:
        self.params = {name: p.detach().clone() for name, p in module.named_parameters()}
        return self

    def _param(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Read a parameter from the live store, checking that it still fits the layer and ``x``."""
        p, who = self.params[name], type(self).__name__
        if tuple(p.shape) != self._shapes[name]:
            raise ValueError(
                f"{who}.params[{name!r}] must have shape {self._shapes[name]}, got {tuple(p.shape)}"
            )
        if p.dtype != x.dtype:
            raise TypeError(
                f"{who} got input of dtype {x.dtype} but its {name} has dtype {p.dtype}; "
                f"convert one to match, e.g. x.to({p.dtype})"
            )
        return p

    def _save(self, out: torch.Tensor, *cache: Any) -> torch.Tensor:
        self._cache, self._out_shape = cache, tuple(out.shape)
        return out

    def _saved(self, grad_out: torch.Tensor) -> Any:
        who = type(self).__name__
        if self._cache is None:
            raise RuntimeError(f"{who}: call forward before backward")
        if tuple(grad_out.shape) != self._out_shape:
            raise ValueError(
                f"{who}.backward expected grad_out of shape {self._out_shape} (the forward "
                f"output's), got {tuple(grad_out.shape)}"
            )
        return self._cache


class Linear(Layer):
    """Fully connected layer ``y = x W^T + b``, the twin of :class:`torch.nn.Linear`.

    Used in chapter 05 (backpropagation).

    Args:
        in_features: Size of each input row.
        out_features: Size of each output row.
        bias: Whether to add a learnt bias.
        generator: Random generator for the initial weights (the global one if ``None``).
        dtype: Dtype of the parameters; inputs must match it.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"features must be >= 1, got {in_features} and {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self._init_params((out_features, in_features), bias, generator, dtype)

    def _config(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={'bias' in self.params}"

    @classmethod
    def from_torch(cls, module: nn.Linear) -> Linear:
        """Return a :class:`Linear` holding a copy of ``module``'s weights."""
        bias = module.bias is not None
        layer = cls(module.in_features, module.out_features, bias, dtype=module.weight.dtype)
        return layer._copy_params(module)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_shape("Linear", x, ("N", self.in_features))
        W = self._param("weight", x)
        y = x @ W.T
        if "bias" in self.params:
            y = y + self._param("bias", x)
        return self._save(y, x, W)

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        x, W = self._saved(grad_out)
        # y_nj = sum_i x_ni W_ji + b_j: each gradient is one matrix product (a sum over the batch).
        self.grads = {"weight": grad_out.T @ x}
        if "bias" in self.params:
            self.grads["bias"] = grad_out.sum(0)
        return grad_out @ W


class ReLU(Layer):
    """``max(x, 0)`` elementwise; the gradient passes where ``x > 0``. Used in chapter 05."""

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._save(x.clamp(min=0), x > 0)

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        (mask,) = self._saved(grad_out)
        return torch.where(mask, grad_out, 0.0)  # at exactly 0 the gradient is 0, as in PyTorch


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))`` elementwise, with derivative ``s (1 - s)``. Used in chapter 05."""

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 1 / (1 + torch.exp(-x))  # exp(-x) overflows to inf for x << 0, and 1/inf = 0 is right
        return self._save(s, s)

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        (s,) = self._saved(grad_out)
        return grad_out * s * (1 - s)


class Conv2d(Layer):
    """2-D convolution (a cross-correlation, as in :class:`torch.nn.Conv2d`) via im2col.

    ``unfold`` copies every receptive field into a column, so the convolution is one matrix
    product with the weight reshaped to ``(out_channels, in_channels * kH * kW)``. The backward
    pass is two more products on the same columns, and ``fold`` (col2im) adds each column of
    input gradients back onto the pixels it came from. That scatter-add is the sum the chapter
    derives by hand: the input gradient is the full correlation of ``grad_out`` (with zeros
    between entries when ``stride > 1``) with the kernel flipped 180 degrees and its in- and
    out-channels swapped. Used in chapter 05 (backpropagation).

    Args:
        in_channels: Channels ``C`` of the ``(N, C, H, W)`` input.
        out_channels: Number of filters.
        kernel_size: ``k`` or ``(kH, kW)``.
        stride: Step between receptive fields, an int or a pair.
        padding: Zeros added on each side, an int or a pair.
        bias: Whether to add a learnt bias per output channel.
        generator: Random generator for the initial weights (the global one if ``None``).
        dtype: Dtype of the parameters; inputs must match it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Pair = 0,
        bias: bool = True,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got {in_channels} and {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride, self.padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
        shape = (out_channels, in_channels, *self.kernel_size)
        self._init_params(shape, bias, generator, dtype)

    def _config(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={'bias' in self.params}"
        )

    @classmethod
    def from_torch(cls, module: nn.Conv2d) -> Conv2d:
        """Return a :class:`Conv2d` holding a copy of ``module``'s weights.

        Raises:
            ValueError: If ``module`` uses groups, dilation, or padding that is not zeros given
                as numbers.
        """
        m = module
        plain = m.groups == 1 and m.dilation == (1, 1) and m.padding_mode == "zeros"
        if not plain or isinstance(m.padding, str):
            raise ValueError(f"Conv2d.from_torch needs groups=1, dilation=1, int padding: {m}")
        sizes = (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
        layer = cls(*sizes, bias=m.bias is not None, dtype=m.weight.dtype)  # type: ignore[arg-type]
        return layer._copy_params(m)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_shape("Conv2d", x, ("N", self.in_channels, "H", "W"))
        n, _, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if h + 2 * ph < kh or w + 2 * pw < kw:
            raise ValueError(
                f"Conv2d input of size {h}x{w} (padding {self.padding}) is smaller than the "
                f"kernel {kh}x{kw}"
            )
        W = self._param("weight", x)
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        y = W.reshape(self.out_channels, -1) @ cols  # (N, C_out, L): one column per position
        if "bias" in self.params:
            y = y + self._param("bias", x)[:, None]
        out_hw = ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        return self._save(y.reshape(n, self.out_channels, *out_hw), cols, W, (h, w))

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        cols, W, hw = self._saved(grad_out)
        # (N, C_out, L), with L spelt out: reshape cannot infer a -1 when N is 0.
        g = grad_out.reshape(grad_out.shape[0], self.out_channels, cols.shape[2])
        W2 = W.reshape(self.out_channels, -1)
        # y_n = W2 @ cols_n for every sample n, so dW2 = sum_n g_n cols_n^T and dcols_n = W2^T g_n.
        self.grads = {"weight": (g @ cols.transpose(1, 2)).sum(0).reshape(W.shape)}
        if "bias" in self.params:
            self.grads["bias"] = grad_out.sum((0, 2, 3))
        # A pixel inside several receptive fields gets a gradient from each: fold sums them.
        return F.fold(W2.T @ g, hw, self.kernel_size, padding=self.padding, stride=self.stride)


class MaxPool2d(Layer):
    """Max over each ``kernel_size`` window, like :class:`torch.nn.MaxPool2d`.

    ``padding`` adds that many ``-inf`` on each side, as PyTorch does: a padded position never
    wins a window's maximum, so padding only lets windows hang over the border (zeros would
    win over negative inputs). The backward pass routes each window's gradient to the position
    of its maximum (the first one on ties, as PyTorch does), adds up where overlapping windows
    pick the same pixel, and drops the padding again. Used in chapter 05 (backpropagation).

    Args:
        kernel_size: ``k`` or ``(kH, kW)``.
        stride: Step between windows; ``None`` means ``kernel_size`` (windows do not overlap).
        padding: ``-inf`` added on each side, an int or a pair; at most half the window, as
            PyTorch requires (so every window holds at least one real pixel).

    Raises:
        ValueError: If a size is not a positive int (``padding``: non-negative) or pair, or
            the padding is more than half the window.
    """

    def __init__(self, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(
                f"padding must be at most half the window (kernel_size {self.kernel_size}), "
                f"got {self.padding}"
            )

    def _config(self) -> str:
        padding = f", padding={self.padding}" if any(self.padding) else ""
        return f"kernel_size={self.kernel_size}, stride={self.stride}{padding}"

    @classmethod
    def from_torch(cls, module: nn.MaxPool2d) -> MaxPool2d:
        """Return the twin of ``module``, which must have no dilation or ceil_mode."""
        if module.ceil_mode or _pair(module.dilation, "dilation", 1) != (1, 1):
            raise ValueError(f"MaxPool2d.from_torch needs no dilation/ceil_mode: {module}")
        return cls(module.kernel_size, module.stride, module.padding)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_shape("MaxPool2d", x, ("N", "C", "H", "W"))
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        hp, wp = h + 2 * ph, w + 2 * pw
        if hp < kh or wp < kw:
            padded = f" (padding {self.padding})" if ph or pw else ""
            raise ValueError(f"MaxPool2d input {h}x{w}{padded} is smaller than its window {kh}x{kw}")
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph), value=float("-inf"))
        # Pool every channel alike: move channels into the batch, one window per column.
        cols = F.unfold(x.reshape(n * c, 1, hp, wp), self.kernel_size, stride=self.stride)
        values, argmax = cols.max(dim=1)  # the first maximum on ties
        out = values.reshape(n, c, (hp - kh) // sh + 1, (wp - kw) // sw + 1)
        return self._save(out, argmax, cols.shape, (n, c, h, w))

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        argmax, cols_shape, (n, c, h, w) = self._saved(grad_out)
        (ph, pw) = self.padding
        dcols = grad_out.new_zeros(cols_shape)
        # (N*C, 1, L), with L spelt out: reshape cannot infer a -1 when N is 0.
        dcols.scatter_(1, argmax[:, None], grad_out.reshape(cols_shape[0], 1, cols_shape[2]))
        padded = F.fold(dcols, (h + 2 * ph, w + 2 * pw), self.kernel_size, stride=self.stride)
        return padded.reshape(n, c, h + 2 * ph, w + 2 * pw)[:, :, ph : ph + h, pw : pw + w].contiguous()


class Flatten(Layer):
    """Reshape ``(N, ...)`` to ``(N, -1)``; backward reshapes back. Used in chapter 05."""

    @classmethod
    def from_torch(cls, module: nn.Flatten) -> Flatten:
        """Return a :class:`Flatten`; ``module`` must flatten from dim 1 to the end."""
        if (module.start_dim, module.end_dim) != (1, -1):
            raise ValueError(f"Flatten.from_torch needs start_dim=1, end_dim=-1: {module}")
        return cls()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._save(x.reshape(x.shape[0], -1), x.shape)

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        (shape,) = self._saved(grad_out)
        return grad_out.reshape(shape)


class SoftmaxCrossEntropy(Layer):
    """Mean cross-entropy of softmax(logits) against class indices, like ``F.cross_entropy``.

    Softmax and the log are fused because together they have the simple gradient
    ``(softmax(logits) - onehot(targets)) / N``, and because log-sum-exp after subtracting each
    row's maximum cannot overflow, even for logits of 1e4. Used in chapter 05.
    """

    @torch.no_grad()
    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Return the mean loss over the batch as a 0-d tensor.

        Args:
            logits: ``(N, K)`` floating-point scores.
            targets: ``(N,)`` int64 class indices in ``[0, K - 1]``.

        Raises:
            ValueError: On wrong shapes or targets out of range.
            TypeError: If ``targets`` is not int64 or ``logits`` not floating point.
        """
        if logits.ndim != 2:
            raise ValueError(f"expected logits of shape (N, K), got {tuple(logits.shape)}")
        if not logits.is_floating_point():
            raise TypeError(f"expected floating-point logits, got {logits.dtype}")
        if targets.dtype != torch.int64:
            raise TypeError(
                "SoftmaxCrossEntropy expected targets of dtype torch.int64 (class indices), got "
                f"{targets.dtype}; use targets.long()"
            )
        n, k = logits.shape
        if targets.shape != (n,):
            got = tuple(targets.shape)
            raise ValueError(f"expected targets of shape ({n},) like the logits, got {got}")
        if n and (targets.min() < 0 or targets.max() >= k):
            raise ValueError(
                f"targets must be class indices in [0, {k - 1}], got values from "
                f"{int(targets.min())} to {int(targets.max())}"
            )
        shifted = logits - logits.max(dim=1, keepdim=True).values  # every exp is now <= 1
        log_probs = shifted - shifted.exp().sum(dim=1, keepdim=True).log()
        loss = -log_probs[torch.arange(n), targets].mean()
        return self._save(loss, log_probs.exp(), targets)

    @torch.no_grad()
    def backward(self, grad_out: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Return d loss / d logits, times ``grad_out`` (1 by default: the loss ends the chain)."""
        probs, targets = self._saved(torch.as_tensor(grad_out))
        grad = probs.clone()
        grad[torch.arange(len(targets)), targets] -= 1
        return grad * (grad_out / len(targets))


class Sequential(Layer):
    """Layers applied in order; ``backward`` runs them in reverse. Used in chapter 05.

    A :class:`Sequential` keeps no parameters of its own (its ``params`` is empty): iterate
    :meth:`parameters` to reach those of its ``layers``.
    """

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        self.layers = list(layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def parameters(self) -> Iterator[tuple[Layer, str]]:
        for layer in self.layers:
            yield from layer.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    @classmethod
    def from_torch(cls, module: nn.Sequential) -> Sequential:
        """Return the from-scratch twin of ``module``, with copies of its weights.

        Raises:
            TypeError: If ``module`` holds a layer without a twin here (e.g. Dropout).
        """
        twins: dict[type[nn.Module], Callable[[Any], Layer]] = {
            nn.Linear: Linear.from_torch,
            nn.Conv2d: Conv2d.from_torch,
            nn.MaxPool2d: MaxPool2d.from_torch,
            nn.Flatten: Flatten.from_torch,
            nn.ReLU: lambda _: ReLU(),
            nn.Sigmoid: lambda _: Sigmoid(),
            nn.Sequential: Sequential.from_torch,
        }
        for child in module:
            if type(child) not in twins:
                known = ", ".join(t.__name__ for t in twins)
                raise TypeError(f"cannot convert {type(child).__name__}; known layers: {known}")
        return cls(*(twins[type(child)](child) for child in module))


def _require_float64(x: torch.Tensor, what: str) -> None:
    if x.dtype != torch.float64:
        raise TypeError(
            f"{what}: finite differences need float64 (in float32, rounding error swamps the "
            f"difference quotient), got {x.dtype}; use .double()"
        )


def numerical_grad(
    f: Callable[[torch.Tensor], torch.Tensor | float], x: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Central finite-difference gradient ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``.

    Used in chapter 05 to check any hand-derived gradient. The error is ``O(eps^2)`` from the
    Taylor series plus ``O(1e-16 / eps)`` from rounding, about ``1e-10`` at the default ``eps``.

    Args:
        f: Scalar function of one tensor, returning a float or a one-element tensor. It is
            called with a perturbed copy of ``x``, never with ``x`` itself.
        x: The point, in float64.
        eps: Step size.

    Returns:
        The gradient, shaped like ``x``.

    Raises:
        TypeError: If ``x`` is not float64.
        ValueError: If ``f`` does not return a scalar.
    """
    _require_float64(x, "numerical_grad")
    point = x.detach().clone(memory_format=torch.contiguous_format)
    flat, grad = point.view(-1), torch.zeros(x.numel(), dtype=torch.float64)

    def value() -> float:
        out = f(point)
        if isinstance(out, torch.Tensor) and out.numel() != 1:
            raise ValueError(f"numerical_grad needs a scalar f, got shape {tuple(out.shape)}")
        return float(out)

    with torch.no_grad():
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + eps
            up = value()
            flat[i] = old - eps
            down = value()
            flat[i] = old
            grad[i] = (up - down) / (2 * eps)
    return grad.view(x.shape)


def _named_params(layer: Layer, prefix: str = "") -> Iterator[tuple[str, Layer, str]]:
    """Yield ``(label, owner, name)``: label ``"weight"``, or ``"0.weight"`` in a Sequential."""
    if isinstance(layer, Sequential):
        for i, sub in enumerate(layer.layers):
            yield from _named_params(sub, f"{prefix}{i}.")
    else:
        for name in layer.params:
            yield prefix + name, layer, name


def gradcheck(
    layer: Layer, x: torch.Tensor, *forward_args: Any, seed: int = 0, eps: float = 1e-6
) -> dict[str, float]:
    """Compare a layer's ``backward`` with finite differences; return the max abs errors.

    A random ``g`` turns the layer into the scalar function ``sum(g * forward(x))``, whose
    gradient is what ``backward(g)`` claims to compute, for the input and for every parameter.
    Errors around ``1e-9`` or below mean the backward pass is right; a wrong one is typically
    off by ``0.1`` or more. Works for a :class:`Sequential` (keys like ``"0.weight"``) and for
    :class:`SoftmaxCrossEntropy` (pass the targets after ``x``). Used in chapter 05.

    Args:
        layer: The layer to check; its parameters must be float64.
        x: Input, float64. Keep it small: each entry costs two forward passes.
        *forward_args: Extra arguments for ``forward`` (the targets of a loss).
        seed: Seed for the random ``g``.
        eps: Finite-difference step.

    Returns:
        ``{"input": error, "weight": error, ...}``: the largest absolute difference between the
        analytic and the numerical gradient, per tensor. A wrong gradient raises nothing.

    Raises:
        TypeError: If ``x`` or a parameter is not float64.
    """
    _require_float64(x, "gradcheck")
    named = list(_named_params(layer))
    for label, owner, name in named:
        _require_float64(owner.params[name], f"gradcheck (parameter {label})")
    out = layer.forward(x, *forward_args)
    g = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    analytic = {"input": layer.backward(g)}
    analytic |= {label: owner.grads[name].clone() for label, owner, name in named}

    def objective(z: torch.Tensor) -> torch.Tensor:
        return (g * layer.forward(z, *forward_args)).sum()

    numeric = {"input": numerical_grad(objective, x, eps)}
    for label, owner, name in named:
        original = owner.params[name]

        def through_param(w: torch.Tensor, owner: Layer = owner, name: str = name) -> torch.Tensor:
            owner.params[name] = w  # the live store: forward picks up the perturbed copy
            return objective(x)

        try:
            numeric[label] = numerical_grad(through_param, original, eps)
        finally:
            owner.params[name] = original
    layer.forward(x, *forward_args)  # leave the layer as a plain forward(x) would
    return {k: (analytic[k] - numeric[k]).abs().max().item() for k in analytic}
