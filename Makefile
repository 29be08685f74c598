# ostinato: the two set-up commands (make run, make test) and the tasks behind them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest bench clean crds

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/ostinato run examples/pipeline.yaml --duration 10 --status-every 2.5

lint: $(STAMP)
	$(BIN)/ruff check runtime operator tests bench examples
	$(BIN)/ruff format --check runtime operator tests bench examples
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint pytest

bench: $(STAMP)
	$(BIN)/python bench/node_overhead.py
	$(BIN)/python bench/queue_throughput.py

# The CRD from the pydantic models; the chart ships a byte-identical copy (a test checks both).
crds: $(STAMP)
	$(BIN)/python -m ostinato_operator._crd > crds/workflows.ostinato.dev.yaml
	cp crds/workflows.ostinato.dev.yaml helm/ostinato/crds/workflows.ostinato.dev.yaml

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
