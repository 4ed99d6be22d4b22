# Two entry points for a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: postgres monitoring browser setup demo lint test

LOCK := requirements.lock

.PHONY: lock check-lock

# Every dependency at the exact version and hashes of the lock, then the package itself (its ranges stay in
# pyproject.toml; the lock is what gets installed). Then everything byte-compiled: where PYTHONDONTWRITEBYTECODE is
# set (these machines set it) nothing else writes the .pyc files, and every process, each kernel included, would
# compile matplotlib, pandas and IPython from source again (~1 s of every kernel's start).
$(BIN)/runbook: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib lib
	touch $@

# Refresh the lock after changing the dependencies in pyproject.toml (or to take newer releases): the newest
# versions within its ranges, for every Python from 3.10, with the hashes of their files on PyPI.
lock: $(BIN)/runbook
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra test --universal --python-version 3.10 --generate-hashes --upgrade \
	  --quiet -o $(LOCK)

# The lock installs on a clean venv, hashes checked, its versions consistent (pip check); CI runs it.
check-lock:
	rm -rf $(VENV)-lock-check
	$(PYTHON) -m venv $(VENV)-lock-check
	$(VENV)-lock-check/bin/pip install --quiet --require-hashes -r $(LOCK)
	$(VENV)-lock-check/bin/pip install --quiet --no-deps .
	$(VENV)-lock-check/bin/pip check
	$(VENV)-lock-check/bin/python -c "import runbooks.cli, runbooks.runner, runbooks.alerts.service"
	rm -rf $(VENV)-lock-check

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
