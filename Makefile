# `make run` and `make test` set everything up themselves on a machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup db migrate run lint test test-unit browser bench clean screenshots dist

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

setup: $(VENV)/.installed

# Starts the embedded PostgreSQL in .pgdata/ unless DATABASE_URL names a server.
db: setup
	@if [ -z "$$DATABASE_URL" ]; then echo "embedded PostgreSQL: $$($(PY) -m notifyproject.embedded_db)"; \
	else echo "PostgreSQL: $$DATABASE_URL"; fi

migrate: db
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py demo_setup
	@echo "Demo traffic, in another terminal: $(PY) manage.py shop_traffic --rate 20"
	# The demo runs with DEBUG unless told otherwise.
	DEBUG=$${DEBUG:-1} $(PY) manage.py serve_demo --host $(HOST) --port $(PORT)$(if $(VERBOSE), -v 2)

# Debian's chromium for the browser tests (Playwright's own browser download cannot be used).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); } || \
	  echo "chromium not installed: browser tests will be skipped"

lint: setup
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m mypy

# Every tier: tests/unit, tests/integration, tests/e2e and tests/faults.
test: lint db browser
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit tier alone, in seconds: no database (none is started or reached) and no server.
test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The README's pictures, on purpose: the browser tests take them into build/screenshots/ on every run.
screenshots: db browser
	$(PY) -m pytest -q tests/e2e/test_dashboard.py tests/e2e/test_chat.py tests/e2e/test_live.py -k postgres
	cp build/screenshots/dashboard.png build/screenshots/chat.png build/screenshots/admin-notice.png \
	  build/screenshots/my-orders.png docs/

# The wheel and sdist of django-pgnotify (the app alone, not the demo project), checked by twine.
dist: setup
	rm -rf dist
	$(PY) -m build --outdir dist
	$(PY) -m twine check --strict dist/*

clean:
	-$(PY) -m notifyproject.embedded_db stop
	rm -rf .pgdata staticfiles

$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(PY) -m pip install -q -r bench/requirements.txt
	touch $@

bench: db $(VENV)/.bench-installed
	$(PY) -m bench.run $(BENCH_ARGS)
