# The two set-up commands of the README: `make run` and `make test`.
# Each creates the virtual environment and installs what it needs on first use.

PYTHON ?= python3
VENV   ?= .venv
# Test processes (pytest-xdist): one a core by default; PYTEST_WORKERS=0 runs in one.
PYTEST_WORKERS ?= auto
BIN     = $(VENV)/bin

.PHONY: run test lint install bench

$(BIN)/pira: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/pira

install: $(BIN)/pira

run: $(BIN)/pira
	$(BIN)/pira run

# Prometheus and Alertmanager (Debian packages) are installed when possible; without
# them (no root, no apt) their tests are skipped locally and fail in CI.
test: $(BIN)/pira
	-@bash .ci/install-prometheus.sh >/dev/null 2>&1 || echo "note: prometheus/alertmanager not installed; their tests will be skipped"
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(BIN)/pira
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint deploy/Dockerfile

# Issue 13's benchmarks, by hand, never in CI (about 10 minutes; see benchmarks/README.md):
# make bench BENCH_ARGS="--quick --only B1,B9 --db postgresql+psycopg://…/bench"
bench: $(BIN)/pira
	PYTHONPATH=. $(BIN)/python benchmarks/run.py $(BENCH_ARGS)
