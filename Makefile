# The two commands of the quick start: `make run` and `make test`.
# Everything either needs (virtualenv, Python packages, the npm packages the tests
# use, the demo OpenID provider, Debian's Chromium for the browser tests) is
# installed here, so a fresh clone needs nothing by hand.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
NODE_STAMP := tests/node_modules/.installed
OIDC_STAMP := demo/oidc/node_modules/.installed
# The demo OpenID provider (demo/oidc/README.md): where `make run` serves it.
DEMO_OIDC_PORT ?= 8090

.PHONY: run test lint typecheck unit bench clean install mesh-demo chromium

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

$(NODE_STAMP): tests/package.json tests/package-lock.json
	cd tests && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(OIDC_STAMP): demo/oidc/package.json demo/oidc/package-lock.json
	cd demo/oidc && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The browser tests drive Debian's Chromium (Playwright's own browser download is
# not reachable from here). Installed when missing, as root; anyone else is told.
chromium:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian's chromium for the browser tests (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "Chromium is missing and make is not running as root, so it cannot install it:"; \
	  echo "  sudo apt-get install chromium    (the browser tests skip without it)"; \
	fi

# The demo OpenID provider runs beside the service and stops with it (Ctrl-C stops both).
run: $(STAMP) $(OIDC_STAMP)
	DEMO_OIDC_PORT=$(DEMO_OIDC_PORT) node demo/oidc/server.mjs & oidc=$$!; \
	trap 'kill $$oidc 2>/dev/null' EXIT; \
	CPIS_PERSON_INDEX=$${CPIS_PERSON_INDEX:-local} $(BIN)/cpis serve --demo

# An upload by MESH end to end, with NHS England's mesh-sandbox (schemas/uploads.md):
# make mesh-demo ARGS="my-file.csv --keep"
mesh-demo: $(STAMP)
	$(BIN)/python scripts/mesh-demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(wildcard cpis tests bench scripts)
	$(BIN)/ruff format --check $(wildcard cpis tests bench scripts)
	$(BIN)/mypy cpis
	$(BIN)/lint-imports

test: lint $(NODE_STAMP) $(OIDC_STAMP) chromium
	$(BIN)/pytest -q

unit: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest -q tests/unit

bench: $(STAMP)
	bench/lookup && bench/notify && bench/upload && bench/matching && bench/inbox

clean:
	rm -rf $(VENV) tests/node_modules demo/oidc/node_modules .mypy_cache .pytest_cache .ruff_cache
