# `make demo` and `make test` create .venv on first use and install the project into it.
# `make install-cpu` first (instead of `make install`) puts the CPU-only torch wheels into .venv:
# enough for the demo and the tests, without the CUDA libraries (see README, Quick start).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test test-fast lint format install install-cpu clean

$(VENV)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=23" >/dev/null
	$(PY) -m pip install -e ".[test]"
	touch $@

install: $(VENV)/.installed

# torch and torchvision from PyTorch's CPU wheel index, then the project (pip keeps the CPU build).
install-cpu:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=23" >/dev/null
	$(PY) -m pip install torch torchvision --index-url $(TORCH_CPU_INDEX)
	$(PY) -m pip install -e ".[test]"
	touch $(VENV)/.installed

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" VERBOSE=$${VERBOSE:-0} bash scripts/demo.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Everything, the end-to-end tests (demo, sweeps, torchrun, bench) included.
test: lint
	$(PY) -m pytest tests

# The edit loop: the tests not marked slow (pyproject.toml registers the marker).
test-fast: install
	$(PY) -m pytest tests -m "not slow"

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) output
