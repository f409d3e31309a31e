"""dlkit.text: tokenizers, token windows, attention, the models, the KV cache, sampling, evaluation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dlkit.text import (BPETokenizer, CausalTransformer, CharRNN, CharTokenizer, RandomWindows,
                        SequentialWindows, attention, causal_mask, evaluate_lm, generate, lm_loss,
                        lm_step, sample_next, unigram_loss)

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\naaaaaaa bbb aaa\n") * 3


# --------------------------------------------------------------------------- #
# Tokenizers
# --------------------------------------------------------------------------- #
def test_char_tokenizer_round_trip_and_unknown_character():
    tok = CharTokenizer(TEXT)
    ids = tok.encode(TEXT)
    assert ids.dtype == torch.int64 and ids.shape == (len(TEXT),)
    assert tok.decode(ids) == TEXT
    assert tok.vocab_size == len(set(TEXT)) and tok.chars == sorted(set(TEXT))
    with pytest.raises(ValueError, match="'Z' is not in the vocabulary"):
        tok.encode("Z")
    with pytest.raises(ValueError, match="non-empty"):
        CharTokenizer("")


def test_bpe_first_merge_is_the_most_frequent_pair():
    bpe = BPETokenizer.train(TEXT, len(set(TEXT)) + 1)
    a, b = bpe.merges[0]
    pairs = {}
    for x, y in zip(TEXT, TEXT[1:]):
        pairs[x + y] = pairs.get(x + y, 0) + 1
    best = max(pairs.values())
    assert pairs[bpe.tokens[a] + bpe.tokens[b]] == best


def test_bpe_round_trip_and_lengths_shrink():
    bpe = BPETokenizer.train(TEXT, len(set(TEXT)) + 40)
    ids = bpe.encode(TEXT)
    assert bpe.decode(ids) == TEXT
    assert bpe.lengths[0] == len(TEXT) and bpe.lengths[-1] == len(ids)
    assert all(x > y for x, y in zip(bpe.lengths, bpe.lengths[1:]))
    assert len(bpe.encode(TEXT, num_merges=5)) == bpe.lengths[5]
    with pytest.raises(ValueError, match="at least the"):
        BPETokenizer.train(TEXT, 3)


def test_bpe_overlapping_pairs_merge_left_to_right():
    bpe = BPETokenizer.train("aaaaa", 2)
    assert bpe.merges == [(0, 0)]
    assert bpe.decode(bpe.encode("aaaaa")) == "aaaaa"
    assert [bpe.tokens[i] for i in bpe.encode("aaaaa")] == ["aa", "aa", "a"]


def test_bpe_matches_hugging_face_tokenizers():
    pytest.importorskip("tokenizers")
    bpe = BPETokenizer.train(TEXT, len(set(TEXT)) + 30)
    hf = bpe.to_tokenizers()
    for text in (TEXT, "speak, speak aaaa\nfurther", TEXT[17:90]):
        assert hf.encode(text).ids == bpe.encode(text).tolist()


# --------------------------------------------------------------------------- #
# Windows
# --------------------------------------------------------------------------- #
def test_random_windows_targets_are_inputs_shifted_by_one():
    ids = torch.arange(100)
    loader = RandomWindows(ids, block_size=8, batch_size=4, steps=3, seed=1)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    for X, Y in batches:
        assert X.shape == Y.shape == (4, 8)
        assert torch.equal(Y[:, :-1], X[:, 1:]) and torch.equal(Y[:, -1], X[:, -1] + 1)
    again = [X for X, _ in loader]
    assert all(torch.equal(a, b) for a, (b, _) in zip(again, batches))
    loader.set_epoch(1)
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(loader, batches))


def test_sequential_windows_predict_every_token_once():
    ids = torch.arange(50)
    loader = SequentialWindows(ids, block_size=7, batch_size=3)
    Ys = torch.cat([Y.flatten() for _, Y in loader])
    assert torch.equal(Ys, torch.arange(1, 1 + loader.num_tokens))
    assert loader.num_tokens == 49 // 7 * 7 and len(list(loader)) == len(loader)
    assert SequentialWindows(ids, 7, max_tokens=20).num_tokens == 14


def test_windows_reject_bad_streams():
    with pytest.raises(TypeError, match="1-D int64"):
        RandomWindows(torch.zeros(10), 4, 2, 1)
    with pytest.raises(ValueError, match="too short"):
        SequentialWindows(torch.arange(4), 4)


# --------------------------------------------------------------------------- #
# Attention and the Transformer
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_scaled_dot_product_attention(causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 8, generator=g, dtype=torch.float64) for _ in range(3))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert (attention(q, k, v, causal) - ref).abs().max() < 1e-12


def test_attention_with_fewer_queries_sees_the_cached_prefix():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 7, 4, generator=g, dtype=torch.float64) for _ in range(3))
    full = attention(q, k, v, causal=True)
    assert torch.allclose(attention(q[:, :, -3:], k, v, causal=True), full[:, :, -3:], atol=1e-12)


def test_causal_mask():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())


def _tiny_transformer(seed=0, block_size=16):
    torch.manual_seed(seed)
    return CausalTransformer(11, block_size=block_size, d_model=16, n_head=2, n_layer=2).eval()


def test_transformer_is_causal():
    model = _tiny_transformer()
    x = torch.randint(0, 11, (2, 10))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 11
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (2, 10, 11)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-3)


def test_kv_cache_gives_the_same_logits_in_pieces():
    model = _tiny_transformer().double()
    x = torch.randint(0, 11, (2, 12))
    with torch.no_grad():
        full = model(x)
        cache = model.new_cache()
        parts = [model(x[:, :5], cache=cache), model(x[:, 5:9], cache=cache),
                 model(x[:, 9:10], cache=cache), model(x[:, 10:], cache=cache)]
    assert (torch.cat(parts, dim=1) - full).abs().max() < 1e-12
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.int64))


@pytest.mark.parametrize("temperature,top_k", [(0.0, None), (1.0, None), (0.8, 5)])
def test_generation_with_and_without_cache_gives_the_same_tokens(temperature, top_k):
    model = _tiny_transformer(block_size=16)
    prompt = torch.tensor([1, 2, 3])
    a = generate(model, prompt, 20, temperature=temperature, top_k=top_k, seed=3, use_cache=True)
    b = generate(model, prompt, 20, temperature=temperature, top_k=top_k, seed=3, use_cache=False)
    assert a.shape == (23,) and torch.equal(a[:3], prompt)
    assert torch.equal(a, b)  # 23 > block_size: both fall back to the window past it


def test_rnn_generation_with_and_without_carried_state():
    torch.manual_seed(0)
    model = CharRNN(11, 16, "gru")
    prompt = torch.tensor([[1, 2], [3, 4]])
    a = generate(model, prompt, 10, temperature=1.0, seed=0, use_cache=True)
    b = generate(model, prompt, 10, temperature=1.0, seed=0, use_cache=False)
    assert a.shape == (2, 12) and torch.equal(a, b)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_char_rnn_shapes_and_state(cell):
    model = CharRNN(7, 12, cell, num_layers=2)
    x = torch.randint(0, 7, (3, 9))
    with torch.no_grad():
        logits, state = model(x, return_state=True)
        first, s = model(x[:, :4], return_state=True)
        rest = model(x[:, 4:], s)
    assert logits.shape == (3, 9, 7)
    assert torch.allclose(torch.cat([first, rest], dim=1), logits, atol=1e-6)
    with pytest.raises(ValueError, match="cell must be"):
        CharRNN(7, 12, "transformer")


# --------------------------------------------------------------------------- #
# Loss, evaluation, sampling, training through fit
# --------------------------------------------------------------------------- #
class _Uniform(torch.nn.Module):
    def __init__(self, v):
        super().__init__()
        self.v = v
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.zeros(*x.shape, self.v) + self.w


def test_evaluate_lm_of_a_uniform_model_is_log_v():
    result = evaluate_lm(_Uniform(13), SequentialWindows(torch.randint(0, 13, (200,)), 10))
    assert math.isclose(result["loss"], math.log(13), rel_tol=1e-6)
    assert math.isclose(result["perplexity"], 13, rel_tol=1e-5)
    assert math.isclose(result["bits"], math.log2(13), rel_tol=1e-6)


def test_lm_loss_and_unigram_loss():
    logits = torch.randn(2, 3, 5)
    y = torch.randint(0, 5, (2, 3))
    assert torch.allclose(lm_loss(logits, y), F.cross_entropy(logits.reshape(6, 5), y.reshape(6)))
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        lm_loss(logits.reshape(6, 5), y)
    train = torch.tensor([0, 0, 0, 1])
    # counts + 1 = (4, 2, 1) over 7
    assert math.isclose(unigram_loss(train, torch.tensor([0, 2]), 3),
                        -(math.log(4 / 7) + math.log(1 / 7)) / 2)


def test_sample_next_greedy_top_k_and_temperature():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    assert sample_next(logits, 0.0).tolist() == [1, 0]
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, 1.0, top_k=1, generator=g).tolist() == [1, 0]
    draws = torch.stack([sample_next(logits[:1], 1.0, top_k=2, generator=g) for _ in range(300)])
    assert set(draws.flatten().tolist()) == {1, 2}
    cold = torch.stack([sample_next(logits[:1], 0.05, generator=g) for _ in range(100)])
    assert (cold == 1).all()
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, -1.0)


def test_fit_trains_a_language_model_with_lm_step():
    from dlkit.train import fit

    torch.manual_seed(0)
    ids = CharTokenizer(TEXT).encode(TEXT)
    model = CharRNN(int(ids.max()) + 1, 32, "gru")
    val = SequentialWindows(ids, 16, 8)
    before = evaluate_lm(model, val)["loss"]
    fit(model, RandomWindows(ids, 16, 16, 30), epochs=2, lr=1e-2, step=lm_step, device="cpu",
        progress=False, verbose=False)
    after = evaluate_lm(model, val)["loss"]
    assert after < before - 0.5


# --------------------------------------------------------------------------- #
# The sampling explorer (dlkit.widgets.text)
# --------------------------------------------------------------------------- #
def test_temperature_explorer_draws_and_redraws():
    from dlkit.widgets.text import plot_sampling, temperature_explorer

    tok = CharTokenizer(TEXT)
    torch.manual_seed(0)
    model = CharRNN(tok.vocab_size, 16, "gru")
    fig = plot_sampling(model, tok, "All:\n", temperature=0.0, num_tokens=20)
    assert len(fig.axes) == 2
    explorer = temperature_explorer(model, tok, "All:\n", num_tokens=20)
    first = explorer.png
    assert first and explorer._repr_mimebundle_()["text/plain"].startswith("Sampling explorer")
    explorer.controls["temperature"].value = 1.5
    assert explorer.png != first
