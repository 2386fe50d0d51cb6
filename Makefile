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

# Every benchmark writes its rows to benchmarks/results/NAME.json; summary.py composes the one
# table (and benchmarks/results/latest.json) last, even when a benchmark failed, then a failure
# fails the target.
bench: setup
	rm -f benchmarks/results/*.json
	failed=""; \
	for b in benchmarks/[!_]*.py; do \
		[ "$$b" = benchmarks/summary.py ] && continue; \
		echo "== $$b"; $(PY) $$b || failed="$$failed $$b"; \
	done; \
	$(PY) benchmarks/summary.py; \
	if [ -n "$$failed" ]; then echo "benchmarks that failed:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
