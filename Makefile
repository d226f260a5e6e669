# The single home of Flywheel's commands; README, CI and hooks call these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLYWHEEL_HOME ?= $(CURDIR)/.flywheel

.PHONY: setup demo serve test test-fast lint format typecheck bench clean

# Installs everything the project needs into .venv; re-runs only when pyproject.toml changes.
setup: $(VENV)/.setup-stamp
$(VENV)/.setup-stamp: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and exactly: with it in place the [train] range installs nothing more.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[train,eval,dev]"
	touch $@

# The main job on the embedded defaults: index a catalog and serve search on it.
demo: setup
	$(BIN)/flywheel demo

serve: setup
	$(BIN)/flywheel serve

test: setup lint
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow and not integration and not data"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/encode.py
	$(BIN)/python benchmarks/search_http.py

clean:
	rm -rf $(VENV) .flywheel .pytest_cache .mypy_cache .ruff_cache
