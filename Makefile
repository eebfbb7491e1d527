# pdx developer entry points. Every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PKGS   := gateway exchange sandbox ledger crypto policies audit
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast lint type bench loadtest clean

$(STAMP): pyproject.toml sdk/pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e ./sdk
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/pdx run

lint: install
	$(BIN)/ruff check $(PKGS) tests bench migrations loadtest
	$(BIN)/ruff format --check $(PKGS) tests bench migrations loadtest
	$(BIN)/mypy

type: install
	$(BIN)/mypy

# Every core (pytest-xdist); the tests that start real processes run one after the other
# on one worker (tests/conftest.py PROCESS_TESTS).
test: lint
	scripts/with-postgres $(BIN)/python -m pytest -n auto

# The inner loop: no lint, SQLite only, no slow tests, stop at the first failure.
test-fast: install
	$(BIN)/python -m pytest -x -q -n auto -m "not slow and not postgres"

loadtest: install
	$(BIN)/python -m loadtest.run

bench: install
	$(BIN)/pdx bench all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
