# Two entry points for a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: postgres monitoring browser setup demo lint test

$(BIN)/runbook: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# PostgreSQL server binaries (demo sandbox and tests) and PgBouncer (tests: a pooler in front); installed if missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib; }
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends pgbouncer; }

# Prometheus (triage tests) and Alertmanager (alert-triggered runs), Debian's packages; installed if missing.
monitoring:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager; }

# Chromium, Debian's: the browser test drives JupyterLab in it through Playwright (pip, with the test extras).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

setup: postgres monitoring browser $(BIN)/runbook

demo: setup
	$(BIN)/runbook demo

# The tree's habits: ruff (lint, and format as checked in), mypy over lib/.
lint: $(BIN)/runbook
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -q
