"""The self-checks of chapters 00-10 and 13 teach without handing over the answer.

Each exercise's untouched starter code is run through its check, as a learner first sees it:
the check must say "not yet", and neither its message nor its hint may quote the solution's code
(no stretch of 12 or more characters of a solution line).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dlkit.exercises as exercises

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from assignments import find_exercises  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("[01][0-9]_*.ipynb"))


def _solution_code(source: str) -> list[str]:
    lines = [" ".join(line.split()) for line in source.splitlines()]
    return [line for line in lines if line and not line.startswith("#") and "check_" not in line
            and not line.startswith(("feedback", "assert", "def ", "class ", "import ", "from "))]


def _quotes(text: str, line: str, n: int = 12) -> bool:
    text = " ".join(text.split())
    return any(line[i:i + n] in text for i in range(len(line) - n + 1))


def _starter_cases():
    for chapter in CHAPTERS:
        nb = nbformat.read(chapter, as_version=4)
        for ex in find_exercises(nb):
            yield pytest.param(nb.cells[ex.task].source, nb.cells[ex.check].source,
                               nb.cells[ex.solution].source, id=f"{chapter.stem[:2]}-{ex.name}")


# The few names a starter cell takes from earlier cells of its chapter, rebuilt small.
CONTEXT = {
    "00-num_steps": "from dlkit.env import profile",
    "01-flatten_size": "class _Net:\n    conv1 = nn.Conv2d(3, 64, 3, padding=1)\n"
                       "    pool = nn.MaxPool2d(2, 2)\nnet = _Net()",
    "10-perplexity": "table = {'LSTM': {'loss': 1.6}}\nbest = 'LSTM'",
}


@pytest.mark.parametrize("task, check, solution", list(_starter_cases()))
def test_the_starter_code_gets_a_hint_not_the_answer(request, task, check, solution):
    namespace = {"torch": torch, "np": np, "nn": nn, "F": F, "math": math, "print": lambda *a: None}
    exec(CONTEXT.get(request.node.callspec.id, ""), namespace)  # noqa: S102
    namespace.update({name: getattr(exercises, name) for name in dir(exercises)
                      if not name.startswith("__")})
    exec(task, namespace)  # noqa: S102 (the chapter's own starter code)
    feedback = eval(check.strip(), namespace)  # noqa: S307
    assert isinstance(feedback, exercises.Feedback) and not feedback.ok, str(feedback)
    for line in _solution_code(solution):
        if len(line) >= 12:
            assert not _quotes(str(feedback), line), (str(feedback), line)
