"""Every dlkit module imports, and the installed packages meet the floors pyproject.toml states.

A floor that is too low fails here with the package, the floor and the installed version, not
deep inside a chapter with an AttributeError.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import dlkit
from dlkit.sysinfo import installed_version, unmet_floor

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> list[str]:
    names = ["dlkit"]
    for info in pkgutil.walk_packages(dlkit.__path__, prefix="dlkit."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # running it is the point of a __main__ module (it starts a server)
        names.append(info.name)
    return sorted(names)


def _dependencies() -> list[str]:
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: read the list by hand
        block = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S)
        assert block, "pyproject.toml has no [project] dependencies list"
        return re.findall(r'^\s*"([^"]+)"', block.group(1), re.M)
    return tomllib.loads(text)["project"]["dependencies"]


def test_the_walk_finds_the_subpackages():
    found = _modules()
    for name in ("dlkit.data", "dlkit.data.registry", "dlkit.deploy.export", "dlkit.scratch.layers",
                 "dlkit.widgets", "dlkit.exercises", "dlkit._util"):
        assert name in found, f"{name} missing from the module walk"


@pytest.mark.parametrize("name", _modules())
def test_every_module_imports(name: str):
    importlib.import_module(name)


def test_pyproject_floors_are_read():
    deps = {Requirement(d).name: str(Requirement(d).specifier) for d in _dependencies()}
    assert deps["torch"] == ">=2.5" and deps["numpy"] == ">=2.0", deps


@pytest.mark.parametrize("requirement", _dependencies())
def test_installed_version_meets_the_floor(requirement: str):
    message = unmet_floor(requirement, installed_version(Requirement(requirement).name))
    assert message is None, message


def test_an_unmet_floor_names_package_floor_and_installed_version():
    assert unmet_floor("torch>=2.5", "2.11.0+cu128") is None  # a local build label is fine
    assert unmet_floor("numpy>=2.0", "2.1.3") is None
    message = unmet_floor("torch>=2.5", "2.4.1")
    assert message == ("torch 2.4.1 is installed, but dlkit needs torch>=2.5 (pyproject.toml): "
                       "upgrade it, e.g. pip install 'torch>=2.5'")
    assert unmet_floor("onnxscript>=0.1", None) == (
        "onnxscript is not installed; dlkit needs onnxscript>=0.1 (pyproject.toml)")


def test_requirements_txt_repeats_the_floors_of_pyproject():
    """The chapters' environment may not promise less than the package itself needs."""
    floors = {Requirement(d).name.lower(): Requirement(d).specifier for d in _dependencies()}
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    listed = {Requirement(ln).name.lower(): Requirement(ln).specifier for ln in lines if ln}
    for name, spec in floors.items():
        assert name in listed, f"requirements.txt lacks {name}{spec} (a dlkit dependency)"
        assert listed[name] == spec, f"requirements.txt says {name}{listed[name]}, pyproject.toml {name}{spec}"


def test_floors_never_exceed_what_colab_ships():
    """Installing dlkit on Colab must not upgrade a package Colab already has."""
    freeze = ROOT.parent / "shared" / "colab" / "pip-freeze.gpu.txt"  # beside the checkout
    if not freeze.is_file():
        pytest.skip("Colab's published pip freeze is not on this machine")
    colab = {}
    for line in freeze.read_text().splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            colab[name.strip().lower()] = version.strip()
    for dep in _dependencies():
        req = Requirement(dep)
        if req.name.lower() in colab:
            assert unmet_floor(dep, colab[req.name.lower()]) is None, (
                f"{req} is above Colab's {req.name} {colab[req.name.lower()]}")
