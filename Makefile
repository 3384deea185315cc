# stackmedic: every target bootstraps what it needs and is safe to run twice.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: doctor test bench lint servers clean

# The virtualenv with the package and its dev extras; redone when the packaging or the
# C speedups change (an editable install builds the extension once, in place).
$(STAMP): pyproject.toml setup.py src/stackmedic/observe/_speedups.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Server binaries the tests start throwaway copies of (never the shared instances).
servers:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v redis-server >/dev/null \
			|| ! command -v redis-cli >/dev/null || ! command -v chattr >/dev/null; then \
		echo "installing postgresql, redis-server, redis-tools and e2fsprogs with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			postgresql redis-server redis-tools e2fsprogs >/dev/null; \
	fi

# Probe the local machine (no stack file: autodiscovery). Findings are not a make
# failure: the report and its Nagios exit code are the result.
doctor: $(STAMP)
	@code=0; $(BIN)/stackmedic doctor $(ARGS) || code=$$?; \
	echo "stackmedic doctor exit code: $$code (0 ok, 1 warning, 2 critical, 3 unknown)"; \
	test $$code -le 3

test: $(STAMP) servers
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP) servers
	@if ! command -v rg >/dev/null || ! command -v check_postgres >/dev/null; then \
		echo "installing ripgrep and check-postgres (bench peers) with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			ripgrep check-postgres >/dev/null; \
	fi
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run.py $(BENCH)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache bench/out
