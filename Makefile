# `make demo` and `make test` create .venv on first use and install the project into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint format install clean

$(VENV)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=23" >/dev/null
	$(PY) -m pip install -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" VERBOSE=$${VERBOSE:-0} bash scripts/demo.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest tests

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) output
