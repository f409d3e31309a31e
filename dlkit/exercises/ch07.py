"""Exercise checks of chapter 07 (training and evaluation)."""

from __future__ import annotations

from dlkit.exercises.feedback import Feedback, _right, _wrong  # noqa: F401

__all__: list[str] = []
