"""Character language models on Tiny Shakespeare: a timed training run and throughput ratios.

Trains one architecture of chapter 10 (default: the LSTM, the best of the chapter's equal-time
comparison on a 2-core CPU) for a fixed wall-clock budget through ``dlkit.train.fit`` and
reports its validation loss in nats per character on the whole validation split (the last
10 % of the corpus). In the same process it measures training throughput (tokens/s) of the
RNN, LSTM and Transformer at the chapter's sizes, and the Transformer's generation speed with
and without the KV cache (and checks that both give the same tokens). Prints one JSON line;
``--out FILE`` also writes it there (atomically). Target on a 2-core CPU: <= 1.70 nats/char
after 150 s.

    DLKIT_DATA_DIR=../shared/data python benchmarks/char_lm.py [--model lstm] [--seconds 150]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from dlkit._util import atomic_write
from dlkit.data import load_text
from dlkit.env import describe, pick_device, seed_everything
from dlkit.text import (CausalTransformer, CharRNN, CharTokenizer, RandomWindows,
                        SequentialWindows, evaluate_lm, generate, lm_loss, lm_step)
from dlkit.train import GradientClipping, fit
from dlkit.train.callbacks import Callback

BLOCK, BATCH = 128, 32


def make(name: str, vocab: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "transformer":
        return CausalTransformer(vocab, BLOCK, d_model=128, n_head=4, n_layer=2)
    return CharRNN(vocab, 256, name)


class _Steps(Callback):
    def __init__(self) -> None:
        self.n = 0

    def after_batch(self, loop) -> None:  # noqa: ANN001
        self.n += 1


LRS = {"rnn": 2e-3, "lstm": 3e-3, "transformer": 3e-3}


def train_tokens_per_s(name: str, vocab: int, ids: torch.Tensor, device: torch.device,
                       precision: str, steps: int = 15) -> float:
    model = make(name, vocab).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = list(RandomWindows(ids, BLOCK, BATCH, steps + 3, seed=5))
    times = []
    for i, (X, Y) in enumerate(batches):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = lm_loss(model(X.to(device)), Y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:  # warm-up steps excluded
            times.append(time.perf_counter() - start)
    return BATCH * BLOCK / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(LRS), default="lstm")
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--out", default=None, help="also write the JSON line to this file")
    args = parser.parse_args()

    seed_everything(0)
    device = pick_device()
    train_text = load_text(split="train").text
    val_text = load_text(split="val").text
    tok = CharTokenizer(train_text)
    train_ids, val_ids = tok.encode(train_text), tok.encode(val_text)

    # 1. The timed run: `seconds` of training in 10 epochs, validated on the whole split at the end.
    model = make(args.model, tok.vocab_size)
    loader = RandomWindows(train_ids, BLOCK, BATCH, steps=10**9, seed=0, seconds=args.seconds / 10)
    counter = _Steps()
    start = time.perf_counter()
    fit(model, loader, epochs=10, device=device, precision=args.precision,
                  optimizer=torch.optim.AdamW(model.parameters(), lr=LRS[args.model]),
                  step=lm_step, callbacks=[GradientClipping(1.0), counter], progress=False, verbose=False)
    train_seconds = time.perf_counter() - start
    val = evaluate_lm(model, SequentialWindows(val_ids, BLOCK, 64), device)

    # 2. Training throughput of the three architectures, one after the other, same batches.
    tps = {name: train_tokens_per_s(name, tok.vocab_size, train_ids, device, args.precision)
           for name in ("rnn", "lstm", "transformer")}

    # 3. Generation with and without the KV cache (untrained weights: speed only), same tokens.
    gpt = make("transformer", tok.vocab_size).to(device)
    prompt = tok.encode("ROMEO:\n")
    n_new = BLOCK - len(prompt)
    gen_times: dict[bool, list[float]] = {True: [], False: []}
    outputs = {}
    for _ in range(3):
        for cache in (True, False):
            start = time.perf_counter()
            outputs[cache] = generate(gpt, prompt, n_new, temperature=1.0, seed=0, use_cache=cache)
            gen_times[cache].append(time.perf_counter() - start)
    same = bool(torch.equal(outputs[True], outputs[False]))
    gen_cached = n_new / statistics.median(gen_times[True])
    gen_full = n_new / statistics.median(gen_times[False])

    result = {
        "benchmark": "char_lm",
        "model": args.model,
        "params": sum(p.numel() for p in model.parameters()),
        "precision": args.precision,
        "train_seconds_budget": args.seconds,
        "train_seconds_wall": round(train_seconds, 1),
        "steps": counter.n,
        "tokens_seen": counter.n * BATCH * BLOCK,
        "val_loss_nats_per_char": round(val["loss"], 4),
        "val_loss_stderr": round(val["stderr"], 4),
        "val_perplexity": round(val["perplexity"], 3),
        "target_nats_per_char": 1.70,
        "meets_target": val["loss"] <= 1.70,
        "train_tokens_per_s": {k: round(v) for k, v in tps.items()},
        "train_speed_ratio_vs_transformer": {k: round(v / tps["transformer"], 2) for k, v in tps.items()},
        "generate_tokens_per_s": {"kv_cache": round(gen_cached), "recompute": round(gen_full)},
        "kv_cache_speedup": round(gen_cached / gen_full, 2),
        "kv_cache_same_tokens": same,
        "generated_tokens": n_new,
        "hardware": describe(device),
        "machine": platform.machine(),
    }
    line = json.dumps(result)
    print(line)
    if args.out:
        with atomic_write(args.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
