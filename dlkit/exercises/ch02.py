"""Exercise checks of chapter 02 (data collection)."""

from __future__ import annotations

from dlkit.exercises.feedback import Feedback, _right, _wrong  # noqa: F401

__all__: list[str] = []
