"""The :class:`Explorer` every interactive figure of the book is built on.

Its MIME bundle carries both the widget view and a PNG of the current figure: a live Jupyter
frontend shows the widget, while the book (rendered without a kernel, with ``image/png`` ranked
first in ``_config.yml``) shows the PNG.
"""

from __future__ import annotations

import base64
import traceback
from collections.abc import Callable, Mapping, Sequence
from io import BytesIO
from typing import Any

import ipywidgets as W
from matplotlib.figure import Figure

__all__ = ["Explorer", "_ShownFigure", "_png"]

_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _png(fig: Figure) -> str:
    """The figure as a base64-encoded PNG (the form MIME bundles carry)."""
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class _ShownFigure(Figure):
    """A figure outside pyplot (so it never leaks or shows twice) that Jupyter displays as PNG."""

    def _repr_png_(self) -> bytes:
        return base64.b64decode(_png(self))


class Explorer:
    """Controls plus a figure that is redrawn whenever a control changes.

    Used in chapter 06 (optimizers) and by later chapters' explorers.

    Args:
        controls: Value widgets by name; ``draw`` receives their values as keyword arguments.
        draw: Pure function of the control values returning a new figure (drawn without
            pyplot, so nothing leaks into the notebook's figure list).
        description: The ``text/plain`` form of the explorer.
        layout: A widget arranging the controls; a row of them when ``None``.
    """

    def __init__(
        self,
        controls: Mapping[str, W.ValueWidget],
        draw: Callable[..., Figure],
        description: str,
        layout: W.Widget | None = None,
    ) -> None:
        self.controls = dict(controls)
        self.draw = draw
        self.description = description
        self.output = W.Output()
        self.box = W.VBox([layout or W.HBox(list(self.controls.values())), self.output])
        self.png = ""
        self.redraw()  # errors in the initial figure raise here, at construction
        for control in self.controls.values():
            control.observe(self._on_change, names="value")

    def redraw(self) -> None:
        """Draw the figure for the current control values into the output area."""
        self.png = _png(self.draw(**{k: c.value for k, c in self.controls.items()}))
        # Replacing `outputs` at once (rather than `clear_output` + `display` inside `with out:`)
        # does not flicker, needs no kernel (so tests see it) and no matplotlib display backend.
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": self.png, "text/plain": self.description}},)

    def _on_change(self, _change: dict[str, Any]) -> None:
        try:
            self.redraw()
        except Exception:  # a callback's exception would land in the kernel log, unseen
            self.output.outputs = ({"output_type": "stream", "name": "stderr",
                                    "text": traceback.format_exc()},)

    def _repr_mimebundle_(
        self, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
    ) -> dict[str, Any]:
        bundle = {
            _WIDGET_MIME: {"model_id": self.box.model_id, "version_major": 2, "version_minor": 0},
            "image/png": self.png,
            "text/plain": self.description,
        }
        return {k: v for k, v in bundle.items()
                if (include is None or k in include) and (exclude is None or k not in exclude)}
