"""Tests for the chapter 10 exercise checks: right answers pass, typical mistakes get specific hints."""

from __future__ import annotations

import math

import torch

from dlkit.exercises.ch10 import check_causal_mask, check_perplexity, check_rnn_step_backward


def _step(x, h_prev, W_ih, W_hh, b, grad_h, tanh_derivative=True, transpose=False):
    h = torch.tanh(x @ W_ih.T + h_prev @ W_hh.T + b)
    da = grad_h * (1 - h**2) if tanh_derivative else grad_h
    grad_W_hh = h_prev.T @ da if transpose else da.T @ h_prev
    return da @ W_ih, da @ W_hh, da.T @ x, grad_W_hh, da.sum(0)


def test_rnn_step_backward_accepts_the_derivation():
    feedback = check_rnn_step_backward(_step)
    assert feedback.ok, feedback


def test_rnn_step_backward_names_the_missing_tanh_derivative():
    feedback = check_rnn_step_backward(lambda *a: _step(*a, tanh_derivative=False))
    assert not feedback.ok and "ignores the tanh" in feedback.message


def test_rnn_step_backward_catches_a_transpose_and_wrong_types():
    feedback = check_rnn_step_backward(lambda *a: _step(*a, transpose=True))
    assert not feedback.ok and "grad_W_hh" in feedback.message
    assert "five tensors" in check_rnn_step_backward(lambda *a: 1.0).message
    assert "raised ZeroDivisionError" in check_rnn_step_backward(lambda *a: 1 / 0).message


def test_causal_mask_check():
    assert check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.bool).tril()).ok
    future = check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.bool).triu())
    assert not future.ok and "future" in future.message
    strict = check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1))
    assert not strict.ok and "diagonal" in strict.message
    swapped = check_causal_mask(lambda T: ~torch.ones(T, T, dtype=torch.bool).tril())
    assert not swapped.ok and "swapped" in swapped.message
    floats = check_causal_mask(lambda T: torch.ones(T, T).tril())
    assert not floats.ok and "torch.bool" in floats.message


def test_perplexity_check():
    loss = 1.6
    assert check_perplexity(math.exp(loss), loss).ok
    assert check_perplexity(torch.tensor(loss).exp(), loss).ok
    assert "bits" in check_perplexity(2**loss, loss).message
    assert "base" in check_perplexity(10**loss, loss).message
    assert "bits per token" in check_perplexity(loss / math.log(2), loss).message
    assert "inverse" in check_perplexity(math.exp(-loss), loss).hint
    assert not check_perplexity("4.9", loss).ok
    assert not check_perplexity(5.5, loss).ok
