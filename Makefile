# One task runner for developers, the README and CI.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean help

help:
	@echo "make run    set up .venv and start the demo on http://127.0.0.1:8000"
	@echo "make test   set up .venv and run ruff, mypy and pytest"
	@echo "make bench  run the benchmarks in bench/ (prints figures; not part of the tests)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "yizheng needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/yizheng demo

lint: $(STAMP)
	$(BIN)/ruff check display feeds tests bench
	$(BIN)/ruff format --check display feeds tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collects no tests. Say so plainly: that is a broken test
# setup, neither a pass nor an ordinary test failure.
pytest: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests: the test setup is broken" >&2; fi; \
	exit $$rc

test: lint typecheck pytest

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
