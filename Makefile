# Two commands do all set-up: `make run` (devnet + API + page) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_OK  := $(VENV)/.installed
JS_OK  := node_modules/.installed
# Browser tests drive Debian's chromium (Playwright's own browser download cannot work here).
BROWSER := /usr/bin/chromium

.PHONY: setup run test lint fmt contracts bench clean

setup: $(PY_OK) $(JS_OK)

$(PY_OK): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(JS_OK): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(BROWSER):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core; \
	 else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core; fi

# `make run PORT=9000` serves the API on another port.
run: setup
	$(BIN)/crossmargin up $(if $(PORT),--port $(PORT))

lint: $(PY_OK)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup lint $(BROWSER)
	$(BIN)/pytest

fmt: $(PY_OK)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Recompile contracts/artifacts from sources (solcjs, offline but for the npm registry).
contracts: $(JS_OK)
	node contracts/build.mjs

# Whole-run benchmarks, each against its naive baseline measured in the same run.
bench: setup
	$(BIN)/python bench/aggregator.py
	$(BIN)/python bench/adapters.py
	$(BIN)/python bench/oracle.py
	$(BIN)/python bench/snapshots.py
	$(BIN)/python bench/tlog.py
	$(BIN)/python bench/valuation.py
	test ! -f bench/api.py || $(BIN)/python bench/api.py
	$(BIN)/python bench/verified.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/proof_walk.py
	$(BIN)/python bench/watch.py

# Regenerate the Python lock after editing pyproject.toml dependencies.
lock: $(PY_OK)
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes -o requirements.lock -q

clean:
	rm -rf $(VENV) node_modules .devnet build .mypy_cache .ruff_cache .pytest_cache
