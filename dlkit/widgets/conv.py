"""Explorers of chapter 04 (CNN design)."""

from __future__ import annotations

from dlkit.widgets.core import Explorer, _ShownFigure, _png  # noqa: F401

__all__: list[str] = []
