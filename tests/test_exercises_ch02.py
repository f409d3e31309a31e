"""Chapter 02 exercise checks: right answers pass, typical mistakes get specific feedback."""

from __future__ import annotations

import torch

from dlkit.exercises import check_hamming_distance, check_shard_split, check_streaming_stats
from dlkit.shards import shard_assignment


def _stats(correction=0, scale=255.0, per_batch=False):
    def fn(batches):
        if per_batch:
            ms, ss = [], []
            for b in batches:
                x = b.double() / scale
                ms.append(x.mean(dim=(0, 2, 3)))
                ss.append(x.std(dim=(0, 2, 3), correction=correction))
            return torch.stack(ms).mean(0), torch.stack(ss).mean(0)
        n, s, sq = 0, 0, 0
        for b in batches:
            x = b.double().transpose(0, 1).reshape(b.shape[1], -1)
            n, s, sq = n + x.shape[1], s + x.sum(1), sq + (x * x).sum(1)
        mean = s / n
        var = (sq / n - mean**2) * (n / (n - correction))
        return mean / scale, var.sqrt() / scale
    return fn


def test_streaming_stats_check():
    assert check_streaming_stats(_stats())
    fb = check_streaming_stats(_stats(correction=1))
    assert not fb and "sample std" in fb.message
    fb = check_streaming_stats(_stats(scale=1.0))
    assert not fb and "0..255" in fb.message
    fb = check_streaming_stats(_stats(per_batch=True))
    assert not fb and "per-batch" in fb.message
    fb = check_streaming_stats(lambda batches: (list(batches)[0], 1))
    assert not fb
    fb = check_streaming_stats(lambda batches: 1 / 0)
    assert not fb and "ZeroDivisionError" in fb.message


def test_hamming_check():
    assert check_hamming_distance(lambda a, b: bin(a ^ b).count("1"))
    assert check_hamming_distance(lambda a, b: (a ^ b).bit_count())
    fb = check_hamming_distance(lambda a, b: abs(a - b))
    assert not fb and "numeric difference" in fb.hint
    assert not check_hamming_distance(lambda a, b: bin((a ^ b) & (2**63 - 1)).count("1"))
    assert not check_hamming_distance(lambda a, b: float(bin(a ^ b).count("1")))


def test_shard_split_check():
    assert check_shard_split(shard_assignment)
    fb = check_shard_split(lambda n, r, w, k, nw: list(range(k, n, nw)))  # ignores the rank
    assert not fb and "more than once" in fb.message
    fb = check_shard_split(lambda n, r, w, k, nw: list(range(r * nw + k, n, nw)))
    assert not fb
    # Contiguous blocks of floor(n / R): covers nothing past the last full block.
    fb = check_shard_split(lambda n, r, w, k, nw: list(range((r * nw + k) * (n // (w * nw)),
                                                             (r * nw + k + 1) * (n // (w * nw)))))
    assert not fb and "never read" in fb.message
