"""What a user of the repository or of the installed package relies on beyond the code."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_metadata_ships_both_licences():
    meta = importlib.metadata.metadata("dlkit")
    assert sorted(meta.get_all("License-File") or []) == ["LICENSE", "LICENSE-TEXT"], meta.get_all("License-File")
    assert meta.get("License-Expression") == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    text = (ROOT / "LICENSE-TEXT").read_text()
    assert "Creative Commons Attribution 4.0" in text and "legalcode" in text


def test_the_readme_states_the_licences_the_files_hold():
    readme = (ROOT / "README.md").read_text()
    assert "MIT licence (`LICENSE`)" in readme and "CC BY 4.0 (`LICENSE-TEXT`)" in readme


def test_the_readme_command_to_open_the_chapters_exists():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "`make lab`" in readme
    assert re.search(r"^lab: .*\n\t\$\(BIN\)/jupyter lab chapters$", makefile, re.M), "no lab target"
    # JupyterLab comes with the project's requirements into the same environment.
    assert re.search(r"^jupyterlab>=", (ROOT / "requirements.txt").read_text(), re.M)
    assert shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)), (
        "jupyter-lab is not installed next to this Python: pip install -r requirements.txt")
