"""Text for sequence models: tokenizers, (B, T) windows, character language models, sampling.

Everything chapter 10 (sequence models) trains with:

* :class:`CharTokenizer` (one id per distinct character) and :class:`BPETokenizer` (byte-pair
  encoding, Sennrich et al. 2016, written out as the lesson and checked against Hugging Face
  ``tokenizers`` through :meth:`BPETokenizer.to_tokenizers`);
* :class:`RandomWindows` and :class:`SequentialWindows`, which cut a token stream into
  ``(B, T)`` input windows and their targets shifted by one;
* the models: :class:`CharRNN` (``nn.RNN``/``nn.LSTM``/``nn.GRU`` under an embedding and a
  linear read-out) and :class:`CausalTransformer` (pre-norm decoder blocks with a KV cache for
  generation); :func:`attention`, scaled dot-product attention written from its formula;
* :func:`lm_step` (the training step :func:`dlkit.train.fit` takes), :func:`evaluate_lm` (the
  validation loss in nats per token, the ``validate=`` of ``fit``) and :func:`generate` (sampling
  with temperature and top-k, with or without the cache).

Models return logits of shape ``(B, T, V)`` for inputs ``(B, T)``; the loss is the mean
cross-entropy over all ``B * T`` positions, in nats per token (per character for character
models).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CharTokenizer",
    "BPETokenizer",
    "RandomWindows",
    "SequentialWindows",
    "CharRNN",
    "CausalTransformer",
    "attention",
    "causal_mask",
    "lm_loss",
    "lm_step",
    "evaluate_lm",
    "unigram_loss",
    "sample_next",
    "generate",
]


# --------------------------------------------------------------------------- #
# Tokenizers
# --------------------------------------------------------------------------- #
class CharTokenizer:
    """One token per distinct character of a text, ids in sorted character order.

    Used in chapter 10.

    Args:
        text: The text whose characters form the vocabulary (the training split).
    """

    def __init__(self, text: str) -> None:
        if not text:
            raise ValueError("CharTokenizer needs a non-empty text to build its vocabulary")
        self.chars: list[str] = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """The ids of ``text`` as an int64 tensor.

        Raises:
            ValueError: If ``text`` holds a character outside the vocabulary.
        """
        try:
            return torch.tensor([self.index[c] for c in text], dtype=torch.int64)
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary of "
                             f"{self.vocab_size} characters") from None

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """The text of a sequence of ids."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)

    def __repr__(self) -> str:
        return f"CharTokenizer({self.vocab_size} characters)"


def _merge(ids: np.ndarray, a: int, b: int, new: int) -> np.ndarray:
    """Replace every non-overlapping occurrence of the pair ``(a, b)``, left to right, by ``new``."""
    hit = (ids[:-1] == a) & (ids[1:] == b)
    pos = np.flatnonzero(hit)
    if pos.size == 0:
        return ids
    if a == b:  # in a run "aaaa" the pairs overlap: keep the 1st, 3rd, ... of each run
        starts = np.ones(pos.size, dtype=bool)
        starts[1:] = pos[1:] != pos[:-1] + 1
        run_start = np.maximum.accumulate(np.where(starts, pos, 0))
        pos = pos[(pos - run_start) % 2 == 0]
    out = ids.copy()
    out[pos] = new
    keep = np.ones(ids.size, dtype=bool)
    keep[pos + 1] = False
    return out[keep]


class BPETokenizer:
    """Byte-pair encoding over characters (Sennrich et al., 2016), trained on a text.

    Training starts from one token per character and repeatedly merges the most frequent
    adjacent pair of tokens into a new token; encoding applies the learnt merges in the order
    they were learnt, which is what ranking them (lowest rank first) amounts to. The whole text
    is one sequence (no splitting into words first), so tokens may span spaces and newlines.
    Used in chapter 10.

    Attributes:
        chars: The base characters (ids ``0 .. len(chars) - 1``).
        merges: ``(a, b)`` pairs of token ids, in the order learnt; merge ``i`` creates the
            token ``len(chars) + i``.
        tokens: The string of every token id.
        lengths: The length of the training text in tokens after ``0, 1, ..., len(merges)``
            merges (the vocabulary-size / sequence-length trade-off, measured while training).
    """

    def __init__(self, chars: Sequence[str], merges: Sequence[tuple[int, int]]) -> None:
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.tokens = list(self.chars)
        for a, b in self.merges:
            self.tokens.append(self.tokens[a] + self.tokens[b])
        self.lengths: list[int] = []

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        """Learn merges on ``text`` until the vocabulary has ``vocab_size`` tokens.

        Args:
            text: The training text.
            vocab_size: Final vocabulary size, at least the number of distinct characters.

        Returns:
            The trained tokenizer (fewer merges if no pair occurs twice any more).

        Raises:
            ValueError: If ``vocab_size`` is smaller than the character set.
        """
        chars = sorted(set(text))
        if vocab_size < len(chars):
            raise ValueError(f"vocab_size must be at least the {len(chars)} distinct characters, "
                             f"got {vocab_size}")
        index = {c: i for i, c in enumerate(chars)}
        ids = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
        merges: list[tuple[int, int]] = []
        lengths = [ids.size]
        for new in range(len(chars), vocab_size):
            pair_codes = ids[:-1] * new + ids[1:]  # ids are < new: a unique code per pair
            counts = np.bincount(pair_codes, minlength=new * new)
            best = int(counts.argmax())
            if counts[best] < 2:
                break
            a, b = divmod(best, new)
            ids = _merge(ids, a, b, new)
            merges.append((a, b))
            lengths.append(ids.size)
        tok = cls(chars, merges)
        tok.lengths = lengths
        return tok

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, num_merges: int | None = None) -> torch.Tensor:
        """The token ids of ``text``, applying the first ``num_merges`` merges (default all)."""
        try:
            ids = np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the BPE base vocabulary") from None
        merges = self.merges if num_merges is None else self.merges[:num_merges]
        for i, (a, b) in enumerate(merges):
            ids = _merge(ids, a, b, len(self.chars) + i)
        return torch.from_numpy(ids)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """The text of a sequence of token ids."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.tokens[i] for i in ids)

    def to_tokenizers(self) -> Any:
        """The same BPE model as a Hugging Face ``tokenizers.Tokenizer``.

        Token ``i`` gets id ``i``. If two merges spell the same string (``"ab"+"c"`` and
        ``"a"+"bc"``), a ``tokenizers`` vocabulary cannot hold both; that raises here.

        Raises:
            ImportError: If ``tokenizers`` is not installed.
            ValueError: If two tokens have the same string.
        """
        from tokenizers import Tokenizer
        from tokenizers.models import BPE

        vocab = {t: i for i, t in enumerate(self.tokens)}
        if len(vocab) != len(self.tokens):
            raise ValueError("two merges produce the same string; tokenizers needs unique tokens")
        merges = [(self.tokens[a], self.tokens[b]) for a, b in self.merges]
        return Tokenizer(BPE(vocab=vocab, merges=merges))

    def __repr__(self) -> str:
        return f"BPETokenizer({len(self.chars)} characters + {len(self.merges)} merges)"


# --------------------------------------------------------------------------- #
# Batching a token stream into (B, T) windows
# --------------------------------------------------------------------------- #
def _check_stream(ids: torch.Tensor, block_size: int) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.dtype != torch.int64:
        raise TypeError("expected a 1-D int64 tensor of token ids")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    if ids.numel() < block_size + 1:
        raise ValueError(f"a stream of {ids.numel()} tokens is too short for windows of "
                         f"{block_size} (+1 for the targets)")
    return ids


class RandomWindows:
    """Batches of windows at random offsets of a token stream: ``X = s[i:i+T]``, ``Y = s[i+1:i+T+1]``.

    An epoch is ``steps`` batches; the offsets depend only on ``seed`` and the epoch (set by
    :func:`dlkit.train.fit` through ``set_epoch``), so a run is reproducible. With ``seconds``
    an epoch also ends once that much wall-clock time has passed since its first batch (the
    time spent training on the batches included): equal time budgets for models of different
    speed, as in chapter 10's comparison. ``batches`` counts the batches of the last epoch.

    Args:
        ids: The token stream (1-D int64), e.g. the training split encoded.
        block_size: Window length ``T``.
        batch_size: Windows per batch ``B``.
        steps: Batches per epoch (the most, when ``seconds`` is given).
        seed: Seed of the offsets.
        seconds: Optional time limit per epoch.
    """

    def __init__(self, ids: torch.Tensor, block_size: int, batch_size: int, steps: int,
                 seed: int = 0, seconds: float | None = None) -> None:
        self.ids = _check_stream(ids, block_size)
        if batch_size < 1 or steps < 1:
            raise ValueError(f"batch_size and steps must be >= 1, got {batch_size} and {steps}")
        self.block_size, self.batch_size, self.steps = block_size, batch_size, steps
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        self.seed, self.epoch, self.seconds, self.batches = seed, 0, seconds, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        T, offsets = self.block_size, torch.arange(self.block_size + 1)
        self.batches, start = 0, time.perf_counter()
        for _ in range(self.steps):
            if self.seconds is not None and self.batches and \
                    time.perf_counter() - start >= self.seconds:
                return
            self.batches += 1
            starts = torch.randint(0, self.ids.numel() - T, (self.batch_size,), generator=g)
            chunk = self.ids[starts[:, None] + offsets]
            yield chunk[:, :-1], chunk[:, 1:]


class SequentialWindows:
    """Consecutive non-overlapping windows covering a stream once, in order (for evaluation).

    Every token after the first is predicted exactly once, from the tokens before it in its
    window (each window starts without context). Used in chapter 10.

    Args:
        ids: The token stream (1-D int64), e.g. the validation split encoded.
        block_size: Window length ``T``.
        batch_size: Windows per batch.
        max_tokens: Use only the first ``max_tokens + 1`` tokens (a quick estimate).
    """

    def __init__(self, ids: torch.Tensor, block_size: int, batch_size: int = 64,
                 max_tokens: int | None = None) -> None:
        ids = _check_stream(ids, block_size)
        if max_tokens is not None:
            ids = _check_stream(ids[: max_tokens + 1], block_size)
        self.ids, self.block_size, self.batch_size = ids, block_size, batch_size
        self.num_windows = (ids.numel() - 1) // block_size

    def __len__(self) -> int:
        return math.ceil(self.num_windows / self.batch_size)

    @property
    def num_tokens(self) -> int:
        """How many targets the windows hold."""
        return self.num_windows * self.block_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        T = self.block_size
        n = self.num_windows * T
        X = self.ids[:n].view(-1, T)
        Y = self.ids[1:n + 1].view(-1, T)
        for i in range(0, self.num_windows, self.batch_size):
            yield X[i:i + self.batch_size], Y[i:i + self.batch_size]


# --------------------------------------------------------------------------- #
# Models
# --------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------- #
# Training and evaluation
# --------------------------------------------------------------------------- #
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
