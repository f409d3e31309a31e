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

from dlkit.text.lm import evaluate_lm, generate, lm_loss, lm_step, sample_next, unigram_loss
from dlkit.text.models import CausalTransformer, CharRNN, attention, causal_mask
from dlkit.text.tokenize import BPETokenizer, CharTokenizer
from dlkit.text.windows import RandomWindows, SequentialWindows

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

