"""tools/release.py pins the release every chapter's Colab cell installs, named once."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import release  # noqa: E402

REPO = "https://github.com/example/course"


def _project(tmp_path: Path, pinned: str = "v0.1.0") -> Path:
    (tmp_path / "chapters").mkdir()
    (tmp_path / "_config.yml").write_text(
        f"title: x\nrepository:\n  url: {REPO}\n  branch: main\ncourse_release: {pinned}\n")
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "dlkit"\nversion = "{pinned[1:]}"\n')
    for name in ("01_a", "02_b"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell("# T"),
                    nbformat.v4.new_code_cell(
                        'import sys\n\nif "google.colab" in sys.modules:\n'
                        f'    %pip install -q "dlkit @ git+{REPO}@{pinned}"'),
                    nbformat.v4.new_code_cell("x = 1")]
        nbformat.write(nb, tmp_path / "chapters" / f"{name}.ipynb")
    return tmp_path


def test_bumping_rewrites_config_version_and_every_chapter(tmp_path, monkeypatch):
    monkeypatch.setattr(release, "ROOT", _project(tmp_path))
    assert release.problems() == []
    changed = release.set_release("v0.2.0")
    assert sorted(p.name for p in changed) == ["01_a.ipynb", "02_b.ipynb", "_config.yml",
                                               "pyproject.toml"]
    assert "course_release: v0.2.0" in (tmp_path / "_config.yml").read_text()
    assert 'version = "0.2.0"' in (tmp_path / "pyproject.toml").read_text()
    nb = nbformat.read(tmp_path / "chapters" / "02_b.ipynb", as_version=4)
    assert nb.cells[1].source.endswith(f'%pip install -q "dlkit @ git+{REPO}@v0.2.0"')
    assert nb.cells[2].source == "x = 1"
    assert release.problems() == []


def test_a_chapter_left_behind_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(release, "ROOT", _project(tmp_path))
    text = (tmp_path / "_config.yml").read_text().replace("v0.1.0", "v0.3.0")
    (tmp_path / "_config.yml").write_text(text)
    found = release.problems()
    assert any("pyproject.toml" in p for p in found)
    assert sum("does not run" in p for p in found) == 2
    assert release.main(["--check"]) == 1


def test_bad_tags_and_missing_install_lines_change_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(release, "ROOT", _project(tmp_path))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="such as v0.2.0"):
        release.set_release("0.2")
    nb = nbformat.read(tmp_path / "chapters" / "02_b.ipynb", as_version=4)
    nb.cells[1].source = "import sys"
    nbformat.write(nb, tmp_path / "chapters" / "02_b.ipynb")
    before[tmp_path / "chapters" / "02_b.ipynb"] = (tmp_path / "chapters" / "02_b.ipynb").read_bytes()
    with pytest.raises(ValueError, match="02_b.ipynb: no Colab install line"):
        release.set_release("v0.2.0")
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # checked first, written after: 01_a was not rewritten either


def test_the_repository_itself_is_consistent():
    found = release.problems()
    assert found == [], "\n".join(found) + "\nrun: python tools/release.py <tag>"
