"""Tests for chapter 08's exercise checks: right answers pass, typical mistakes get a hint."""

from __future__ import annotations

import math

import pytest

from dlkit.exercises import check_effective_batch, check_rank_indices


def test_effective_batch():
    assert check_effective_batch(512, 64, 4, 2)
    assert check_effective_batch(256.0, 128, 2)
    assert "accumulation" in check_effective_batch(256, 64, 4, 2).message
    assert "one rank" in check_effective_batch(128, 64, 4, 2).message
    assert not check_effective_batch(64, 64, 4, 2)
    assert not check_effective_batch(513, 64, 4, 2)
    for bad in (None, "512", 51.5, True):
        assert "whole number" in check_effective_batch(bad, 64, 4, 2).message


def _padded(n: int, world: int, rank: int) -> list[int]:
    indices = list(range(n))
    total = math.ceil(n / world) * world
    while len(indices) < total:
        indices += indices[: total - len(indices)]
    return indices[rank:total:world]


def test_rank_indices_accepts_the_reference_rule():
    assert check_rank_indices(_padded)
    assert check_rank_indices(lambda n, w, r: __import__("torch").tensor(_padded(n, w, r)))


@pytest.mark.parametrize("fn, needle", [
    (lambda n, w, r: list(range(r, n, w)), "same number of steps"),
    (lambda n, w, r: list(range(r * (n // w), (r + 1) * (n // w))), "contiguous"),
    (lambda n, w, r: sorted(_padded(n, w, r), reverse=True), "wrong order"),
    (lambda n, w, r: [i + 1 for i in _padded(n, w, r)], "DistributedSampler gives"),
    (lambda n, w, r: 1 / 0, "ZeroDivisionError"),
    (lambda n, w: [], "three arguments"),
    (42, "expected a function"),
])
def test_rank_indices_explains_mistakes(fn, needle):
    feedback = check_rank_indices(fn)
    assert not feedback
    assert needle in feedback.message
