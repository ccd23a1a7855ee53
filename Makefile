# The two commands that matter: `make run` and `make test`. Both set up
# everything they need on a fresh machine (a virtualenv in .venv).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit setup proto docs lab clean

run: $(STAMP)
	$(BIN)/wsfleet serve --dev

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks lab
	$(BIN)/ruff format --check src lab

typecheck: $(STAMP)
	$(BIN)/mypy src lab

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python tools/ensure_system_deps.py
	touch $(STAMP)

# The fleet lab: a real fleet behind nginx, SDK clients, a publisher, a report.
# Default: a rolling restart of 3 nodes with 300 clients. More: make lab ARGS='scale-up'
# or ARGS='--clients 5000 --rate 5' (see python -m lab --help).
lab: $(STAMP)
	$(BIN)/python -m lab $(ARGS)

# Regenerate the Protobuf bindings from src/wsfleet/protocol/client.proto.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Isrc --python_out=src --pyi_out=src src/wsfleet/protocol/client.proto

# Regenerate docs/reference/config.md from the config schema.
docs: $(STAMP)
	$(BIN)/python -m wsfleet.docgen > docs/reference/config.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info
