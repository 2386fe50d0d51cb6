# The two commands of the contract: `make run` and `make test`. Each sets up everything it needs
# (Debian packages, a virtualenv, the package, the demo guest) idempotently, then does its job.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test lint bench clean

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m virtrio run

test: setup
	$(PY) -m ruff check virtrio tests benchmarks
	$(PY) -m ruff format --check virtrio tests benchmarks
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check virtrio tests benchmarks
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
