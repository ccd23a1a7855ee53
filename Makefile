# The two commands that matter: `make run` and `make test`. Both set up
# everything they need on a fresh machine (a virtualenv in .venv).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The pinned tools that validate deploy/ offline (helm, kubectl, kubernetes-validate,
# checkov, the CRD type packages): tools/deploy_tools.py, .venv/deploy-tools.
DEPLOY_TOOLS := $(VENV)/.deploy-tools-installed

.PHONY: run test lint typecheck unit setup proto docs lab clean

run: $(STAMP)
	$(BIN)/wsfleet serve --dev

test: $(STAMP) $(DEPLOY_TOOLS) lint typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks lab tools
	$(BIN)/ruff format --check src benchmarks lab tools

typecheck: $(STAMP)
	$(BIN)/mypy src lab tools benchmarks/bench

setup: $(STAMP) $(DEPLOY_TOOLS)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python tools/ensure_system_deps.py
	touch $(STAMP)

$(DEPLOY_TOOLS): $(STAMP) tools/deploy_tools.py tools/deploy-requirements.txt tools/crd-validate/package.json tools/crd-validate/package-lock.json
	$(BIN)/python tools/deploy_tools.py
	touch $(DEPLOY_TOOLS)

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
