# Set-up and everyday commands. Each target creates the virtual environment first if needed.
#   make book      build the book into _build/html/index.html
#   make test      run the dlkit unit tests and re-run every chapter under nbval; in three steps,
#                  each a target of its own: test-unit, test-slow, test-chapters
#   make test-browser  build the book and test its pages in Chromium (offline, accessibility)
#   make colab-check  run every chapter with Colab's versions of Python and packages
#   make lab       open the chapters in JupyterLab
#   make execute   re-execute the chapters in place, refreshing their committed outputs
#   make student   write student copies of the chapters, without solutions, to student/
#   make benchmark run the CPU benchmarks in benchmarks/ (JSON lines)

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# The virtual environment's tools (jupyter-book, pytest, the python3 kernel) come first.
export PATH := $(BIN):$(PATH)

CHAPTERS := $(sort $(wildcard chapters/*.ipynb))

.PHONY: book test test-unit test-slow test-chapters test-browser colab-check lab execute student benchmark clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $@

# MathJax for the built site (pinned with its checksum in tools/mathjax/package-lock.json), so
# the book renders its formulas offline; without npm the book loads MathJax from its CDN.
MATHJAX := tools/mathjax/node_modules/mathjax/es5/tex-mml-chtml.js
$(MATHJAX): tools/mathjax/package-lock.json
	cd tools/mathjax && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

book: $(VENV)/.installed
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(MATHJAX); \
	else echo "npm not found: the book will load MathJax from its CDN (install Node.js to serve it locally)"; fi
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book is at _build/html/index.html"

# Unit tests run on 2 processes, except those marked slow (they start processes of their own:
# torchrun ranks, a server, notebook kernels, DataLoader or pool workers; see tests/conftest.py),
# which run one at a time after them; the chapters run one at a time too, because each kernel
# already uses every core (two at once oversubscribe a 2-core machine and run several times slower).
test: test-unit test-slow test-chapters

test-unit: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 --dist loadscope -m "not slow and not browser" tests

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -n 0 -m "slow and not browser" tests

# The built book in Chromium (Debian's chromium, or $$CHROMIUM), served on 127.0.0.1 with every
# other host blocked: pages load without errors, links and images resolve, math is typeset,
# accessibility (axe-core), launch buttons, search. Skipped with a message when no Chromium.
test-browser: book
	$(BIN)/python -m pytest -n 0 -m browser tests

test-chapters: $(VENV)/.installed
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg chapters

# Every chapter in a Colab-like environment (Colab's Python and package versions, the built
# wheel, the chapters without the checkout), under the smoke profile; skipped with a message
# when no Python of Colab's version is found. See tools/colab_check.py.
colab-check: $(VENV)/.installed
	$(BIN)/python tools/colab_check.py

lab: $(VENV)/.installed
	$(BIN)/jupyter lab chapters

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

# Teachers (see README, "For teachers: assignments and grading"): student notebooks and hidden
# tests from every chapter's exercises, into assignments/; then a folder of submitted notebooks
# (NAME.ipynb or NAME/*.ipynb per student) graded into a CSV, each submission in its own process
# with a wall-clock limit in seconds:  make grade SUBMISSIONS=folder [GRADES=grades.csv] [TIMEOUT=300]
SUBMISSIONS ?= submissions
GRADES ?= grades.csv
TIMEOUT ?= 300
.PHONY: assignments grade

assignments: $(VENV)/.installed
	$(BIN)/python tools/assignments.py generate $(CHAPTERS) --out assignments

grade: $(VENV)/.installed
	$(BIN)/python tools/assignments.py grade $(SUBMISSIONS) --assignments assignments \
	    --out $(GRADES) --timeout $(TIMEOUT)
