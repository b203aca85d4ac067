# nurture — set-up, demo, tests and benchmarks.
# The CPU build of torch is installed first so that nothing pulls a multi-GB CUDA build.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint ui clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Seed a synthetic community in the demo workspace and run one full cycle through Prefect.
demo: $(STAMP)
	$(BIN)/nurture --workspace content demo

## Run the whole test suite (PostgreSQL too when NURTURE_TEST_POSTGRES_URL is set).
test: $(STAMP)
	$(BIN)/python -m pytest

## Unit tests only: skips the end-to-end tests that load the real model and run Prefect.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e"

## Write BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --output BENCHMARKS.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Start a local Prefect server and its UI on http://127.0.0.1:4200.
ui: $(STAMP)
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200

clean:
	rm -rf $(VENV) nurture-data content/nurture-data .pytest_cache
