"""Re-execute chapter notebooks in place so their committed outputs are fresh.

Usage (from the repository root; ``make execute`` runs it on every chapter)::

    python tools/execute_notebooks.py chapters/01_quickstart.ipynb [...]

Each notebook runs top to bottom in a fresh kernel started in ``chapters/``, with widget state
stored so progress bars render in the book. Cells tagged ``raises-exception`` may fail; any other
error stops that notebook and leaves its file untouched, so a failed run never destroys the
outputs committed before. Prints one JSON line per notebook with its profile and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


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
    # Write next to the target, then rename: an interrupted run leaves the old file intact.
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=path.parent)
    os.close(fd)
    try:
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {
        "notebook": str(path),
        "profile": os.environ.get("DLKIT_PROFILE", "auto"),
        "seconds": round(seconds, 1),
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
