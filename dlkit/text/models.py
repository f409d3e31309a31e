"""Character language models of chapter 10: :class:`CharRNN` and :class:`CausalTransformer`
(pre-norm decoder blocks with a KV cache), and attention written from its formula.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CharRNN", "CausalTransformer", "attention", "causal_mask"]


class CharRNN(nn.Module):
    """Embedding -> recurrent layers (``"rnn"``, ``"lstm"`` or ``"gru"``) -> linear read-out.

    Used in chapter 10. ``forward(x)`` takes ``(B, T)`` ids and returns ``(B, T, V)`` logits
    from a zero initial state; ``forward(x, state)`` continues from ``state`` and
    ``forward(x, state, return_state=True)`` also returns the final state (how generation
    carries the context: the recurrent state *is* the cache).

    Args:
        vocab_size: Number of token ids ``V``.
        hidden_size: Width of the recurrent state.
        cell: ``"rnn"`` (Elman, tanh), ``"lstm"`` or ``"gru"``.
        num_layers: Stacked recurrent layers.
        embed_size: Width of the token embedding (default ``hidden_size``).
        dropout: Dropout between layers and before the read-out.
    """

    CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

    def __init__(self, vocab_size: int, hidden_size: int = 256, cell: str = "lstm",
                 num_layers: int = 1, embed_size: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if cell not in self.CELLS:
            raise ValueError(f"cell must be one of {sorted(self.CELLS)}, got {cell!r}")
        self.cell = cell
        embed_size = embed_size or hidden_size
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.rnn = self.CELLS[cell](embed_size, hidden_size, num_layers=num_layers,
                                    batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor, state: Any = None, return_state: bool = False) -> Any:
        out, state = self.rnn(self.embed(x), state)
        logits = self.head(self.drop(out))
        return (logits, state) if return_state else logits


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(T, T)`` boolean mask, ``True`` where query ``i`` may attend to key ``j`` (``j <= i``).

    Used in chapter 10.
    """
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              causal: bool = False) -> torch.Tensor:
    """Scaled dot-product attention written from its formula (Vaswani et al., 2017).

    ``softmax(Q K^T / sqrt(d) + M) V``, with ``M`` = 0 where allowed and ``-inf`` where the
    causal mask forbids. Queries are aligned with the *last* keys, so with ``Tq < Tk`` (new
    queries after a cached prefix) query ``i`` sees keys up to ``Tk - Tq + i``. Matches
    :func:`torch.nn.functional.scaled_dot_product_attention`; used in chapter 10.

    Args:
        q: Queries ``(..., Tq, d)``.
        k: Keys ``(..., Tk, d)``.
        v: Values ``(..., Tk, dv)``.
        causal: Apply the causal mask.

    Returns:
        ``(..., Tq, dv)``.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        Tq, Tk = q.shape[-2], k.shape[-2]
        allowed = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(Tk - Tq)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(dim=-1) @ v


class _SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, cache: list | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if cache is not None:  # cache = [k, v] of the positions already seen (or [None, None])
            if cache[0] is not None:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[0], cache[1] = k, v
        past = k.shape[2] - T
        drop = self.dropout if self.training else 0.0
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        elif T == 1:  # one new query after the cached prefix: it may see every key
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        else:
            mask = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril(past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class _Block(nn.Module):
    """Pre-norm decoder block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, d_model: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = _SelfAttention(d_model, n_head, dropout)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), cache))
        return x + self.mlp(self.ln2(x))


class CausalTransformer(nn.Module):
    """A small GPT-style decoder: token + learnt position embeddings, pre-norm blocks, read-out.

    Used in chapter 10. ``forward(x)`` maps ``(B, T)`` ids (``T <= block_size``) to
    ``(B, T, V)`` logits, each position seeing only itself and earlier positions.
    ``forward(x, cache=cache)`` with ``cache = model.new_cache()`` also stores every layer's
    keys and values, so that the next call need only process the new tokens: the KV cache.

    Args:
        vocab_size: Number of token ids ``V``.
        block_size: Longest context (the number of learnt positions).
        d_model: Width of the residual stream.
        n_head: Attention heads (must divide ``d_model``).
        n_layer: Decoder blocks.
        dropout: Dropout on attention, residual branches and embeddings.
    """

    def __init__(self, vocab_size: int, block_size: int = 128, d_model: int = 128,
                 n_head: int = 4, n_layer: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"n_head ({n_head}) must divide d_model ({d_model})")
        self.block_size = block_size
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(block_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(d_model, n_head, dropout) for _ in range(n_layer))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def new_cache(self) -> list[list]:
        """An empty KV cache: one ``[keys, values]`` slot per block."""
        return [[None, None] for _ in self.blocks]

    def forward(self, x: torch.Tensor, cache: list[list] | None = None) -> torch.Tensor:
        past = 0 if cache is None or cache[0][0] is None else cache[0][0].shape[2]
        T = x.shape[1]
        if past + T > self.block_size:
            raise ValueError(f"the context ({past} cached + {T} new tokens) is longer than "
                             f"block_size={self.block_size}")
        pos = torch.arange(past, past + T, device=x.device)
        h = self.drop(self.tok(x) + self.pos(pos))
        for i, block in enumerate(self.blocks):
            h = block(h, None if cache is None else cache[i])
        return self.head(self.ln(h))
