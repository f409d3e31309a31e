"""Training, evaluating and sampling language models (chapter 10): the step and validation
:func:`dlkit.train.fit` takes, the unigram baseline, and generation with temperature and top-k.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.text.models import CausalTransformer

__all__ = ["lm_loss", "lm_step", "evaluate_lm", "unigram_loss", "sample_next", "generate"]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over all positions of ``(B, T, V)`` logits and ``(B, T)`` targets."""
    if logits.ndim != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(f"expected (B, T, V) logits and (B, T) targets, got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def lm_step(loop: Any, X: torch.Tensor, y: torch.Tensor) -> Any:
    """One language-model training step for ``dlkit.train.fit(..., step=lm_step)``.

    The textbook step of :func:`dlkit.train.supervised_step` with the ``(B, T, V)`` logits
    flattened for the cross-entropy (:func:`lm_loss`); no training accuracy is recorded.
    Used in chapter 10.
    """
    from dlkit.train import StepOutput

    with loop.autocast():
        loss = lm_loss(loop.forward(X), y)
    loop.zero_grad()
    loop.backward(loss)
    loop.optimizer_step()
    return StepOutput(loss, None)


@torch.no_grad()
def evaluate_lm(model: nn.Module, loader: Iterable, device: torch.device | str | None = None,
                precision: str = "fp32") -> dict[str, float]:
    """Mean cross-entropy (nats per token) over every target of ``loader``, and its perplexity.

    Pass it to ``dlkit.train.fit(..., validate=evaluate_lm)``. For a character model a token is
    a character, so the loss is in nats per character. Used in chapter 10.

    Args:
        model: Maps ``(B, T)`` ids to ``(B, T, V)`` logits.
        loader: ``(X, Y)`` batches, e.g. :class:`SequentialWindows` over the validation split.
        device: Where to run (default: the model's device).
        precision: ``"fp32"`` or ``"bf16"`` (autocast on the forward pass).

    Returns:
        ``{"loss": nats per token, "perplexity": exp(loss), "bits": loss / ln 2, "stderr":
        the standard error of the loss over windows}``. Windows of equal length are assumed
        (as :class:`SequentialWindows` and :class:`RandomWindows` give); ``stderr`` measures
        how much the number would move on other text like this, not over training seeds.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    windows: list[torch.Tensor] = []
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    try:
        for X, Y in loader:
            X, Y = X.to(device), Y.to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(X)
            nll = F.cross_entropy(logits.flatten(0, 1).float(), Y.flatten(), reduction="none")
            windows.append(nll.view(Y.shape).double().mean(dim=1).cpu())
    finally:
        model.train(was_training)
    if not windows:
        raise ValueError("the loader yielded no targets")
    per_window = torch.cat(windows)
    loss = per_window.mean().item()
    stderr = (per_window.std().item() / math.sqrt(len(per_window))
              if len(per_window) > 1 else math.nan)
    return {"loss": loss, "perplexity": math.exp(loss), "bits": loss / math.log(2),
            "stderr": stderr}


def unigram_loss(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int) -> float:
    """Validation cross-entropy (nats/token) of the unigram model: token frequencies of training.

    Add-one smoothing keeps unseen tokens finite. The floor every sequence model must beat;
    used in chapter 10.
    """
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1
    logp = (counts / counts.sum()).log()
    return -logp[val_ids].mean().item()


# --------------------------------------------------------------------------- #
# Sampling
# --------------------------------------------------------------------------- #
def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from ``(B, V)`` logits, softened by ``temperature``, cut to top-k.

    ``temperature == 0`` takes the most likely token (greedy). Used in chapter 10.

    Returns:
        ``(B,)`` int64 ids.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


@torch.no_grad()
def generate(model: nn.Module, prompt: torch.Tensor, num_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, seed: int = 0, use_cache: bool = True) -> torch.Tensor:
    """Continue ``prompt`` by ``num_tokens`` sampled tokens.

    For a :class:`CausalTransformer`, ``use_cache=True`` feeds only the newest token through
    the network and reads the earlier keys and values from the KV cache; ``use_cache=False``
    recomputes the whole context for every token. Both give the same tokens. Once the context
    would pass ``block_size``, both recompute the last ``block_size`` tokens for every new one
    (learnt absolute positions shift, so the cache cannot be reused). A :class:`CharRNN`
    carries its recurrent state (its own cache; ``use_cache=False`` reruns the whole prefix).
    Used in chapter 10.

    Args:
        model: A :class:`CausalTransformer` or :class:`CharRNN`.
        prompt: ``(B, T0)`` or ``(T0,)`` ids, at least one token.
        num_tokens: How many tokens to add.
        temperature: Softmax temperature (0: greedy).
        top_k: Sample only among the ``top_k`` most likely tokens.
        seed: Seed of the sampling generator.
        use_cache: Use the KV cache (Transformer) or the carried state (RNN).

    Returns:
        ``(B, T0 + num_tokens)`` ids (``(T0 + num_tokens,)`` for a 1-D prompt).
    """
    squeeze = prompt.ndim == 1
    x = prompt[None] if squeeze else prompt
    if x.shape[1] < 1:
        raise ValueError("the prompt needs at least one token")
    device = next(model.parameters()).device
    x = x.to(device)
    g = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        if isinstance(model, CausalTransformer):
            bs, cache, seq = model.block_size, None, x
            for _ in range(num_tokens):
                if use_cache and seq.shape[1] <= bs:
                    if cache is None:
                        cache = model.new_cache()
                        logits = model(seq, cache=cache)
                    else:
                        logits = model(seq[:, -1:], cache=cache)
                else:
                    logits = model(seq[:, -bs:])
                nxt = sample_next(logits[:, -1], temperature, top_k, g)[:, None]
                seq = torch.cat([seq, nxt], dim=1)
            return seq[0] if squeeze else seq
        state, seq = None, x
        logits, state = model(seq, return_state=True)
        for _ in range(num_tokens):
            nxt = sample_next(logits[:, -1], temperature, top_k, g)[:, None]
            seq = torch.cat([seq, nxt], dim=1)
            if use_cache:
                logits, state = model(nxt, state, return_state=True)
            else:
                logits = model(seq)
        return seq[0] if squeeze else seq
    finally:
        model.train(was_training)
