"""What the chapters need from the notebook they run in: cells that fail on purpose, and glue.

**Cells that fail on purpose.**
Some cells exist to show an error: chapter 01 runs the article's buggy network and reads the
messages, chapter 07 loads a truncated checkpoint. Left to raise, such a cell stops Colab's
"Run all" (and any top-to-bottom run) before the learner reaches the training. Wrapped in
:func:`expect_error`, the cell shows the same traceback as an uncaught error, and the notebook
goes on; if the expected error does *not* happen, that is the surprise, and it raises.

**Conclusions from experiments.** A chapter asserts what it concludes from its measurements
("dropout narrows the gap"), so a wrong conclusion stops it. Under the ``smoke`` profile, which
only proves that every cell runs, the experiments are too small to mean anything: there
:func:`claim` prints the conclusion it could not check instead of raising. Identities (a
gradient equals autograd's) stay plain ``assert``: they hold at any size.

**Numbers for the text.** The book's prose quotes measured numbers through myst-nb's ``glue``
(the value is stored in the cell's output and pasted by a ``{glue}`` role). myst-nb belongs to
the book's build, not to a learner's Colab runtime, so the chapters import :func:`glue` from here:
myst-nb's own where it is installed, and otherwise a stand-in that shows the value when asked to
and stores nothing (outside the book there is no text to paste it into).
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["expect_error", "claim", "glue"]


@contextmanager
def expect_error(*expected: type[BaseException], match: str | None = None) -> Iterator[None]:
    """Run the block, show the expected exception as the cell's error, and carry on.

    Used in chapter 01 (the article's bugs) and chapter 07 (a corrupt checkpoint).

    Args:
        *expected: The exception types the block must raise (at least one).
        match: A regular expression the exception's message must contain (``re.search``).

    Raises:
        TypeError: If no exception type is given.
        AssertionError: If the block raises nothing, or an expected type whose message does not
            match ``match``. Any other exception propagates unchanged.
    """
    if not expected or not all(isinstance(t, type) and issubclass(t, BaseException)
                               for t in expected):
        raise TypeError(f"expect_error needs exception types, got {expected!r}")
    names = " or ".join(t.__name__ for t in expected)
    try:
        yield
    except expected as err:
        if match is not None and not re.search(match, str(err)):
            raise AssertionError(f"expected {names} matching {match!r}, got: {err}") from err
        _show(err)
    else:
        raise AssertionError(f"expected {names} to be raised, but the block ran without error")


def _show(err: BaseException) -> None:
    """Display ``err`` as an uncaught error would be: IPython's traceback in a notebook."""
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python without IPython installed
        shell = None
    else:
        shell = get_ipython()
    if shell is not None:
        # Rendered as the cell's error output (a notebook shows it like any other error), but
        # the cell itself succeeds, so "Run all" goes on.
        shell.showtraceback((type(err), err, err.__traceback__))
    else:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)


def glue(name: str, value: object, display: bool = True) -> None:
    """Record ``value`` under ``name`` for the book's ``{glue}`` roles (myst-nb's ``glue``).

    Used in every chapter whose text quotes a measured number. Where myst-nb is not installed
    (on Colab), the value is displayed if ``display`` is true and nothing is recorded.

    Args:
        name: The name the text refers to (the book writes ``{glue:text}`` and this name).
        value: The value: a number, a string or a displayable object. A numpy or torch
            scalar is recorded as the Python number it holds (the book formats only those).
        display: Also show the value in the cell's output.
    """
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()  # np.float64(0.5) would be recorded as its repr, not a number
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)


def claim(condition: bool, message: str) -> None:
    """Assert a conclusion drawn from an experiment, unless the profile is ``smoke``.

    Used in the chapters that conclude from measurements (06, 07, 09 and later ones).

    Args:
        condition: The conclusion, evaluated on the chapter's numbers.
        message: What was expected and what came out (shown when it fails).

    Raises:
        AssertionError: If ``condition`` is false under the ``cpu`` or ``gpu`` profile.
    """
    if condition:
        return
    from dlkit.env import profile

    if profile().name == "smoke":
        print(f"[smoke profile: too small to check] {message}")
        return
    raise AssertionError(message)
