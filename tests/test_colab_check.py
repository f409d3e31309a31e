"""tools/colab_check.py: the Colab pins it builds from, and how it finds a Python of Colab's version."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab_check  # noqa: E402


def test_pins_drop_local_labels_urls_and_cuda_runtime(tmp_path):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("# comment\ntorch==2.11.0+cu128\nnumpy==2.1.3\n"
                      "jupyter_kernel_gateway @ git+https://example/kg@b134\n"
                      "nvidia-cudnn-cu12==9.10.2.21\ncuda-python==12.8.0\nIPyWidgets==7.7.1\n")
    assert colab_check.colab_pins(freeze) == {"torch": "2.11.0", "numpy": "2.1.3",
                                              "ipywidgets": "7.7.1"}


def test_the_published_freeze_pins_what_the_chapters_need():
    freeze = ROOT.parent / "shared" / "colab" / "pip-freeze.gpu.txt"
    if not freeze.is_file():
        import pytest
        pytest.skip("Colab's published pip freeze is not beside this checkout")
    pins = colab_check.colab_pins(freeze)
    for name in ("torch", "torchvision", "numpy", "ipywidgets", "matplotlib", "scikit-learn"):
        assert name in pins, f"{name} is not in Colab's freeze"


def test_a_python_of_another_version_is_passed_over(monkeypatch):
    monkeypatch.setattr(colab_check, "_version", lambda py: {"good": "3.13.0"}.get(py, "3.11.7"))
    monkeypatch.setattr(colab_check.shutil, "which", lambda name: None)
    monkeypatch.setenv("PYENV_ROOT", "/nonexistent")
    monkeypatch.delenv("COLAB_PYTHON", raising=False)
    assert colab_check.find_python("good") == ("good", "3.13.0")
    assert colab_check.find_python("bad") is None


def test_without_a_python_it_says_so_and_checks_nothing(monkeypatch, capsys):
    monkeypatch.setattr(colab_check, "find_python", lambda explicit: None)
    assert colab_check.main([]) == 0
    assert "colab-check: skipped, no Python 3.13 found" in capsys.readouterr().out
