"""The book's Sphinx extension (tools/sphinx_offline.py): widget state and duplicate scripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import sphinx_offline  # noqa: E402

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = {"application/vnd.jupyter.widget-state+json": {"state": {"m1": {}}, "version_major": 2}}


def _nb(*outputs):
    return {"cells": [{"cell_type": "code", "outputs": list(outputs), "source": ""}],
            "metadata": {"widgets": STATE}, "nbformat": 4, "nbformat_minor": 5}


def test_state_is_dropped_when_every_widget_output_has_a_static_figure():
    nb = _nb({"data": {VIEW: {"model_id": "m1"}, "image/png": "iVBOR", "text/plain": "x"}})
    out = json.loads(sphinx_offline.strip_unused_widget_state(json.dumps(nb)))
    assert "widgets" not in out["metadata"]
    assert out["cells"] == nb["cells"]  # outputs untouched


def test_state_is_kept_when_a_widget_has_no_static_figure():
    nb = _nb({"data": {VIEW: {"model_id": "m1"}, "image/png": "iVBOR"}},
             {"data": {VIEW: {"model_id": "m2"}, "text/plain": "IntSlider(...)"}})
    text = json.dumps(nb)
    assert sphinx_offline.strip_unused_widget_state(text) is text


def test_text_without_state_or_json_is_returned_as_it_is():
    plain = json.dumps({"cells": [], "metadata": {}})
    assert sphinx_offline.strip_unused_widget_state(plain) is plain
    assert sphinx_offline.strip_unused_widget_state("not json") == "not json"


def _js(filename, **attributes):
    return SimpleNamespace(filename=filename, attributes=attributes)


def test_scripts_added_twice_are_written_once_and_bibliography_entries_are_list_items():
    a, b = _js(None, body="const X = 1"), _js("", body="const X = 1")  # the same inline script
    c, d = _js("theme.js"), _js("theme.js", **{"async": "async"})  # different attributes: kept
    context = {"script_files": [a, c, b, d],
               "body": '<div role="list"><div class="citation" role="doc-biblioentry">'}
    sphinx_offline._page_fixes(None, "p", "page.html", context, None)
    assert context["script_files"] == [a, c, d]
    assert context["body"] == '<div role="list"><div class="citation" role="listitem">'
