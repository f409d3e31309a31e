"""Exercise checks of chapter 10 (sequence models)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["check_rnn_step_backward", "check_causal_mask", "check_perplexity"]

_GRAD_NAMES = ("grad_x", "grad_h_prev", "grad_W_ih", "grad_W_hh", "grad_b")


def _step_case(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    n, d, h = 3, 4, 5
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    h_prev = torch.randn(n, h, generator=g, dtype=torch.float64)
    W_ih = 0.5 * torch.randn(h, d, generator=g, dtype=torch.float64)
    W_hh = 0.5 * torch.randn(h, h, generator=g, dtype=torch.float64)
    b = 0.1 * torch.randn(h, generator=g, dtype=torch.float64)
    grad_h = torch.randn(n, h, generator=g, dtype=torch.float64)
    return x, h_prev, W_ih, W_hh, b, grad_h


def check_rnn_step_backward(fn: Callable[..., object]) -> Feedback:
    """Check one step of backpropagation through an Elman cell.

    The cell is ``h = tanh(x W_ih^T + h_prev W_hh^T + b)`` on a batch of N rows; ``fn(x, h_prev,
    W_ih, W_hh, b, grad_h)`` must return ``(grad_x, grad_h_prev, grad_W_ih, grad_W_hh, grad_b)``
    for the upstream gradient ``grad_h = dL/dh``. The reference is autograd. Used in chapter 10.

    Args:
        fn: The learner's function.

    Returns:
        The :class:`Feedback`.
    """
    for seed in (0, 1):
        args = _step_case(seed)
        x, h_prev, W_ih, W_hh, b, grad_h = args
        try:
            got = fn(*(a.clone() for a in args))
        except Exception as err:  # noqa: BLE001 (the learner's code may fail in any way)
            return _wrong(f"it raised {type(err).__name__}: {err}",
                          "recompute h from the inputs, then carry grad_h back through tanh before "
                          "the two matrix products.")
        if not (isinstance(got, (tuple, list)) and len(got) == 5
                and all(isinstance(t, torch.Tensor) for t in got)):
            return _wrong("expected a tuple of five tensors (grad_x, grad_h_prev, grad_W_ih, "
                          "grad_W_hh, grad_b).")
        leaves = [t.clone().requires_grad_(True) for t in (x, h_prev, W_ih, W_hh, b)]
        h = torch.tanh(leaves[0] @ leaves[2].T + leaves[1] @ leaves[3].T + leaves[4])
        (h * grad_h).sum().backward()
        truth = [t.grad for t in leaves]
        da_no_tanh = grad_h  # the most common slip: forgetting tanh's derivative
        for name, mine, ref in zip(_GRAD_NAMES, got, truth):
            assert ref is not None
            if mine.shape != ref.shape:
                return _wrong(f"{name} has shape {tuple(mine.shape)}, expected {tuple(ref.shape)}.",
                              "a gradient has the shape of the tensor it is the gradient of; "
                              "check which side of a product gets the transpose.")
            if torch.allclose(mine, ref, rtol=1e-8, atol=1e-10):
                continue
            lin = {"grad_x": da_no_tanh @ W_ih, "grad_h_prev": da_no_tanh @ W_hh,
                   "grad_W_ih": da_no_tanh.T @ x, "grad_W_hh": da_no_tanh.T @ h_prev,
                   "grad_b": da_no_tanh.sum(0)}[name]
            if torch.allclose(mine, lin, rtol=1e-8, atol=1e-10):
                return _wrong(f"{name} ignores the tanh.",
                              "h = tanh(a): the gradient that reaches a is grad_h times tanh's "
                              "derivative at a, which can be written with h alone.")
            return _wrong(f"{name} differs from autograd's (largest difference "
                          f"{(mine - ref).abs().max().item():.3g}).",
                          "after tanh, a = x @ W_ih.T + h_prev @ W_hh.T + b is two matrix "
                          "products and a sum: each input's gradient pairs the gradient of a with "
                          "the other factor of its product, and the bias is shared by every row.")
    return _right("all five gradients match autograd: the step's share of backpropagation "
                  "through time.")


def check_causal_mask(fn: Callable[[int], object]) -> Feedback:
    """Check ``fn(T)``: a ``(T, T)`` boolean mask, ``True`` where query ``i`` may see key ``j``.

    A causal language model may attend to the same and earlier positions (``j <= i``). Used in
    chapter 10.

    Args:
        fn: The learner's function of the sequence length.

    Returns:
        The :class:`Feedback`.
    """
    for T in (4, 7, 1):
        try:
            got = fn(T)
        except Exception as err:  # noqa: BLE001
            return _wrong(f"fn({T}) raised {type(err).__name__}: {err}",
                          "torch.ones(T, T, dtype=torch.bool).tril() is one way.")
        if not isinstance(got, torch.Tensor) or got.shape != (T, T):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return _wrong(f"fn({T}) returned {shape}, expected a ({T}, {T}) tensor.")
        if got.dtype != torch.bool:
            return _wrong(f"fn({T}) has dtype {got.dtype}, expected torch.bool (True = allowed).",
                          "compare, e.g. j <= i, or call .bool().")
        truth = torch.ones(T, T, dtype=torch.bool).tril()
        if torch.equal(got, truth):
            continue
        if torch.equal(got, truth.T):
            return _wrong("it lets each position see the future, not the past (the transpose).",
                          "row i is the query: allow columns j <= i (tril, not triu).")
        if torch.equal(got, truth.tril(-1)):
            return _wrong("the diagonal is masked: a position cannot see itself, and the first "
                          "one sees nothing (its softmax would be over no keys).",
                          "use tril() with diagonal 0.")
        if torch.equal(got, ~truth):
            return _wrong("True and False are swapped: True must mean 'may attend'.")
        return _wrong(f"for T={T} the mask differs from j <= i.")
    return _right("position i attends to positions 0..i and never to the future.")


def check_perplexity(answer: object, loss: float) -> Feedback:
    """Check the perplexity that belongs to a cross-entropy ``loss`` in nats per token.

    Perplexity is ``exp(loss)``: the number of equally likely tokens that would leave the
    model as uncertain as it is. Used in chapter 10.

    Args:
        answer: The learner's number.
        loss: Mean cross-entropy in nats.

    Returns:
        The :class:`Feedback`.
    """
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real) \
            or not math.isfinite(answer):
        return _wrong(f"expected a number, got {answer!r}.",
                      "perplexity undoes the logarithm inside the cross-entropy.")
    value, truth = float(answer), math.exp(loss)
    if math.isclose(value, truth, rel_tol=1e-6):
        return _right(f"exp({loss:.4f}) = {truth:.3f}: the model is as unsure as a uniform choice "
                      f"among {truth:.1f} tokens.")
    if math.isclose(value, 2 ** loss, rel_tol=1e-6):
        return _wrong("2**loss treats the loss as bits, but cross-entropy with the natural log "
                      "is in nats.", "undo the logarithm the loss was measured with.")
    if math.isclose(value, 10 ** loss, rel_tol=1e-6):
        return _wrong("10**loss uses the wrong base.",
                      "the loss is in nats: which logarithm measures nats?")
    if math.isclose(value, loss / math.log(2), rel_tol=1e-6):
        return _wrong("that is the loss in bits per token, not the perplexity.",
                      "bits are a logarithm too: perplexity undoes it.")
    if math.isclose(value, math.exp(-loss), rel_tol=1e-6):
        return _wrong("exp(-loss) is the geometric-mean probability of the right token.",
                      "perplexity is its inverse.")
    return _wrong(f"{value:g} is not the perplexity of a loss of {loss:.4f} nats.",
                  "perplexity undoes the logarithm inside the cross-entropy.")
