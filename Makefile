# The two commands that matter: `make run` and `make test`. Both set up
# everything they need on a fresh machine (a virtualenv in .venv).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit setup proto docs clean

run: $(STAMP)
	$(BIN)/wsfleet serve --dev

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src

typecheck: $(STAMP)
	$(BIN)/mypy src

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python tools/ensure_system_deps.py
	touch $(STAMP)

# Regenerate the Protobuf bindings from src/wsfleet/protocol/client.proto.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Isrc --python_out=src --pyi_out=src src/wsfleet/protocol/client.proto

# Regenerate docs/reference/config.md from the config schema.
docs: $(STAMP)
	$(BIN)/python -m wsfleet.docgen > docs/reference/config.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info
