# The two commands of the quick start: `make run` and `make test`.
# Everything either needs (virtualenv, Python packages, the npm packages the tests
# use, the demo OpenID provider, the Debian packages the tests drive) is
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

.PHONY: run test lint typecheck unit bench clean install mesh-demo test-packages

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

# Debian packages the tests drive: Chromium for the browser tests (Playwright's own
# browser download is not reachable from here), and Patroni, etcd and a PostgreSQL
# server for the failover test (tests/reliability/patroni.py says why Debian's).
# What is missing is installed as root in one apt-get; anyone else is told the command.
test-packages:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v patroni >/dev/null || missing="$$missing patroni"; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian packages for the tests:$$missing (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	else \
	  echo "Debian packages the tests need are missing and make is not running as root:"; \
	  echo "  sudo apt-get install$$missing"; \
	  echo "(the browser tests skip without chromium; the failover test skips, or fails with CI set)"; \
	fi

# The demo OpenID provider runs beside the service and stops with it (Ctrl-C stops both).
# demo/oidc/clients.json names the service at http://127.0.0.1:8080; another CPIS_PORT
# or CPIS_PUBLIC_BASE_URL is put in its place, so signing in comes back to the service.
run: $(STAMP) $(OIDC_STAMP)
	base=$${CPIS_PUBLIC_BASE_URL:-http://127.0.0.1:$${CPIS_PORT:-8080}}; \
	DEMO_OIDC_PORT=$(DEMO_OIDC_PORT) \
	DEMO_OIDC_CLIENTS="$$(sed "s|http://127.0.0.1:8080|$${base%/}|g" demo/oidc/clients.json)" \
	node demo/oidc/server.mjs & oidc=$$!; \
	trap 'kill $$oidc 2>/dev/null' EXIT; \
	CPIS_DEMO_OIDC_ISSUER=http://127.0.0.1:$(DEMO_OIDC_PORT) \
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

test: lint $(NODE_STAMP) $(OIDC_STAMP) test-packages
	$(BIN)/pytest -q

unit: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest -q tests/unit

bench: $(STAMP)
	bench/lookup && bench/notify && bench/upload && bench/matching && bench/inbox

clean:
	rm -rf $(VENV) tests/node_modules demo/oidc/node_modules .mypy_cache .pytest_cache .ruff_cache
