"""The environment report of ``python -m dlkit.env``: floors, devices, data folders, profile."""

from __future__ import annotations

import subprocess
import sys

import torch

from dlkit import sysinfo
from dlkit.sysinfo import dependencies, unmet_floor


def test_dependencies_compare_each_floor_with_what_is_installed(monkeypatch):
    versions = {"torch": "2.4.1", "numpy": "2.1.3", "tqdm": None}
    monkeypatch.setattr(sysinfo, "installed_version", lambda name: versions[name])
    deps = dependencies(["torch>=2.5", "numpy>=2.0", "tqdm>=4.66",
                         "pytest>=8; extra == 'test'"])  # an extra's requirement is left out
    assert [(d.name, d.floor, d.installed, d.ok) for d in deps] == [
        ("torch", ">=2.5", "2.4.1", False), ("numpy", ">=2.0", "2.1.3", True),
        ("tqdm", ">=4.66", None, False)]
    assert deps[0].problem == unmet_floor("torch>=2.5", "2.4.1")
    assert "not installed" in deps[2].problem


def test_the_installed_package_declares_the_floors_of_pyproject():
    # The report reads the installed metadata: it must agree with the checkout's pyproject.toml
    # (a stale editable install would report floors that are no longer true).
    from test_imports import _dependencies

    declared = {d.name: d.floor for d in dependencies()}
    for line in _dependencies():
        req = sysinfo.Requirement(line)
        assert declared.get(req.name) == str(req.specifier), (
            f"installed dlkit declares {req.name}{declared.get(req.name)}, pyproject.toml says "
            f"{req}: reinstall with pip install -e .")


def test_report_flags_a_missing_dependency_and_lists_data_and_profile(monkeypatch, tmp_path):
    for name in ("cifar10.npz", "tiny_shakespeare.txt", "ml-latest-small.zip"):
        (tmp_path / name).write_bytes(b"")  # only the names are looked at
    monkeypatch.setenv("DLKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DLKIT_PROFILE", "smoke")
    real = sysinfo.installed_version
    monkeypatch.setattr(sysinfo, "installed_version",
                        lambda name: None if name == "tqdm" else real(name))
    text, ok = sysinfo.report()
    assert not ok
    assert "[FAIL] tqdm" in text and "-> tqdm is not installed" in text
    assert "[OK]   torch" in text and torch.__version__ in text
    assert f"$DLKIT_DATA_DIR {tmp_path}: cifar10, tiny_shakespeare, movielens_small" in text
    assert "Profile: smoke (DLKIT_PROFILE)" in text


def test_python_m_dlkit_env_prints_the_report_and_exits_zero_here():
    run = subprocess.run([sys.executable, "-m", "dlkit.env"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Dependencies (installed vs the floor dlkit declares):" in run.stdout
    assert "[FAIL]" not in run.stdout
    assert run.stderr == "", run.stderr  # no runpy warning, no noise
