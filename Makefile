# Two commands on a fresh clone: `make demo` and `make test`. Each builds .venv itself.
# bytewax 0.21.1 ships wheels for CPython 3.11 and 3.12 only.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "need python3.11 or python3.12 on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)  ## embedded Kafka + Redis, a year of simulated history, the flows, the results
	$(BIN)/retailpulse demo $(DEMO_ARGS)

test: $(STAMP) lint  ## the whole suite: lint, types, unit, flow and integration tests
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy streams processors models infra schemas

unit: $(STAMP)
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

bench: $(STAMP)  ## benchmarks write their figures to benchmarks/results/
	$(BIN)/python -m benchmarks.run_all

lock:  ## re-pin requirements.lock from pyproject.toml
	rm -rf /tmp/rp-lock && $(PYTHON) -m venv /tmp/rp-lock
	/tmp/rp-lock/bin/pip install --quiet -e '.[test,registry,bench]'
	(echo "# Exact versions for reproducible installs (make lock regenerates this file)."; \
	 /tmp/rp-lock/bin/pip freeze --exclude-editable | grep -v '^-e') > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .retailpulse
