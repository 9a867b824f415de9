# One entry point for the README, CI and developers.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: check deps lint types test bench

check: deps lint types test

deps:
	scripts/install-deps

lint:
	$(PYTHON) -m ruff check aaa_fmip tests bench
	$(PYTHON) -m ruff format --check aaa_fmip tests bench
	lint-imports --no-cache

types:
	$(PYTHON) -m mypy aaa_fmip

test:
	$(PYTHON) -m pytest $(PYTEST_ARGS)

bench:
	$(PYTHON) -m bench
