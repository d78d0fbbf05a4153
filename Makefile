# Hoist: `make run` for the demo, `make test` for the suite, `make bench` for the figures.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AXE := node_modules/axe-core/axe.min.js
# Parallel test workers; the suite is safe under xdist (per-worker databases, sandboxes, registries).
TEST_WORKERS ?= 2

.PHONY: run test bench smoke venv check clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py rundemo

test: $(STAMP) $(AXE)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# axe-core (package.json) for the browser tests' accessibility checks (tests/browser/axe.py). Without npm
# they skip, or fail under CI (CI=true), saying so; .ci/run installs Debian's nodejs and npm.
$(AXE): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund && touch $@; \
	else echo "make: npm not found: the accessibility tests can't run (apt-get install nodejs npm)" >&2; fi

# Production smoke test: gunicorn (DEBUG off), PostgreSQL, the Redis broker, two workers,
# the observer, a sandbox cluster and a registry; see deploy/smoke.py.
smoke: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python deploy/smoke.py

bench: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/python -m bench

check: $(STAMP)
	DEBUG=true $(BIN)/python manage.py check
	DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* var staticfiles test-artifacts node_modules
