"""Explorers of chapter 03 (augmentation)."""

from __future__ import annotations

from dlkit.widgets.core import Explorer, _ShownFigure, _png  # noqa: F401

__all__: list[str] = []
