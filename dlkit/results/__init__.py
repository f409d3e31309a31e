"""Benchmark results measured on hardware the book's build machine does not have, shipped with
the package so that a chapter prints them wherever it runs (on Colab there is no checkout).

Each file is exactly what a script in ``benchmarks/`` printed (one JSON object, or one per line
for ``.jsonl``), and names its hardware and software in its own fields; ``README.md`` beside
them gives the command and the machine of each. Used in chapters 02, 04, 08 and 13.
"""

from __future__ import annotations

import fnmatch
import json
from importlib import resources
from typing import Any

__all__ = ["names", "load"]


def names(pattern: str = "*") -> list[str]:
    """The stored result files whose names match ``pattern`` (``fnmatch``), sorted.

    Args:
        pattern: E.g. ``"training_throughput_*.json"``.

    Returns:
        File names, e.g. ``["training_throughput_cpu.json", ...]``.
    """
    folder = resources.files(__name__)
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith((".json", ".jsonl")) and fnmatch.fnmatch(p.name, pattern))


def load(name: str) -> Any:
    """One stored result: the JSON object of a ``.json`` file, a list of them for ``.jsonl``.

    Args:
        name: A file name from :func:`names`.

    Returns:
        The parsed JSON.

    Raises:
        FileNotFoundError: If no stored result has that name (the message lists those that do).
    """
    if name not in names():
        raise FileNotFoundError(f"no stored result named {name!r}; stored: {', '.join(names())}")
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)
