"""dlkit.notebook.expect_error: a cell shows its expected error and the notebook goes on."""

from __future__ import annotations

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from dlkit.notebook import expect_error


def test_the_expected_error_is_shown_and_swallowed(capsys):
    with expect_error(ValueError, match="shape"):
        raise ValueError("wrong shape (3, 4)")
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: wrong shape (3, 4)" in err


def test_no_error_is_the_surprise_and_raises():
    with pytest.raises(AssertionError, match="expected ValueError or KeyError to be raised"):
        with expect_error(ValueError, KeyError):
            pass


def test_an_unexpected_error_or_message_is_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        with expect_error(ValueError):
            1 / 0
    with pytest.raises(AssertionError, match="matching 'shape'"):
        with expect_error(ValueError, match="shape"):
            raise ValueError("something else")


def test_types_are_required():
    with pytest.raises(TypeError, match="exception types"):
        with expect_error():
            pass
    with pytest.raises(TypeError, match="exception types"):
        with expect_error("ValueError"):
            pass


def test_in_a_kernel_the_error_is_the_cells_output_and_later_cells_run():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from dlkit.notebook import expect_error\n"
                                  "with expect_error(TypeError):\n    len(5)"),
        nbformat.v4.new_code_cell("print('the next cell ran')"),
    ]
    # allow_errors=False: a cell whose reply is an error would stop the run, as Run all does.
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=False).execute()
    errors = [o for o in nb.cells[0].outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "TypeError", nb.cells[0].outputs
    assert "has no len()" in errors[0].evalue
    assert nb.cells[1].outputs[0].text == "the next cell ran\n"


def test_glue_records_with_myst_nb_and_needs_nothing_without_it(monkeypatch):
    import builtins

    from IPython.core.interactiveshell import InteractiveShell

    from dlkit.notebook import glue

    shell = InteractiveShell.instance()
    shown = []
    monkeypatch.setattr(shell.display_pub, "publish",
                        lambda data, metadata=None, **kw: shown.append((data, metadata)))
    glue("acc", 0.5, display=False)  # myst-nb is installed here (the book's build)
    data, metadata = shown.pop()
    assert metadata["scrapbook"]["name"] == "acc"
    assert data == {"application/papermill.record/text/plain": "0.5"}
    glue("gap", np.float64(1.25), display=False)  # recorded as the number, not "np.float64(...)"
    assert shown.pop()[0] == {"application/papermill.record/text/plain": "1.25"}

    real_import = builtins.__import__

    def no_myst(name, *args, **kwargs):
        if name.startswith("myst_nb"):
            raise ImportError("No module named 'myst_nb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst)
    glue("acc", 0.5, display=False)  # Colab: nothing to record, nothing shown
    assert shown == []
    glue("acc", 0.5, display=True)
    assert shown and shown[-1][0]["text/plain"] == "0.5"


def test_claim_raises_on_real_profiles_and_only_reports_under_smoke(monkeypatch, capsys):
    from dlkit.notebook import claim

    monkeypatch.setenv("DLKIT_PROFILE", "cpu")
    claim(True, "fine")
    with pytest.raises(AssertionError, match="expected A > B, got 1 < 2"):
        claim(False, "expected A > B, got 1 < 2")
    monkeypatch.setenv("DLKIT_PROFILE", "smoke")
    claim(False, "expected A > B, got 1 < 2")
    assert capsys.readouterr().out == "[smoke profile: too small to check] expected A > B, got 1 < 2\n"
