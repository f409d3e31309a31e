"""Checks of the book as a whole: configuration, chapter conventions, tools."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [ch["file"] for part in toc["parts"] for ch in part["chapters"]]


def test_every_chapter_is_in_the_toc_and_every_toc_entry_exists():
    listed = _toc_files()
    for nb in CHAPTERS:
        assert f"chapters/{nb.stem}" in listed, f"{nb.name} is missing from _toc.yml"
    for entry in listed:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".ipynb", ".md")), entry


def test_book_renders_stored_outputs_only():
    assert _config()["execute"]["execute_notebooks"] == "off"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_conventions(path: Path):
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "title first"
    code = [c for c in cells if c.cell_type == "code"]
    # First code cell: the Colab-only install, from the repository named in _config.yml.
    url = _config()["repository"]["url"]
    assert 'if "google.colab" in sys.modules' in code[0].source
    assert f"git+{url}" in code[0].source, "install URL differs from _config.yml's repository"
    # Second code cell: seed, profile and device, printed.
    for needle in ("seed_everything(", "profile()", "pick_device()", "print(prof)", "describe("):
        assert needle in code[1].source, f"second code cell lacks {needle}"
    # Executed and committed with outputs; errors only where a cell is tagged for them.
    assert all(c.execution_count is not None for c in code), "not fully executed"
    for c in code:
        errors = [o for o in c.outputs if o.output_type == "error"]
        if errors:
            assert "raises-exception" in c.metadata.get("tags", []), c.source[:80]
    assert sum("NBVAL_CHECK_OUTPUT" in c.source for c in code) >= 2
    # Exercises: every check is followed by a folded solution.
    solutions = [c for c in code if c.source.startswith("# Solution")]
    assert solutions, "no exercises"
    assert all("hide-cell" in c.metadata.get("tags", []) for c in solutions)


def test_student_copies_remove_solutions_and_outputs(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "student_copies.py"), *map(str, CHAPTERS),
         "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )
    for path in CHAPTERS:
        original = nbformat.read(path, as_version=4)
        copy = nbformat.read(tmp_path / path.name, as_version=4)
        n_solutions = sum(c.source.startswith("# Solution") for c in original.cells)
        assert n_solutions > 0
        assert len(copy.cells) == len(original.cells) - n_solutions
        assert not any(c.source.startswith("# Solution") for c in copy.cells)
        assert all(not c.outputs for c in copy.cells if c.cell_type == "code")
        assert f"{path.name}: {n_solutions} solution cell(s) removed" in result.stdout


def test_execute_tool_leaves_the_file_alone_when_a_cell_fails(tmp_path: Path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    before = path.read_bytes()
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "execute_notebooks.py"), str(path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert "left unchanged" in result.stderr
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["broken.ipynb"]  # no temporary left behind


def test_execute_tool_writes_outputs(tmp_path: Path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "ok.ipynb"
    nbformat.write(nb, path)
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "execute_notebooks.py"), str(path)],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["notebook"] == str(path)
    out = nbformat.read(path, as_version=4).cells[0].outputs
    assert out[0]["text"].strip() == "42"


def test_readme_commands_match_the_makefile_and_ci():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for target in ("book", "test", "execute"):
        assert re.search(rf"^{target}:", makefile, re.M), target
        assert f"make {target}" in readme
    assert "make test" in ci and "make book" in ci
