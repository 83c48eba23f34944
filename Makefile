# Everyday commands. Everything runs from the project's own virtualenv (.venv).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rebuilt when either requirements file changes; `make venv` alone also works.
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv dev test lint package bench soak clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

venv: $(STAMP)  ## create .venv and install requirements-dev.txt

# Chalice pins pip<26.3.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip<26.3'
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

dev: $(STAMP)  ## run the app locally on :8000 with DynamoDB Local, moto, localstripe and demo data
	$(BIN)/python -m devstack.dev

test: $(STAMP)  ## run the tests (starts the local stand-ins itself)
	$(BIN)/python -m pytest -q tests

soak: $(STAMP)  ## run the long soak tests only
	$(BIN)/python -m pytest -q -m soak tests

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .

package: $(STAMP)  ## build the deployment package (infra/package.sh)
	bash infra/package.sh

bench: $(STAMP)  ## run the benchmarks and rewrite docs/benchmarks.md
	$(BIN)/python -m bench

clean:  ## remove caches, build output and local stack logs (keeps .venv)
	rm -rf .devstack .pytest_cache .ruff_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
