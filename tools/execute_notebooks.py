"""Re-execute chapter notebooks in place so their committed outputs are fresh.

Usage (from the repository root; ``make execute`` runs it on every chapter)::

    python tools/execute_notebooks.py chapters/01_quickstart.ipynb [...]

Each notebook runs top to bottom in a fresh kernel started in ``chapters/``, with widget state
stored so the explorers of ``dlkit.widgets`` render in the book. Progress bars are not kept as
widgets: their models are dropped from the stored state and each bar's output keeps a plain-text
line with the bar's final state (a bar is a record of a run, not something to interact with).
Cells tagged ``raises-exception`` may fail; any other error stops that notebook and leaves its
file untouched, so a failed run never destroys the outputs committed before. The new file is
written under a hidden temporary name that no ``*.ipynb`` glob matches, then renamed over the
old one (``dlkit._util.atomic_write``). Prints one JSON line per notebook with its profile and
seconds.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # dlkit from this checkout
from dlkit._util import atomic_write  # noqa: E402

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_PROGRESS_MODELS = {"FloatProgressModel", "IntProgressModel"}
_REF = "IPY_MODEL_"


def _refs(value) -> list[str]:
    """Model ids referenced (as ``"IPY_MODEL_<id>"``) anywhere inside a widget's state."""
    if isinstance(value, str):
        return [value[len(_REF):]] if value.startswith(_REF) else []
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def _is_progress_bar(model: dict, state: dict) -> bool:
    """tqdm's notebook bar: an HBox of exactly [HTML, Progress, HTML] (tqdm.notebook's layout)."""
    if model.get("model_name") != "HBoxModel":
        return False
    kids = [state.get(r, {}).get("model_name") for r in _refs(model["state"].get("children", []))]
    return len(kids) == 3 and kids[0] == kids[2] == "HTMLModel" and kids[1] in _PROGRESS_MODELS


def _final_text(box: dict, state: dict) -> str:
    """The bar's last state as tqdm prints it in a terminal: ``desc: 100%|██████████| 5/5 [...]``."""
    left, bar, right = (state[r]["state"] for r in _refs(box["state"]["children"]))
    total, done = float(bar.get("max") or 0), float(bar.get("value") or 0)
    filled = int(round(10 * done / total)) if total > 0 else 0
    text = f"{html.unescape(left.get('value', ''))}|{'█' * filled}{' ' * (10 - filled)}|{html.unescape(right.get('value', ''))}"
    return text.replace("\u2007", " ")


def strip_progress_bars(nb) -> int:
    """Remove tqdm progress-bar widgets from a notebook's stored widget state, in place.

    The bar's models (the HBox, its three children and their layout and style models, unless
    another widget also uses them) leave ``metadata.widgets``; each output that displayed a bar
    loses its widget view and keeps a ``text/plain`` line with the bar's final state. Other
    widgets keep their state. ``metadata.widgets`` is removed when nothing is left in it.

    Args:
        nb: A notebook node, as ``nbformat.read`` returns.

    Returns:
        The number of progress bars removed.
    """
    stored = nb.metadata.get("widgets", {}).get(WIDGET_STATE)
    if not stored or not stored.get("state"):
        return 0
    state = stored["state"]
    bars = {mid for mid, m in state.items() if _is_progress_bar(m, state)}
    while True:
        # Everything a bar reaches (children, layouts, styles), less what other widgets use;
        # a bar that is itself part of another widget stays.
        doomed, todo = set(), list(bars)
        while todo:
            mid = todo.pop()
            if mid not in doomed and mid in state:
                doomed.add(mid)
                todo.extend(_refs(state[mid].get("state", {})))
        used = {r for mid, m in state.items() if mid not in doomed for r in _refs(m.get("state", {}))}
        if not bars & used:
            doomed -= used
            break
        bars -= used
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view and view.get("model_id") in bars:
                out["data"]["text/plain"] = _final_text(state[view["model_id"]], state)
                del out["data"][WIDGET_VIEW]
    for mid in doomed:
        del state[mid]
    if not state:
        del nb.metadata["widgets"][WIDGET_STATE]
        if not nb.metadata["widgets"]:
            del nb.metadata["widgets"]
    return len(bars)


def execute(path: Path, timeout: int) -> dict:
    """Execute one notebook and write it back atomically; return a summary dict."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
        record_timing=False,
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    bars = strip_progress_bars(nb)
    # A hidden ".NAME.ipynb.XXXX.tmp" beside the target, renamed over it when complete: an
    # interrupted run leaves the old file intact and nothing that chapters/*.ipynb matches.
    with atomic_write(path, "w") as f:
        nbformat.write(nb, f)
    return {
        "notebook": str(path),
        "profile": os.environ.get("DLKIT_PROFILE", "auto"),
        "seconds": round(seconds, 1),
        "progress_bars_stripped": bars,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    # The python3 kernel spec runs "python" from PATH: make that the interpreter running us, so
    # chapters execute with the same packages whether or not a virtual environment is activated.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    failed = 0
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            print(f"error: {path} is not a notebook file", file=sys.stderr)
            failed += 1
            continue
        try:
            print(json.dumps(execute(path, args.timeout)), flush=True)
        except CellExecutionError as err:
            print(f"error: {path} failed; its file was left unchanged:\n{err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
