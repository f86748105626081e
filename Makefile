# irep3d: `make demo` (the main job end to end on a built-in model) and `make test`.
# Both create .venv at the repo root and install everything they need into it.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.irep3d-installed
DEMO_OUT ?= out/demo

.PHONY: demo test lint bench clean venv

venv: $(STAMP)

# torch: the CPU build (torch==2.13.0) unless an NVIDIA GPU answers nvidia-smi, then the
# default CUDA build from PyPI. Installed before the package so pip never pulls a CUDA
# build just to satisfy `torch>=2.1` on a CPU machine.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(PY) -m pip install -q torch; \
	else \
	  $(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(DEMO_OUT)
	$(VENV)/bin/irep3d models
	$(VENV)/bin/irep3d layers builtin:sg3t-256
	$(VENV)/bin/irep3d convert builtin:sg3t-256 $(DEMO_OUT)/sg3t-256.safetensors
	$(VENV)/bin/irep3d layers $(DEMO_OUT)/sg3t-256.safetensors --json > $(DEMO_OUT)/sg3t-256.layers.json
	$(PY) benchmarks/bench_generator.py --model $(DEMO_OUT)/sg3t-256.safetensors --quick
	@echo "demo outputs in $(DEMO_OUT)/"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_generator.py

clean:
	rm -rf $(VENV) out build *.egg-info
