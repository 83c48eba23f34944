# Everyday commands. Everything runs from the project's own virtualenv (.venv).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rebuilt when either requirements file changes; `make venv` alone also works.
STAMP := $(VENV)/.installed
# checkov pins an older boto3 than the project's, so it has a virtualenv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv dev test lint package scan bench soak clean translations

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

venv: $(STAMP)  ## create .venv and install requirements-dev.txt

# Chalice pins pip<26.3.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip<26.3'
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Read by tests/test_infra.py, which scans the packaged template with it (offline).
$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade 'pip<26.3'
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

dev: $(STAMP)  ## run the app locally on :8000 with DynamoDB Local, moto, localstripe and demo data
	$(BIN)/python -m devstack.dev

test: $(STAMP) $(CHECKOV_STAMP)  ## run the tests (starts the local stand-ins itself; checkov scans the template)
	$(BIN)/python -m pytest -q tests

soak: $(STAMP)  ## run the long soak tests only
	$(BIN)/python -m pytest -q -m soak tests

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .

package: $(STAMP)  ## build the deployment package (infra/package.sh)
	bash infra/package.sh

scan: package $(CHECKOV_STAMP)  ## checkov on the packaged template (build/package/sam.json)
	$(CHECKOV_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation -f build/package/sam.json

bench: $(STAMP)  ## run the benchmarks and rewrite docs/benchmarks.md
	$(BIN)/python -m bench

# The mail's words (babel.cfg) into chalicelib/locales: the template, each language's catalogue
# (a new language: pybabel init -i chalicelib/locales/messages.pot -d chalicelib/locales -l xx),
# and the compiled .mo files the Lambda reads (committed: the package has no build step).
translations: $(STAMP)  ## extract the mail's messages, update the catalogues, compile the .mo files
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --omit-header -o chalicelib/locales/messages.pot .
	$(BIN)/pybabel update -i chalicelib/locales/messages.pot -d chalicelib/locales --no-fuzzy-matching --ignore-obsolete --ignore-pot-creation-date
	$(BIN)/pybabel compile -d chalicelib/locales --statistics

clean:  ## remove caches, build output and local stack logs (keeps .venv)
	rm -rf .devstack .pytest_cache .ruff_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -path ./$(CHECKOV_VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
