"""Tests of tools/assignments.py: exercises found by the book's convention, hidden tests, grading.

The grading test starts one process and one kernel per submission (it is slow: ~30-60 s on two
cores); the others only read notebooks.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import assignments  # noqa: E402
from student_copies import is_solution  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "assignments" / "99_exercises.ipynb"
REAL = ROOT / "chapters" / "05_backprop.ipynb"  # a real chapter that runs in seconds (digits, smoke)
CHAPTERS = sorted((ROOT / "chapters").glob("0[2-9]_*.ipynb"))
NAMES = ["hamming_distance", "cv_leak", "effective_batch", "cutmix_weight"]


def test_exercises_are_found_by_the_cell_convention():
    nb = nbformat.read(FIXTURE, as_version=4)
    found = assignments.find_exercises(nb)
    assert [e.name for e in found] == NAMES
    for e in found:
        assert e.task < e.check < e.solution
        assert is_solution(nb.cells[e.solution])
        assert nb.cells[e.check].source.startswith("check_")


def test_a_solution_without_a_check_cell_is_an_error():
    nb = nbformat.read(FIXTURE, as_version=4)
    del nb.cells[4]  # the first check cell
    with pytest.raises(ValueError, match="calls no check_"):
        assignments.find_exercises(nb)


def test_the_hidden_test_calls_the_module_check_not_the_learners_name():
    test = assignments.make_test("check_cv_leak(leaky_line)", "cv_leak")
    code = test["suites"][0]["cases"][0]["code"]
    assert "_dlkit_exercises.check_cv_leak(leaky_line)" in code
    assert test["suites"][0]["cases"][0]["hidden"] and test["points"] == 1
    assigned = assignments.make_test("fb = check_psi(psi)", "psi")["suites"][0]["cases"][0]["code"]
    assert ">>> fb = _dlkit_exercises.check_psi(psi)" in assigned and ">>> bool(fb)" in assigned
    with pytest.raises(ValueError, match="must end with the check call"):
        assignments.make_test("for x in []:\n    check_psi(x)", "psi")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_with_exercises_generates(chapter, tmp_path):
    """Chapters 02-09: student notebooks without solutions, tests without the solutions' code."""
    source = nbformat.read(chapter, as_version=4)
    manifest = assignments.generate([chapter], tmp_path)
    (entry,) = manifest["chapters"]
    exercises = assignments.find_exercises(source)
    assert [e["name"] for e in entry["exercises"]] == [e.name for e in exercises] != []
    student = nbformat.read(tmp_path / "student" / chapter.name, as_version=4)
    assert not any(is_solution(c) for c in student.cells)
    assert student.metadata[assignments.METADATA_KEY]["chapter"] == chapter.stem
    roles = [c.metadata.get(assignments.METADATA_KEY, {}).get("role") for c in student.cells]
    assert roles.count("task") == roles.count("check") == len(exercises)
    solutions = [source.cells[e.solution].source for e in exercises]
    for e in entry["exercises"]:
        text = (tmp_path / "grading" / chapter.stem / "tests" / f"{e['name']}.py").read_text()
        spec = {}
        exec(text, spec)  # an OK-format file, as otter-grader reads it
        assert spec["OK_FORMAT"] and spec["test"]["name"] == e["name"]
        # The solution's own lines (beyond the check call) are not in the test.
        for solution in solutions:
            for line in solution.splitlines():
                if line.strip() and "check_" not in line and not line.startswith(("#", "feedback")):
                    assert line.strip() not in text, (e["name"], line)


# --------------------------------------------------------------------------------------------- #
# Grading a folder of submissions
# --------------------------------------------------------------------------------------------- #
def _solved(nb, solutions, names):
    out = nbformat.from_dict(nb)
    for cell in out.cells:
        meta = cell.metadata.get(assignments.METADATA_KEY, {})
        if meta.get("role") == "task" and meta["exercise"] in names:
            cell.source = solutions[meta["exercise"]]
    return out


def _make_submissions(student_nb, solutions, folder: Path, secrets: dict[str, Path]) -> None:
    new = nbformat.v4.new_code_cell
    write = lambda nb, name: nbformat.write(nb, folder / f"{name}.ipynb")  # noqa: E731
    write(_solved(student_nb, solutions, NAMES), "ada")                       # reference: 4
    write(student_nb, "blank")                                               # untouched: 0
    write(_solved(student_nb, solutions, NAMES[:2]), "half")                 # two solved: 2

    loop = _solved(student_nb, solutions, NAMES)
    loop.cells.append(new("while True:\n    pass"))
    write(loop, "loop")                                                      # timeout: 0

    raises = _solved(student_nb, solutions, NAMES[:2])
    raises.cells.insert(0, new('raise RuntimeError("at the top")'))
    write(raises, "raises")                                                  # the rest runs: 2

    junk = _solved(student_nb, solutions, NAMES)
    junk.cells.insert(2, new('import os, sys\nprint("junk " * 1_000_000)\n'
                             'os.write(1, b"x" * 3_000_000)\nsys.stderr.write("e" * 1_000_000)'))
    write(junk, "junk")                                                      # 4

    # Check cells edited or deleted, and the check's name rebound: only the real answer counts.
    edits = _solved(student_nb, solutions, ["cutmix_weight"])
    kept = []
    for cell in edits.cells:
        meta = cell.metadata.get(assignments.METADATA_KEY, {})
        if meta.get("role") == "check" and meta["exercise"] == "hamming_distance":
            continue  # deleted
        if meta.get("role") == "check" and meta["exercise"] == "cv_leak":
            cell.source = 'print("✔ Correct.")'
        if meta.get("role") == "task" and meta["exercise"] == "effective_batch":
            cell.source = ("effective_batch = 1\n"
                           "check_effective_batch = lambda *args, **kwargs: True")
        kept.append(cell)
    edits.cells = kept
    write(edits, "edits")                                                    # 1

    # Looks for the grading tests and another student's notebook: next to itself, in its parent
    # folders and its environment, and at their real paths; copies an answer if it finds one.
    snoop = nbformat.from_dict(student_nb)
    snoop.cells.insert(2, new(
        "import glob, json, os, re\n"
        f"places = [(p, '**/*.*') for p in {[str(p) for p in secrets.values()]!r}]\n"
        "places += [(p, '*/*.*') for p in (os.getcwd(), '..', os.environ.get('HOME', '.'))]\n"
        "found = []\n"
        "for place, pattern in places:\n"
        "    for path in glob.glob(os.path.join(place, pattern), recursive=True)[:2000]:\n"
        "        try:\n"
        "            found.append((path, open(path, errors='replace').read()))\n"
        "        except OSError:\n"
        "            pass\n"
        "lines = [int(m) for p, t in found if p.endswith('.ipynb') and 'snoop' not in p\n"
        "         for m in re.findall(r'leaky_line = (\\d)', t)]\n"
        "tests = [p for p, t in found if 'OK_FORMAT' in t]\n"
        "leaky_line = max(lines, default=0)\n"
        "print(len(found), 'files read;', len(tests), 'tests;', lines)"))
    snoop.cells = [c for c in snoop.cells if not (
        c.metadata.get(assignments.METADATA_KEY, {}).get("role") == "task"
        and c.metadata[assignments.METADATA_KEY]["exercise"] == "cv_leak")]
    write(snoop, "snoop")                                                    # 0


@pytest.mark.skipif(not assignments.namespaces_available(),
                    reason="needs unprivileged user namespaces (unshare -Urmpf)")
def test_grading_a_folder_of_submissions(tmp_path):
    out = tmp_path / "assignments"
    assignments.generate([FIXTURE], out)
    source = nbformat.read(FIXTURE, as_version=4)
    solutions = {e.name: source.cells[e.solution].source for e in assignments.find_exercises(source)}
    student_nb = nbformat.read(out / "student" / FIXTURE.name, as_version=4)
    subs = tmp_path / "submissions"
    subs.mkdir()
    _make_submissions(student_nb, solutions, subs,
                      {"others": subs, "tests": out / "grading"})
    csv_path = tmp_path / "grades.csv"
    rows = assignments.grade(subs, out, csv_path, timeout=25, jobs=2)
    header = "student," + ",".join(f"99_exercises:{n}" for n in NAMES) + ",total"
    expected = [
        header,
        "ada,1,1,1,1,4",
        "blank,0,0,0,0,0",
        "edits,0,0,0,1,1",
        "half,1,1,0,0,2",
        "junk,1,1,1,1,4",
        "loop,0,0,0,0,0",
        "raises,1,1,0,0,2",
        "snoop,0,0,0,0,0",
    ]
    assert csv_path.read_text().splitlines() == expected
    assert [",".join(r) for r in rows] == expected
    assert list(csv.reader(csv_path.open()))[0][0] == "student"
    # The teacher's files are as they were.
    assert len(list((out / "grading" / "99_exercises" / "tests").glob("*.py"))) == 4
    assert json.loads((out / "grading" / "manifest.json").read_text())["chapters"]


def test_a_real_chapter_as_the_book_has_it_scores_full_marks(tmp_path):
    """Chapter 05 under the smoke profile (seconds): its own solutions pass its hidden tests."""
    out = tmp_path / "assignments"
    assignments.generate([REAL, FIXTURE], out)
    subs = tmp_path / "submissions"
    (subs / "cy").mkdir(parents=True)  # a folder per student, named after the chapter
    (subs / "cy" / REAL.name).write_bytes(REAL.read_bytes())
    rows = assignments.grade(subs, out, None, timeout=120)
    assert [",".join(r) for r in rows] == [
        "student,05_backprop:relu_backward,05_backprop:softmax_ce_grad,total", "cy,1,1,2"]


def test_grading_without_namespaces_still_contains_a_submission(tmp_path):
    """The fallback: own process, own working folder, timeout; a broken notebook scores 0."""
    out = tmp_path / "assignments"
    assignments.generate([FIXTURE], out)
    source = nbformat.read(FIXTURE, as_version=4)
    solutions = {e.name: source.cells[e.solution].source for e in assignments.find_exercises(source)}
    student_nb = nbformat.read(out / "student" / FIXTURE.name, as_version=4)
    subs = tmp_path / "submissions"
    (subs / "bo").mkdir(parents=True)  # a folder per student works too
    nbformat.write(_solved(student_nb, solutions, NAMES[1:3]), subs / "bo" / "99_exercises.ipynb")
    (subs / "garbage.ipynb").write_text("not a notebook")
    rows = assignments.grade(subs, out, None, timeout=40, sandbox="off")
    assert [",".join(r) for r in rows][1:] == ["bo,0,1,1,0,2", "garbage,0,0,0,0,0"]


def test_grade_rejects_a_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate"):
        assignments.grade(tmp_path, tmp_path / "nothing", None)
