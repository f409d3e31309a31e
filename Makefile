# Set-up and everyday commands. Each target creates the virtual environment first if needed.
#   make book      build the book into _build/html/index.html
#   make test      run the dlkit unit tests and re-run every chapter under nbval; in three steps,
#                  each a target of its own: test-unit, test-slow, test-chapters
#   make execute   re-execute the chapters in place, refreshing their committed outputs
#   make student   write student copies of the chapters, without solutions, to student/
#   make benchmark run the CPU benchmarks in benchmarks/ (JSON lines)

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# The virtual environment's tools (jupyter-book, pytest, the python3 kernel) come first.
export PATH := $(BIN):$(PATH)

CHAPTERS := $(sort $(wildcard chapters/*.ipynb))

.PHONY: book test test-unit test-slow test-chapters execute student benchmark clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $@

book: $(VENV)/.installed
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book is at _build/html/index.html"

# Unit tests run on 2 processes, except those marked slow (they start processes of their own:
# torchrun ranks, a server, notebook kernels, DataLoader or pool workers; see tests/conftest.py),
# which run one at a time after them; the chapters run one at a time too, because each kernel
# already uses every core (two at once oversubscribe a 2-core machine and run several times slower).
test: test-unit test-slow test-chapters

test-unit: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 --dist loadscope -m "not slow" tests

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -n 0 -m slow tests

test-chapters: $(VENV)/.installed
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg chapters

execute: $(VENV)/.installed
	$(BIN)/python tools/execute_notebooks.py $(CHAPTERS)

student: $(VENV)/.installed
	$(BIN)/python tools/student_copies.py $(CHAPTERS) --out student

# CPU benchmarks, one JSON line each (several minutes in all). The GPU ones take --device cuda
# (training_throughput.py) or need a CUDA GPU (resnet_gpu.py): run them by hand on a GPU machine.
BENCHMARKS := fit_overhead scratch_adam manifest_throughput shard_memory augment_pipeline \
	checkpoint_overhead training_throughput inference_latency serving_load
benchmark: $(VENV)/.installed
	@for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf _build student
