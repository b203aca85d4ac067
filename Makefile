# nurture — set-up, demo, tests and benchmarks.
# The CPU build of torch is installed first so that nothing pulls a multi-GB CUDA build.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stoplight Prism, which checks the SendGrid tests' requests against SendGrid's OpenAPI contract.
# Pinned in .ci/node/package.json and package-lock.json; installed in .ci/node/node_modules.
NODE_DIR := .ci/node
PRISM := $(NODE_DIR)/node_modules/.bin/prism

.PHONY: install prism demo test test-fast bench bench-scale bench-imports lint ui clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Install Prism (Node.js >= 18.20 and npm needed); quick when it is already there.
prism: $(PRISM)

$(PRISM): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js >= 18.20 (with npm) to run the SendGrid contract tests" >&2; exit 1; }
	npm ci --prefix $(NODE_DIR) --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

## Seed a synthetic community in the demo workspace and run one full cycle through Prefect.
demo: $(STAMP)
	$(BIN)/nurture --workspace content demo

## Run the whole test suite (PostgreSQL too when NURTURE_TEST_POSTGRES_URL is set), on TEST_WORKERS
## pytest-xdist workers (2: the machines have 2 cores); the tests marked `model` all on one of them.
TEST_WORKERS ?= 2

test: $(STAMP) $(PRISM)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

## Unit tests only: skips the end-to-end tests that load the real model and run Prefect.
test-fast: $(STAMP) $(PRISM)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not e2e"

## Write BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --output BENCHMARKS.md

MEMBERS ?= 100000
EMBEDDER ?= onnx-int8
SEND_CONCURRENCY ?= 64
DELIVERY_PROCESSES ?= 2
## The whole pipeline on a generated community of $(MEMBERS) members and a 5 000-item library, stage by
## stage against bare floors, with peak memory, on SQLite then PostgreSQL (a database of its own on
## NURTURE_BENCH_POSTGRES_URL, default 127.0.0.1:5432; skipped when unreachable), delivering through
## SendGrid to a 20 ms mock (DELIVERY_PROCESSES worker processes, 2: one per CPU here, each with
## SEND_CONCURRENCY senders, 64): writes BENCHMARKS-scale.md (MEMBERS=1000000 possible;
## EMBEDDER=onnx-int8, torch or stand-in).
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale --members $(MEMBERS) --embedder $(EMBEDDER) \
		--send-concurrency $(SEND_CONCURRENCY) --delivery-processes $(DELIVERY_PROCESSES) \
		--output BENCHMARKS-scale.md

## Imports of activity and answers (ACTIVITY_ROWS, ANSWER_ROWS) against the bare bulk insert of the
## same rows: writes BENCHMARKS-imports.md (NURTURE_BENCH_POSTGRES_URL=... measures PostgreSQL too).
ACTIVITY_ROWS ?= 1000000
ANSWER_ROWS ?= 300000
bench-imports: $(STAMP)
	$(BIN)/python -m benchmarks.imports --activity-rows $(ACTIVITY_ROWS) --answer-rows $(ANSWER_ROWS) \
		--output BENCHMARKS-imports.md

## Ruff (lint and format) and mypy (strict, on nurture/).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

PREFECT_PORT ?= 4200

## Try nurture as a service: a Prefect server with its UI on http://127.0.0.1:$(PREFECT_PORT), and the
## nightly and deliver deployments of the demo workspace on their schedules; Ctrl-C stops both.
ui: $(STAMP)
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/python -m flows.serve --workspace content --start-server

.PHONY: serve
## Serve the deployments against the Prefect server PREFECT_API_URL points at (one already running).
serve: $(STAMP)
	$(BIN)/python -m flows.serve --workspace content

clean:
	rm -rf $(VENV) nurture-data content/nurture-data .pytest_cache $(NODE_DIR)/node_modules
