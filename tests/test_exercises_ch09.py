"""Checks of chapter 09's exercises: right answers pass, typical mistakes get their own hint."""

from __future__ import annotations

import numpy as np
import torch

from dlkit.exercises import check_psi, check_quantize


def test_check_quantize():
    right = lambda x, s, z: torch.clamp(torch.round(x / s) + z, 0, 255)
    assert check_quantize(right).ok
    assert check_quantize(lambda x, s, z: right(x, s, z).to(torch.uint8)).ok
    cases = {
        "clipped": lambda x, s, z: torch.round(x / s) + z,
        "truncates": lambda x, s, z: torch.clamp(torch.floor(x / s) + z, 0, 255),
        "zero point": lambda x, s, z: torch.clamp(torch.round(x / s), 0, 255),
        "multiplies": lambda x, s, z: torch.clamp(torch.round(x * s) + z, 0, 255),
        "whole numbers": lambda x, s, z: torch.clamp(x / s + z, 0, 255),
        "shape": lambda x, s, z: right(x, s, z)[:3],
        "raised": lambda x, s, z: 1 / 0,
    }
    for word, fn in cases.items():
        fb = check_quantize(fn)
        assert not fb.ok and word in str(fb), (word, str(fb))


def test_check_psi():
    assert check_psi(lambda p, q: np.sum((q - p) * np.log(q / p))).ok
    cases = {
        "sign": lambda p, q: np.sum((q - p) * np.log(p / q)),
        "Kullback": lambda p, q: np.sum(q * np.log(q / p)),
        "identical": lambda p, q: np.sum(q - p) + 1,
        "expected": lambda p, q: np.sum(np.abs(q - p)),
        "number": lambda p, q: "0.1",
        "raised": lambda p, q: p @ np.ones(3),
    }
    for word, fn in cases.items():
        fb = check_psi(fn)
        assert not fb.ok and word in str(fb), (word, str(fb))
