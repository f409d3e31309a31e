"""Autograded assignments from the chapters: student notebooks, hidden tests, a grades CSV.

Usage (``make assignments`` and ``make grade`` run these)::

    python tools/assignments.py generate chapters/*.ipynb --out assignments
    python tools/assignments.py grade submissions/ --assignments assignments --out grades.csv

``generate`` finds the exercises of each chapter by the book's convention, not by a list: a
solution cell is a code cell tagged ``hide-cell`` whose source starts with ``# Solution``; the
code cell before it is the check cell (a ``dlkit.exercises.check_*`` call), and the code cell
before that is the task cell the learner edits. It writes

- ``assignments/student/NN_name.ipynb``: what students get, the chapter without solutions and
  outputs (as ``make student`` makes it), the chapter's name in the notebook's metadata;
- ``assignments/grading/NN_name/tests/EXERCISE.py``: one hidden test per exercise, in
  otter-grader's OK format (plain Python, one point each): it calls the chapter's check from
  the ``dlkit.exercises`` module itself, with the arguments of the original check cell, and
  requires it to pass. Nothing of it is in the student notebook or in the ``dlkit`` package;
- ``assignments/grading/manifest.json``: chapters, exercises and points, in book order.

``grade`` grades every submission in a folder: ``NAME.ipynb`` (one chapter) or ``NAME/`` (a
folder of chapter notebooks) is student ``NAME``; the chapter is read from the notebook's
metadata, or from its file name. Each submission runs on its own, in a separate process:

1. the submission and the tests are read into memory before any student code runs, so nothing a
   submission does on disk can change another student's notebook or tests;
2. a fresh kernel runs every cell of the notebook (errors do not stop it, as in otter and
   nbgrader) in an empty working folder that holds only that notebook, with ``HOME`` and
   ``TMPDIR`` inside it, ``DLKIT_PROFILE=smoke`` and a clean environment; its output is discarded;
3. only then are the tests copied in and run by otter-grader's runner in the same kernel, each
   calling the check from the module (a check cell the student edited, deleted or shadowed with
   a function of the same name changes nothing);
4. the whole run has a wall-clock limit (``--timeout``): past it, every process of the
   submission is killed and it scores 0.

Where the system allows unprivileged user namespaces (``unshare -Urmpf``, most Linux
distributions), the submission also runs in its own mount and PID namespaces: the submissions
folder and the grading folder are empty there, the working folder is a private in-memory file
system (1 GB at most), and no other process is visible. Elsewhere the run prints a warning and
relies on the separate working folder alone. Neither is a security sandbox: code that
deliberately rewrites the grader inside its own kernel can fake its own score (no in-process
autograder prevents that; read the notebooks you grade), and outside the namespaces it can read
any file the teacher can.

The CSV has one row per student, one column per exercise (``CHAPTER:EXERCISE``, in book order,
for the chapters that were submitted) and the total. Used by teachers of the course; not part of
``dlkit``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # dlkit from this checkout
sys.path.insert(0, str(ROOT / "tools"))
from dlkit._util import atomic_write  # noqa: E402
from student_copies import is_solution, student_copy  # noqa: E402

METADATA_KEY = "dlkit_assignment"
MODULE = "dlkit.exercises"
DEFAULT_TIMEOUT = 300


# --------------------------------------------------------------------------------------------- #
# Finding exercises and writing their tests
# --------------------------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter: its name and the indices of its three cells."""

    name: str
    task: int
    check: int
    solution: int


def _check_names(source: str) -> list[str]:
    """Names of the ``check_*`` functions a cell calls, in order of appearance."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    calls.sort(key=lambda n: (n.lineno, n.col_offset))
    return [n.func.id for n in calls if n.func.id.startswith("check_")]


def find_exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """The exercises of a chapter, found by the task / check / solution cell convention.

    Args:
        nb: The chapter notebook.

    Returns:
        The exercises in notebook order; each is named after its check function (without
        ``check_``), with ``_2``, ``_3`` appended when a chapter checks the same thing twice.

    Raises:
        ValueError: when a solution cell is not preceded by a check cell and a task cell.
    """
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    found, seen = [], {}
    for i, cell in enumerate(nb.cells):
        if not is_solution(cell):
            continue
        before = [j for j in code if j < i and not is_solution(nb.cells[j])]
        if len(before) < 2 or not _check_names(nb.cells[before[-1]].source):
            raise ValueError(f"cell {i} is a solution, but the code cell before it calls no check_* "
                             "function: expected task cell, check cell, solution cell")
        check = before[-1]
        base = _check_names(nb.cells[check].source)[0].removeprefix("check_")
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        found.append(Exercise(name, before[-2], check, i))
    return found


class _Qualify(ast.NodeTransformer):
    """Rewrite ``check_x(...)`` to ``_dlkit_exercises.check_x(...)``: the module's function,
    whatever the learner's namespace binds to the name."""

    def __init__(self, names: set[str]):
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Load) and node.id in self.names:
            return ast.copy_location(
                ast.Attribute(ast.Name("_dlkit_exercises", ast.Load()), node.id, ast.Load()), node)
        return node


def _doctest_lines(statement: str) -> list[str]:
    lines = statement.splitlines()
    return [">>> " + lines[0]] + ["... " + line for line in lines[1:]]


def make_test(check_source: str, name: str, points: float = 1) -> dict:
    """An otter-grader OK-format test that the original check cell's verdict is right.

    Args:
        check_source: The source of the chapter's check cell.
        name: The exercise's name.
        points: The points the exercise is worth.

    Returns:
        The test as otter's ``test`` dict (one hidden doctest case).

    Raises:
        ValueError: when the cell does not end in a check call or a name bound to one.
    """
    import dlkit.exercises as module

    tree = ast.parse(check_source)
    names = {n for n in _check_names(check_source) if hasattr(module, n)}
    tree = ast.fix_missing_locations(_Qualify(names).visit(tree))
    if not tree.body:
        raise ValueError(f"the check cell of {name} is empty")
    *setup, last = tree.body
    body = [f">>> import {MODULE} as _dlkit_exercises"]
    for statement in setup:
        body += _doctest_lines(ast.unparse(statement))
    if isinstance(last, ast.Expr):
        verdict = ast.unparse(last.value)
    elif (isinstance(last, ast.Assign) and len(last.targets) == 1
          and isinstance(last.targets[0], ast.Name)):
        body += _doctest_lines(ast.unparse(last))
        verdict = last.targets[0].id
    else:
        raise ValueError(f"the check cell of {name} must end with the check call, got: "
                         f"{ast.unparse(last)!r}")
    body += [f">>> bool({verdict})", "True"]
    return {
        "name": name,
        "points": points,
        "suites": [{
            "cases": [{"code": "\n".join(body) + "\n", "hidden": True, "locked": False}],
            "scored": True, "setup": "", "teardown": "", "type": "doctest",
        }],
    }


def _test_file(test: dict) -> str:
    return f"OK_FORMAT = True\n\ntest = {test!r}\n"


def generate(notebooks: Sequence[Path], out: Path) -> dict:
    """Write student notebooks, hidden tests and the manifest for the chapters that have exercises.

    A chapter whose exercise cells break the convention is reported and left out; the others
    are written.

    Args:
        notebooks: Chapter notebooks.
        out: The assignments folder (``student/`` and ``grading/`` are written inside).

    Returns:
        The manifest: ``{"chapters": [{"chapter", "exercises": [{"name", "points"}]}],
        "errors": [...]}``.
    """
    chapters, errors = [], []
    for path in sorted(notebooks):
        nb = nbformat.read(path, as_version=4)
        try:
            exercises = find_exercises(nb)
            tests = {ex.name: make_test(nb.cells[ex.check].source, ex.name) for ex in exercises}
        except (ValueError, SyntaxError) as err:
            errors.append(f"{path}: {err}")
            print(f"error: {path}: {err}; chapter left out", file=sys.stderr)
            continue
        if not exercises:
            print(f"{path}: no exercises, skipped")
            continue
        chapter = path.stem
        student, _ = student_copy(nb)
        student.metadata[METADATA_KEY] = {"chapter": chapter,
                                          "exercises": [ex.name for ex in exercises]}
        task_ids = {id(nb.cells[ex.task]): ex.name for ex in exercises}
        check_ids = {id(nb.cells[ex.check]): ex.name for ex in exercises}
        kept = [c for c in nb.cells if not is_solution(c)]
        for original, cell in zip(kept, student.cells):
            if id(original) in task_ids:
                cell.metadata[METADATA_KEY] = {"exercise": task_ids[id(original)], "role": "task"}
            elif id(original) in check_ids:
                cell.metadata[METADATA_KEY] = {"exercise": check_ids[id(original)], "role": "check"}
                cell.metadata["editable"] = False  # Jupyter keeps self-check cells as they are
                cell.metadata["deletable"] = False
        (out / "student").mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "student" / path.name, "w") as f:
            nbformat.write(student, f)
        test_dir = out / "grading" / chapter / "tests"
        if test_dir.exists():
            shutil.rmtree(test_dir)
        test_dir.mkdir(parents=True)
        for name, test in tests.items():
            with atomic_write(test_dir / f"{name}.py", "w") as f:
                f.write(_test_file(test))
        points = [{"name": n, "points": t["points"]} for n, t in tests.items()]
        chapters.append({"chapter": chapter, "exercises": points})
        print(f"{out / 'student' / path.name}: {len(exercises)} exercise(s), tests in {test_dir}")
    (out / "grading").mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "grading" / "manifest.json", "w") as f:
        json.dump({"chapters": chapters}, f, indent=1)
    return {"chapters": chapters, "errors": errors}


# --------------------------------------------------------------------------------------------- #
# Grading: the parent side
# --------------------------------------------------------------------------------------------- #
@dataclass
class Submission:
    """One notebook of one student, read into memory."""

    student: str
    path: Path
    text: str
    chapter: str | None


def _chapter_of(text: str, filename: str, chapters: Sequence[str]) -> str | None:
    try:
        meta = json.loads(text).get("metadata", {}).get(METADATA_KEY, {})
    except (ValueError, AttributeError):
        meta = {}
    if isinstance(meta, dict) and meta.get("chapter") in chapters:
        return meta["chapter"]
    named = [c for c in chapters if c in filename]
    if len(named) == 1:
        return named[0]
    return chapters[0] if len(chapters) == 1 else None


def collect_submissions(folder: Path, chapters: Sequence[str]) -> list[Submission]:
    """Read every submission of a folder: ``NAME.ipynb`` or ``NAME/*.ipynb`` for student NAME.

    Args:
        folder: The folder of submissions.
        chapters: The chapters of the manifest.

    Returns:
        The submissions, sorted by student, each read into memory.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"expected a folder of submitted notebooks, got {folder}")
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            files, student = [entry], entry.stem
        elif entry.is_dir():
            files, student = sorted(entry.glob("*.ipynb")), entry.name
        else:
            continue
        for path in files:
            text = path.read_text(encoding="utf-8", errors="replace")
            found.append(Submission(student, path, text, _chapter_of(text, path.name, chapters)))
    return found


def _load_tests(assignments: Path) -> tuple[list[dict], dict[str, dict[str, str]]]:
    manifest_path = assignments / "grading" / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no {manifest_path}: run `tools/assignments.py generate` first")
    manifest = json.loads(manifest_path.read_text())
    tests = {}
    for chapter in manifest["chapters"]:
        folder = assignments / "grading" / chapter["chapter"] / "tests"
        tests[chapter["chapter"]] = {f"{e['name']}.py": (folder / f"{e['name']}.py").read_text()
                                     for e in chapter["exercises"]}
    return manifest["chapters"], tests


_SANDBOX_OK: bool | None = None


def namespaces_available() -> bool:
    """Whether ``unshare`` can give a submission its own user, mount and PID namespaces here."""
    global _SANDBOX_OK
    if _SANDBOX_OK is None:
        try:
            probe = subprocess.run(
                ["unshare", "-Urmpf", "--mount-proc", "sh", "-c",
                 "mount -t tmpfs none /tmp && exec unshare -Umc true"],
                capture_output=True, timeout=20)
            _SANDBOX_OK = probe.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _SANDBOX_OK = False
    return _SANDBOX_OK


# Inside the namespaces: hide the given folders under empty read-only file systems, give the
# working folder a private one (in memory, 1 GB at most), then drop into a nested user namespace
# so that those mounts are locked (cannot be unmounted), and run the grading process.
_SANDBOX_SCRIPT = r"""
work="$1"; shift; py="$1"; shift; script="$1"; shift
mount -t tmpfs -o size=1g,mode=700 none "$work" || exit 97
for d in "$@"; do mount -t tmpfs -o size=4k,mode=000,ro none "$d" || exit 97; done
exec unshare -Umc "$py" "$script" _run "$work"
"""


def _kill_everything(proc: subprocess.Popen, marker: str) -> None:
    """Kill the grading process, its kernel and anything they started (found by the marker)."""
    import psutil

    victims = []
    try:
        parent = psutil.Process(proc.pid)
        victims = [parent] + parent.children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    for p in psutil.process_iter(["environ"]):
        try:
            if (p.info.get("environ") or {}).get("DLKIT_GRADING_RUN") == marker:
                victims.append(p)
        except (psutil.Error, AttributeError):
            continue
    for p in victims:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=5)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def grade_one(sub: Submission, tests: dict[str, str], *, timeout: float, hide: Sequence[Path],
              sandbox: bool, data_dir: str | None = None) -> dict:
    """Run one submission in its own process and return its scores.

    Args:
        sub: The submission, read into memory.
        tests: The chapter's test files (name -> source).
        timeout: Seconds for the whole run.
        hide: Folders the submission must not see (submissions, grading), when ``sandbox``.
        sandbox: Whether to run inside user, mount and PID namespaces.
        data_dir: ``DLKIT_DATA_DIR`` for the chapters, if any.

    Returns:
        ``{"status": "ok" | "timeout" | "error: ...", "scores": {exercise: points}, "seconds"}``.
    """
    nonce = secrets.token_hex(16)
    private = Path(tempfile.mkdtemp(prefix="dlkit-grade-"))  # the grader's: hidden from the run
    work = Path(tempfile.mkdtemp(prefix="dlkit-run-"))  # the run's (in memory, with namespaces)
    env = {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable),
                                 os.environ.get("PATH", "/usr/bin:/bin")]),
        "LANG": "C.UTF-8", "DLKIT_PROFILE": "smoke", "MPLBACKEND": "Agg",
        "DLKIT_GRADING_RUN": nonce, "PYTHONDONTWRITEBYTECODE": "1",
        # One thread per submission (--jobs grades several at once): OpenMP threads competing
        # for busy cores make a chapter many times slower.
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }
    if data_dir:
        env["DLKIT_DATA_DIR"] = data_dir
    script = str(Path(__file__).resolve())
    if sandbox:
        hidden = [str(p) for p in hide] + [str(private)]
        cmd = ["unshare", "-Urmpf", "--mount-proc", "sh", "-c", _SANDBOX_SCRIPT, "sh",
               str(work), sys.executable, script, *hidden]
    else:
        cmd = [sys.executable, script, "_run", str(work)]
    job = json.dumps({"notebook": sub.text, "tests": tests, "nonce": nonce})
    stdout, stderr = private / "stdout", private / "stderr"
    start = time.perf_counter()
    with open(stdout, "wb") as out, open(stderr, "wb") as err_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err_file,
                                cwd=work, env=env, start_new_session=True)
        try:
            proc.stdin.write(job.encode())
            proc.stdin.close()
            proc.wait(timeout=timeout)
            status = "ok"
        except subprocess.TimeoutExpired:
            status = f"timeout after {timeout:g} s"
        except OSError as err:  # the process died before reading its job
            status = f"error: {err}"
        finally:
            _kill_everything(proc, nonce)
    seconds = time.perf_counter() - start
    scores = {}
    if status == "ok":
        with open(stdout, "rb") as f:  # the last line with the nonce; the rest is ignored
            f.seek(max(0, stdout.stat().st_size - 1_000_000))
            lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines()
                     if ln.startswith(nonce)]
        if lines:
            scores = json.loads(lines[-1][len(nonce):])
        else:
            with open(stderr, "rb") as f:  # the grading process's own error, for the teacher
                f.seek(max(0, stderr.stat().st_size - 300))
                tail = " ".join(f.read().decode("utf-8", "replace").split())
            status = f"error: no results (exit status {proc.returncode}) {tail}"
    shutil.rmtree(private, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return {"status": status, "scores": scores, "seconds": round(seconds, 1)}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def grade(submissions: Path, assignments: Path, out: Path | None, *,
          timeout: float = DEFAULT_TIMEOUT, jobs: int = 1, sandbox: str = "auto",
          data_dir: str | None = None) -> list[list[str]]:
    """Grade a folder of submissions into a CSV: student, one column per exercise, total.

    Args:
        submissions: ``NAME.ipynb`` or ``NAME/*.ipynb`` per student.
        assignments: The folder ``generate`` wrote.
        out: Where to write the CSV (``None``: only return the rows).
        timeout: Wall-clock seconds per submitted notebook.
        jobs: Submissions graded at the same time.
        sandbox: ``"auto"`` (namespaces where available), ``"namespaces"`` (required) or ``"off"``.
        data_dir: ``DLKIT_DATA_DIR`` handed to the submissions.

    Returns:
        The CSV rows, header first.
    """
    if sandbox not in ("auto", "namespaces", "off"):
        raise ValueError(f"sandbox must be 'auto', 'namespaces' or 'off', got {sandbox!r}")
    chapters, tests = _load_tests(assignments)
    names = [c["chapter"] for c in chapters]
    subs = collect_submissions(submissions, names)
    use_ns = sandbox != "off" and namespaces_available()
    if sandbox == "namespaces" and not use_ns:
        raise RuntimeError("unshare -Urmpf is not available here: grade with --sandbox off or auto")
    if not use_ns:
        print("warning: no user namespaces here; each submission runs in its own process and "
              "working folder, but can read any file you can", file=sys.stderr)
    hide = [submissions.resolve(), (assignments / "grading").resolve()]
    submitted = [c for c in chapters if any(s.chapter == c["chapter"] for s in subs)]
    columns = [(c["chapter"], e["name"]) for c in submitted for e in c["exercises"]]
    students = sorted({s.student for s in subs})
    table = {s: {} for s in students}

    def run(sub: Submission) -> tuple[Submission, dict]:
        if sub.chapter is None:
            return sub, {"status": "error: chapter not recognised", "scores": {}, "seconds": 0}
        return sub, grade_one(sub, tests[sub.chapter], timeout=timeout, hide=hide, sandbox=use_ns,
                              data_dir=data_dir)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for sub, result in pool.map(run, subs):
            mark = "ok" if result["status"] == "ok" else "!!"
            got = sum(v["score"] for v in result["scores"].values())
            print(f"{mark} {sub.student:20s} {sub.path.name:32s} {_number(got):>4s} points  "
                  f"{result['seconds']:6.1f} s  {result['status']}", file=sys.stderr)
            for name, value in result["scores"].items():
                if sub.chapter and (sub.chapter, name) in columns:
                    table[sub.student][(sub.chapter, name)] = value["score"]
    rows = [["student", *(f"{c}:{e}" for c, e in columns), "total"]]
    for student in students:
        values = [table[student].get(col, 0) for col in columns]
        rows.append([student, *(_number(v) for v in values), _number(sum(values))])
    if out is not None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        with atomic_write(out, "w") as f:
            f.write(buffer.getvalue())
    return rows


# --------------------------------------------------------------------------------------------- #
# Grading: the process that runs one submission (``_run``), in its working folder
# --------------------------------------------------------------------------------------------- #
_GRADING_CELL = '''
def _dlkit_grade(test_dir, nonce):
    import glob, json, os
    from otter.test_files import OKTestFile
    results = {}
    for path in sorted(glob.glob(os.path.join(test_dir, "*.py"))):
        name = os.path.basename(path)[:-3]
        try:
            test = OKTestFile.from_file(path)
            test.run(globals())
            results[name] = {"score": test.score, "possible": test.possible}
        except BaseException as err:
            results[name] = {"score": 0, "possible": 1, "error": repr(err)[:200]}
    print(nonce + json.dumps(results), flush=True)
_dlkit_grade(TEST_DIR, NONCE)
'''


def _run(work: Path) -> int:
    """Run the submission from the job on stdin, then its tests; print the nonce-marked scores.

    Args:
        work: The run's folder (a private in-memory file system inside the namespaces).

    Returns:
        The exit status (0 whenever scores, possibly none, were printed).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    job = json.loads(sys.stdin.read())
    nonce = job["nonce"]
    for sub in ("home", "tmp", "runtime", "notebook"):
        (work / sub).mkdir(exist_ok=True)
    os.environ.update({"HOME": str(work / "home"), "TMPDIR": str(work / "tmp"),
                       "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
                       "IPYTHONDIR": str(work / "home" / ".ipython"),
                       "MPLCONFIGDIR": str(work / "home" / ".matplotlib")})
    folder = work / "notebook"  # the kernel's working folder: this notebook and nothing else
    (folder / "submission.ipynb").write_text(job["notebook"], encoding="utf-8")
    try:
        nb = nbformat.reads(job["notebook"], as_version=4)
    except Exception:  # noqa: BLE001 (not a notebook: nothing to run, nothing scores)
        print(nonce + json.dumps({}), flush=True)
        return 0
    cells = [c for c in nb.cells if c.get("cell_type") == "code"]
    for cell in cells:
        cell.outputs = []
    client = NotebookClient(nb, timeout=None, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}}, record_timing=False)
    with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        try:
            for index, cell in enumerate(nb.cells):
                if cell.get("cell_type") != "code":
                    continue
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError:
                    pass
                cell.outputs = []  # printed junk is not kept
            tests = work / "tests"  # copied in only now, after the student's code ran
            tests.mkdir()
            for name, source in job["tests"].items():
                (tests / name).write_text(source, encoding="utf-8")
            source = (_GRADING_CELL.replace("TEST_DIR", repr(str(tests)))
                      .replace("NONCE", repr(nonce)))
            grading = nbformat.v4.new_code_cell(source)
            nb.cells.append(grading)
            client.execute_cell(grading, len(nb.cells) - 1)
        except DeadKernelError:
            print(nonce + json.dumps({}), flush=True)  # the notebook ended its own kernel
            return 0
    for out in grading.outputs:
        text = out.get("text", "")
        for line in text.splitlines():
            if line.startswith(nonce):
                print(line, flush=True)
                return 0
    print(nonce + json.dumps({}), flush=True)
    return 0


# --------------------------------------------------------------------------------------------- #
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="student notebooks and hidden tests from chapters")
    gen.add_argument("notebooks", nargs="+", type=Path)
    gen.add_argument("--out", type=Path, default=Path("assignments"))
    grd = sub.add_parser("grade", help="grade a folder of submissions into a CSV")
    grd.add_argument("submissions", type=Path)
    grd.add_argument("--assignments", type=Path, default=Path("assignments"))
    grd.add_argument("--out", type=Path, default=Path("grades.csv"))
    grd.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                     help="wall-clock seconds per submitted notebook (default %(default)s)")
    grd.add_argument("--jobs", type=int, default=1, help="submissions graded at once")
    grd.add_argument("--sandbox", choices=("auto", "namespaces", "off"), default="auto")
    run = sub.add_parser("_run", help=argparse.SUPPRESS)
    run.add_argument("work", type=Path)
    args = parser.parse_args(argv)
    if args.command == "generate":
        return 1 if generate(args.notebooks, args.out)["errors"] else 0
    elif args.command == "grade":
        rows = grade(args.submissions, args.assignments, args.out, timeout=args.timeout,
                     jobs=args.jobs, sandbox=args.sandbox,
                     data_dir=os.environ.get("DLKIT_DATA_DIR"))
        print(f"{args.out}: {len(rows) - 1} student(s), {len(rows[0]) - 2} exercise(s)")
    else:
        return _run(args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
