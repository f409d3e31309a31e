"""Argument checks shared by the ``dlkit.data`` modules (counts and seeds).

They differ from :mod:`dlkit._util`'s validators on purpose: a count of the wrong type is a
``TypeError`` here (as it always was in ``dlkit.data``) and numpy integers are accepted, since
counts and seeds often come out of numpy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _check_count(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be in [{low}, {high}], got {value}")
    return int(value)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)
