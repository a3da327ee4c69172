PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest bench dev docs clean

# The suite mostly waits (on subprocesses, servers, timers): two pytest-xdist workers, each with its
# own PostgreSQL cluster, overlap those waits. A file's tests stay on one worker (loadfile): they
# share module-scoped servers. PYTEST_PARALLEL= runs it in one process.
PYTEST_PARALLEL ?= -n 2 --dist loadfile

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check src tests bench docs_hooks
	$(BIN)/ruff format --check src tests bench docs_hooks
	$(BIN)/mypy
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

docs: $(STAMP)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

dev: $(STAMP)
	cd examples/shop && ../../$(BIN)/wf dev

lint: $(STAMP)
	$(BIN)/ruff check src tests bench docs_hooks
	$(BIN)/ruff format --check src tests bench docs_hooks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

# The benchmark suite (bench/README.md): every workload, wf against DBOS Transact and wrangler dev,
# on SQLite and on a throwaway durable PostgreSQL cluster of its own, 3 runs each; installs DBOS
# (bench/.venv-dbos) and wrangler (bench/cloudflare/node_modules) on first use. BENCH_ARGS replaces the options: `make bench BENCH_ARGS=--quick` (wf alone, < 1 min),
# `make bench BENCH_ARGS="--workload W1 --peer dbos"`.
BENCH_ARGS ?= --peer all
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# The chaos suites' full forms (tests/chaos): wf dev SIGKILLed 200+ times across 1,000+ instances;
# three wf serve nodes on PostgreSQL killed, frozen and cut off by PostgreSQL restarts, 3+ times each.
# Its quick form runs in `make test`. WF_CHAOS_SEED=<seed> replays a run.
.PHONY: chaos
chaos: $(STAMP)
	WF_CHAOS=full $(BIN)/pytest -q tests/chaos
