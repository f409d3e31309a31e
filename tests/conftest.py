"""Shared test setup: a non-interactive matplotlib backend and no figures leaking between tests."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before any pyplot import (dlkit.plot imports pyplot)

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(autouse=True)
def _restore_torch_determinism():
    # seed_everything() switches on deterministic algorithms globally; keep tests independent.
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.fixture
def one_thread():
    """Run torch on one thread: on a shared 2-core machine, 2 OpenMP threads can be 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- Tests that start other processes ------------------------------------------------------------
# They run in a step of their own (`make test`: `-m slow -n 0`), after the parallel step: each
# starts processes of its own (torchrun ranks, a server, notebook kernels, DataLoader or pool
# workers), which would oversubscribe a small machine next to the parallel workers. Listed here,
# by file or by test, so the test files need no edit; a listed test that is not found is
# reported, so a rename cannot quietly drop the mark.
SLOW_FILES = {
    "test_distributed.py",  # real 2-rank torchrun runs (gloo)
    "test_deploy_serve.py",  # a real uvicorn server on 127.0.0.1
}
SLOW_TESTS = {
    "test_checkpoint.py": {"test_killed_run_resumes_to_bit_identical_weights"},  # kills a subprocess
    "test_shards.py": {"test_every_item_exactly_once_across_two_workers_and_two_ranks"},  # workers
    "test_collect.py": {"test_parallel_collection_gives_the_same_manifest"},  # process pool
    "test_imports_graph.py": {  # fresh interpreters, to see what an import pulls in
        "test_metrics_and_plot_do_not_import_the_training_loop",
        "test_metrics_still_serves_cross_validate_lazily",
    },
    "test_assignments.py": {  # notebook kernels, one process per submission
        "test_grading_a_folder_of_submissions",
        "test_a_real_chapter_as_the_book_has_it_scores_full_marks",
        "test_grading_without_namespaces_still_contains_a_submission",
    },
    "test_sysinfo.py": {"test_python_m_dlkit_env_prints_the_report_and_exits_zero_here"},
    "test_notebook_helpers.py": {  # a notebook kernel
        "test_in_a_kernel_the_error_is_the_cells_output_and_later_cells_run"},
    "test_book.py": {  # subprocesses running the tools, notebook kernels
        "test_student_copies_remove_solutions_and_outputs",
        "test_execute_tool_leaves_the_file_alone_when_a_cell_fails",
        "test_execute_tool_writes_outputs",
    },
}


def pytest_collection_modifyitems(config, items):
    seen: dict[str, set[str]] = {}
    for item in items:
        file = item.path.name
        name = getattr(item, "originalname", None) or item.name.split("[")[0]
        seen.setdefault(file, set()).add(name)
        if file in SLOW_FILES or name in SLOW_TESTS.get(file, ()):
            item.add_marker(pytest.mark.slow)
    for file, names in SLOW_TESTS.items():
        missing = names - seen.get(file, names)  # only files that were collected
        if missing:
            config.issue_config_time_warning(
                pytest.PytestWarning(f"conftest SLOW_TESTS lists tests that {file} no longer has: "
                                     f"{sorted(missing)}"), stacklevel=2)
