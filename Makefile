# One entry point for the README, CI and developers.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: check deps lint types test test-fast bench image

check: deps lint types test

deps:
	scripts/install-deps

lint:
	$(PYTHON) -m ruff check aaa_fmip tests bench
	$(PYTHON) -m ruff format --check aaa_fmip tests bench
	lint-imports --no-cache

types:
	$(PYTHON) -m mypy aaa_fmip
	$(PYTHON) -m mypy tests bench

test:
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The inner loop: pure and in-process tests, no long real-peer runs (CI runs everything).
test-fast:
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

bench:
	$(PYTHON) -m bench

# The container image (docker/Dockerfile) with podman or docker; a local Debian base where none can be pulled.
image:
	scripts/build-image
