# Pressluft — every workflow is a target here. `make` alone prints this help.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARTIFACTS ?= .artifacts
PYTEST := $(BIN)/pytest -p no:cacheprovider

.PHONY: help dev venv system-deps lint format typecheck contract traceability locks ansible-lint static \
        test test-unit test-daemon test-contract test-browser fuzz check bench clean

help: ## Show this help
	@echo "Pressluft — make targets:"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'
	@echo
	@echo "Two commands: 'make dev' runs Pressluft, 'make test' runs every test tier."

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv and install Pressluft with its dev tools

dev: $(STAMP) ## Run `pressluft dev` (dashboard on http://127.0.0.1:8080/)
	$(BIN)/pressluft dev

# Debian packages the tests need: the sqlite3 CLI (tamper tests), Chromium (browser tests),
# OpenSSH's server (sshd test nodes), Docker's engine (a private dockerd for lab nodes),
# busybox-static (an offline test image), debootstrap (the node image), php-cli (unit
# tests of the PHP helper Pressluft ships to nodes), nodejs (the contract's name
# pattern judged by a real ECMA-262 engine), wrk (the HTTP load of bench/api.py), systemd
# (systemd-analyze verifies the service unit), git (the upgrade test builds an old commit),
# pebble (the ACME CA of the certificate tests), bind9 (their authoritative DNS, RFC 2136),
# redis-server and php-redis (the object-cache drop-in's tests against a real Redis),
# restic (the backup engine: Pressluft runs it on the control plane; its tests too).
system-deps: ## Install the Debian packages the tests need (when missing and root)
	@missing=""; \
	command -v sqlite3 >/dev/null || missing="$$missing sqlite3"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	test -x /usr/sbin/sshd || missing="$$missing openssh-server"; \
	test -x /usr/sbin/dockerd || missing="$$missing docker.io"; \
	test -x /bin/busybox || missing="$$missing busybox-static"; \
	test -x /usr/sbin/debootstrap || missing="$$missing debootstrap"; \
	command -v php >/dev/null || missing="$$missing php-cli"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v git >/dev/null || missing="$$missing git"; \
	test -x /usr/bin/pebble || missing="$$missing pebble"; \
	test -x /usr/sbin/named || missing="$$missing bind9"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	{ command -v php >/dev/null && php -m | grep -qx redis; } || missing="$$missing php-redis"; \
	command -v restic >/dev/null || missing="$$missing restic"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	  else \
	    echo "missing Debian packages:$$missing — install them (sudo apt-get install$$missing)" >&2; exit 1; \
	  fi; \
	fi

lint: $(STAMP) ## ruff lint + format check
	$(BIN)/ruff check pressluft tests bench
	$(BIN)/ruff format --check pressluft tests bench

format: $(STAMP) ## Apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix pressluft tests bench
	$(BIN)/ruff format pressluft tests bench

typecheck: $(STAMP) ## mypy --strict on pressluft/
	$(BIN)/mypy

contract: $(STAMP) ## The OpenAPI file is valid and equals the app's routes
	$(BIN)/pressluft openapi check

traceability: ## Every spec scenario is cited by a test and every citation exists
	$(BIN)/python scripts/check-traceability

locks: ## coordination/locks.md is well-formed and has no stale locks
	$(BIN)/python scripts/check-locks

# From pressluft/ansible/, where its .ansible-lint makes that folder the project (offline: no galaxy, no
# collections, no version check); PATH so it finds the venv's ansible-playbook.
ansible-lint: $(STAMP) ## ansible-lint on pressluft/ansible/ (the provisioning playbook and roles)
	cd pressluft/ansible && PATH="$(abspath $(BIN)):$$PATH" ansible-lint --offline

static: lint typecheck contract traceability locks ansible-lint ## All static checks

# Two pytest processes at once: the tests on the session's live lab site (marked `live`:
# one node, one site, mostly waiting on its jobs) beside every other tier. Both must pass;
# the live run's output follows the other's. The backups' live tests run with the other
# tiers, on a live site of their own (tests/conftest.py: SECOND_LIVE_SITE).
test: system-deps $(STAMP) static ## Install what is needed, then run every test tier
	@mkdir -p $(ARTIFACTS)
	@PRESSLUFT_ARTIFACTS=$(abspath $(ARTIFACTS)) $(PYTEST) tests -q -m live \
	  --junitxml=$(ARTIFACTS)/junit-live.xml > $(ARTIFACTS)/test-live.log 2>&1 & live=$$!; \
	PRESSLUFT_ARTIFACTS=$(abspath $(ARTIFACTS)) $(PYTEST) tests -q -m "not live" \
	  --junitxml=$(ARTIFACTS)/junit.xml; rest=$$?; \
	wait $$live; live_rc=$$?; \
	echo "== the live site's tests (exit $$live_rc) =="; cat $(ARTIFACTS)/test-live.log; \
	test $$rest -eq 0 && test $$live_rc -eq 0

test-unit: $(STAMP) ## Only the in-process tests (fast)
	$(PYTEST) tests -q -m "not daemon and not contract and not browser"

test-daemon: $(STAMP) ## Only the tests that run real pressluft processes
	$(PYTEST) tests -q -m daemon

test-contract: $(STAMP) ## schemathesis against a live daemon
	$(PYTEST) tests -q -m contract

fuzz: test-contract ## Alias of test-contract

test-browser: system-deps $(STAMP) ## Headless Chromium against a live daemon
	@mkdir -p $(ARTIFACTS)
	PRESSLUFT_ARTIFACTS=$(abspath $(ARTIFACTS)) $(PYTEST) tests -q -m browser

check: static test ## Everything CI checks: lint, types, contract, traceability, locks, tests

bench: $(STAMP) ## Benchmarks (ratios against raw sqlite3, huey, bare ansible-playbook, a bare Litestar app and bare ssh | gzip | S3 uploads, same run)
	@status=0; $(BIN)/python bench/events.py || status=1; \
	$(BIN)/python bench/jobqueue.py || status=1; \
	$(BIN)/python bench/provision.py || status=1; \
	$(BIN)/python bench/api.py || status=1; \
	$(BIN)/python bench/backup.py || status=1; exit $$status

clean: ## Remove caches and artifacts (keeps .venv and .pressluft)
	rm -rf $(ARTIFACTS) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
