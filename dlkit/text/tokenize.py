"""Tokenizers of chapter 10: one id per character, and byte-pair encoding (Sennrich et al. 2016)
written out as the lesson and checked against Hugging Face ``tokenizers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["CharTokenizer", "BPETokenizer"]


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
