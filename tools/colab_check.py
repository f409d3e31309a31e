"""Run every chapter the way Colab would: Colab's Python and package versions, the built wheel.

Usage (``make colab-check`` runs it; CI too)::

    python tools/colab_check.py [--python PY313] [--freeze FILE] [chapters/NN_name.ipynb ...]

Colab's GPU runtime is described by its published ``pip freeze`` (``../shared/colab/``). This
tool builds a Colab-like environment outside the repository: a virtual environment made with a
Python of Colab's minor version, torch, torchvision, numpy, ipywidgets, matplotlib and
scikit-learn at Colab's versions, then the ``dlkit`` wheel built from this checkout, installed
with every package Colab ships pinned to Colab's version (``pip install -c``), so an install
that would upgrade something Colab ships fails here. The chapters are copied to a folder of
their own (no checkout beside them) and executed there one at a time under the ``smoke``
profile. One JSON line per chapter, then a summary; the exit status is 1 if a chapter failed.

Without a Python of Colab's version (``--python``, ``$COLAB_PYTHON``, ``python3.13`` on the
PATH, or pyenv's) or without the freeze file, it says so and exits 0: nothing was checked.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FREEZE = ROOT.parent / "shared" / "colab" / "pip-freeze.gpu.txt"
COLAB_PYTHON = "3.13"
#: Installed first, at Colab's versions: what the chapters import besides dlkit's own needs.
BASE = ("torch", "torchvision", "numpy", "ipywidgets", "matplotlib", "scikit-learn",
        "ipykernel", "nbclient", "nbformat")
#: Packages that are torch's CUDA runtime, not pinned (see :func:`colab_pins`).
CUDA_RUNTIME = ("nvidia-", "cuda-")
RUNNER = '''
import json, sys, time, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
start = time.perf_counter()
result = {"chapter": path, "ok": True}
try:
    NotebookClient(nb, timeout=int(sys.argv[2]), kernel_name="python3",
                   resources={"metadata": {"path": "."}}).execute()
except CellExecutionError as err:
    result.update(ok=False, error=f"{err.ename}: {err.evalue}"[:500])
except Exception as err:  # a timeout or a dead kernel
    result.update(ok=False, error=f"{type(err).__name__}: {err}"[:500])
result["seconds"] = round(time.perf_counter() - start, 1)
print(json.dumps(result))
'''


def colab_pins(freeze: Path) -> dict[str, str]:
    """``{name: version}`` for every ``name==version`` line of a pip freeze.

    Local version labels (``2.11.0+cu128``) are dropped: the package index has the plain
    release. Lines installed from a URL or a path (``name @ ...``) are left out, and so are
    the CUDA runtime libraries: Colab's torch comes from PyTorch's CUDA 12.8 index, the index's
    torch of the same version brings the CUDA libraries it was built with (it runs on the CPU
    all the same), and no chapter imports them.
    """
    pins = {}
    for line in freeze.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "==" not in line or " @ " in line:
            continue
        name, version = line.split("==", 1)
        name = name.strip().lower()
        if name.startswith(CUDA_RUNTIME):
            continue
        pins[name] = version.strip().split("+", 1)[0]
    return pins


def _version(python: str) -> str | None:
    try:
        run = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def find_python(explicit: str | None) -> tuple[str, str] | None:
    """A Python of Colab's minor version and its version: the argument, ``$COLAB_PYTHON``, the
    PATH, then pyenv's versions. Candidates that do not run (a pyenv shim of a version that is
    not selected) or have another version are passed over."""
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [explicit, os.environ.get("COLAB_PYTHON"), shutil.which(f"python{COLAB_PYTHON}"),
                  *sorted(glob.glob(f"{pyenv_root}/versions/{COLAB_PYTHON}.*/bin/python{COLAB_PYTHON}"),
                          reverse=True)]
    for candidate in filter(None, candidates):
        version = _version(candidate)
        if version and version.startswith(COLAB_PYTHON + "."):
            return candidate, version
        if candidate in (explicit, os.environ.get("COLAB_PYTHON")):
            print(f"colab-check: {candidate} is not a working Python {COLAB_PYTHON} "
                  f"({version or 'does not run'})", file=sys.stderr)
    return None


def _run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def build_environment(python: str, pins: dict[str, str], work: Path) -> Path:
    """The Colab-like virtual environment with the built wheel installed; returns its python."""
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)])
    wheel = next(dist.glob("dlkit-*.whl"))
    venv = work / "venv"
    _run([python, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    constraints = work / "colab-constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", str(constraints)]
    _run(pip + [n for n in BASE if n in pins] + [n for n in BASE if n not in pins])
    _run(pip + [str(wheel)])  # its dependencies, with Colab's packages held at Colab's versions
    _run(pip + ["--force-reinstall", "--no-deps", str(wheel)])  # this checkout's code, always
    return Path(py)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="default: every chapter")
    parser.add_argument("--python", help=f"a Python {COLAB_PYTHON} interpreter")
    parser.add_argument("--freeze", type=Path, default=FREEZE, help="Colab's pip freeze")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--keep", type=Path, help="build the environment in this folder and keep it")
    args = parser.parse_args(argv)
    found = find_python(args.python)
    if found is None:
        print(f"colab-check: skipped, no Python {COLAB_PYTHON} found (Colab's version): pass "
              f"--python, set $COLAB_PYTHON, or install python{COLAB_PYTHON}")
        return 0
    if not args.freeze.is_file():
        print(f"colab-check: skipped, Colab's pip freeze is not at {args.freeze}")
        return 0
    python, version = found
    chapters = [Path(c) for c in args.chapters] or sorted((ROOT / "chapters").glob("*.ipynb"))
    work = args.keep or Path(tempfile.mkdtemp(prefix="colab-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        py = build_environment(python, colab_pins(args.freeze), work)
        folder = work / "chapters"  # the notebooks alone, as a learner's Colab has them
        folder.mkdir(exist_ok=True)
        runner = work / "run_chapter.py"
        runner.write_text(RUNNER)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(DLKIT_PROFILE="smoke", PYTHONNOUSERSITE="1", MPLBACKEND="Agg")
        env["PATH"] = f"{py.parent}{os.pathsep}{env.get('PATH', '')}"
        results = []
        for chapter in chapters:
            copy = folder / chapter.name
            shutil.copyfile(chapter, copy)
            run = subprocess.run([str(py), str(runner), copy.name, str(args.timeout)], cwd=folder,
                                 env=env, capture_output=True, text=True)
            line = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                result = {"chapter": copy.name, "ok": False,
                          "error": (run.stderr.strip().splitlines() or ["no output"])[-1][:500]}
            result["chapter"] = chapter.name
            results.append(result)
            print(json.dumps(result), flush=True)
        installed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"],
                                   capture_output=True, text=True, check=True).stdout
        versions = {p["name"].lower(): p["version"] for p in json.loads(installed)}
        failed = [r["chapter"] for r in results if not r["ok"]]
        print(json.dumps({"colab_check": "summary", "python": version,
                          "torch": versions.get("torch"), "torchvision": versions.get("torchvision"),
                          "numpy": versions.get("numpy"), "ipywidgets": versions.get("ipywidgets"),
                          "chapters": len(results), "failed": failed}))
        return 1 if failed else 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
