"""Sphinx extension: the built book renders its math and figures without a network.

Loaded by ``_config.yml`` (``sphinx.local_extensions``). Two things:

* **MathJax served by the site.** ``make book`` installs the ``mathjax`` npm package pinned in
  ``tools/mathjax/package-lock.json`` (integrity-checked by ``npm ci``); when it is there, this
  extension copies its ``es5`` bundle to ``_static/mathjax/`` and points ``mathjax_path`` at it.
  Without npm the book keeps Sphinx's default, MathJax from its CDN, exactly as before.
* **No unused widget state.** Each explorer of ``dlkit.widgets`` stores a static PNG beside
  the live widget, and the book prefers the PNG (``nb_mime_priority_overrides``), so the
  widget state saved in a notebook is never shown on its page; embedding it would only add the
  widget manager's scripts (from a CDN) and their JSON. The state is dropped from the source
  the book reads when every widget output of the notebook has a static image; the notebook
  file itself keeps it (JupyterLab uses it).

It also drops script tags that extensions add twice at different priorities (the inline
settings of sphinx-togglebutton and sphinx-thebe are), since a second ``const`` declaration of
the same name is a JavaScript error on every page (one copy is
registered with the file name ``None``, the other with ``""``). And the bibliography's
entries get the ``listitem`` role their ``role="list"`` parent requires (docutils writes the
deprecated ``doc-biblioentry``, which assistive technology need not treat as a list item).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHJAX_DIR = Path(__file__).resolve().parent / "mathjax" / "node_modules" / "mathjax" / "es5"
MATHJAX_ENTRY = "tex-mml-chtml.js"  # the bundle Sphinx loads from the CDN by default
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def widget_state_is_unused(nb: dict[str, Any]) -> bool:
    """True when every widget output of ``nb`` carries a PNG that the book shows instead.

    Args:
        nb: A notebook as parsed JSON.

    Returns:
        ``True`` if no output would need the widget state to render.
    """
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = out.get("data", {})
            if WIDGET_VIEW in data and "image/png" not in data:
                return False
    return True


def strip_unused_widget_state(text: str) -> str:
    """The notebook ``text`` without its saved widget state when no page output uses it.

    Args:
        text: A notebook's JSON text.

    Returns:
        The same text if there is no widget state or some output needs it; else the notebook
        re-serialised without ``metadata.widgets``.
    """
    try:
        nb = json.loads(text)
    except json.JSONDecodeError:
        return text  # not JSON: myst-nb reports it with its own message
    if "widgets" not in nb.get("metadata", {}) or not widget_state_is_unused(nb):
        return text
    del nb["metadata"]["widgets"]
    return json.dumps(nb, ensure_ascii=False)


def _source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    if str(app.env.doc2path(docname)).endswith(".ipynb"):
        source[0] = strip_unused_widget_state(source[0])


def _page_fixes(app: Sphinx, pagename: str, templatename: str, context: dict,
               doctree: Any) -> None:
    body = context.get("body")
    if isinstance(body, str) and 'role="doc-biblioentry"' in body:
        context["body"] = body.replace('role="doc-biblioentry"', 'role="listitem"')
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for js in scripts:
        key = (js.filename or None, tuple(sorted(js.attributes.items())))  # "" and None alike
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def _config_inited(app: Sphinx, config: Any) -> None:
    if (MATHJAX_DIR / MATHJAX_ENTRY).is_file():
        config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"  # relative to the site's _static/
        logger.info("MathJax served from _static/mathjax (npm package)")
    else:
        logger.info("MathJax from its CDN: run make book with npm installed to serve it locally")


def _build_finished(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    if app.config.mathjax_path == f"mathjax/{MATHJAX_ENTRY}":
        shutil.copytree(MATHJAX_DIR, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _config_inited)
    app.connect("source-read", _source_read)
    app.connect("build-finished", _build_finished)
    app.connect("html-page-context", _page_fixes, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
