"""Write student copies of chapters: solution cells removed, outputs cleared.

Usage (``make student`` runs it on every chapter)::

    python tools/student_copies.py chapters/01_quickstart.ipynb [...] --out student

A solution cell is a code cell tagged ``hide-cell`` whose source starts with ``# Solution``, the
convention every chapter follows. The task and check cells stay, so a student still gets the
feedback of ``dlkit.exercises``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # dlkit from this checkout
from dlkit._util import atomic_write  # noqa: E402


def is_solution(cell: nbformat.NotebookNode) -> bool:
    """True for the folded solution cells of the exercises."""
    tags = cell.get("metadata", {}).get("tags", [])
    return (
        cell.get("cell_type") == "code"
        and "hide-cell" in tags
        and cell.get("source", "").lstrip().startswith("# Solution")
    )


def student_copy(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """Return a copy without solutions or outputs, and the number of solutions removed."""
    out = nbformat.from_dict(nb)
    kept = [c for c in out.cells if not is_solution(c)]
    removed = len(out.cells) - len(kept)
    for cell in kept:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    out.cells = kept
    out.metadata.pop("widgets", None)
    return out, removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("student"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        copy, removed = student_copy(nb)
        target = args.out / path.name
        with atomic_write(target, "w") as f:  # never a half-written copy, even with --out chapters
            nbformat.write(copy, f)
        print(f"{target}: {removed} solution cell(s) removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
