# Two commands: `make run` and `make test`. Everything a fresh machine lacks is installed here.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint typecheck install dev-install services claude-code codex bench check clean

# The real Claude Code CLI, as a client for the Anthropic-facade tests (npm registry).
CLAUDE_CODE_VERSION ?= 2.1.197
CLAUDE_CODE_BIN := .cache/claude-code/node_modules/@anthropic-ai/claude-code-linux-x64/claude
# The real Codex CLI, as a client of the Responses API (npm registry).
CODEX_VERSION ?= 0.171.0
CODEX_BIN := .cache/codex/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
dev-install: $(VENV)/.dev-installed

run: install
	$(BIN)/gatehouse serve --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG))

## Real Redis and Postgres for the test session: Postgres 15 ships on the machine, Redis comes from Debian;
## Chromium (Debian) for the admin UI's browser tests; Prometheus and promtool (Debian) for the
## alert-rule and dashboard tests (tests/observability).
services:
	@command -v redis-server >/dev/null 2>&1 || ( \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	  || echo "warning: could not install redis-server; Redis tests will be skipped" )
	@command -v chromium >/dev/null 2>&1 || ( \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; the admin UI browser tests will be skipped" )
	@command -v promtool >/dev/null 2>&1 || ( \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
	  || echo "warning: could not install prometheus (promtool); the alert-rule and dashboard tests will be skipped" )

$(CLAUDE_CODE_BIN):
	@command -v npm >/dev/null 2>&1 && npm install --silent --no-audit --no-fund --prefix .cache/claude-code \
	  @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) >/dev/null 2>&1 \
	  || echo "warning: could not install Claude Code; its tests will be skipped"

claude-code: $(CLAUDE_CODE_BIN)

$(CODEX_BIN):
	@command -v npm >/dev/null 2>&1 && npm install --silent --no-audit --no-fund --prefix .cache/codex \
	  @openai/codex@$(CODEX_VERSION) >/dev/null 2>&1 \
	  || echo "warning: could not install Codex; its test will be skipped"

codex: $(CODEX_BIN)

test: dev-install services claude-code codex
	$(if $(wildcard $(CLAUDE_CODE_BIN)),GATEHOUSE_CLAUDE_CODE_BIN=$(abspath $(CLAUDE_CODE_BIN))) \
	  $(if $(wildcard $(CODEX_BIN)),GATEHOUSE_CODEX_BIN=$(abspath $(CODEX_BIN))) \
	  $(BIN)/python -m pytest $(PYTEST_ARGS)

## The CI gate before the tests: ruff (pyflakes, pycodestyle errors, bugbear) and mypy over src/.
lint: dev-install
	$(BIN)/ruff check src tests bench

typecheck: dev-install
	$(BIN)/mypy

check: install
	$(BIN)/gatehouse check $(if $(CONFIG),--config $(CONFIG))

bench: dev-install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .gatehouse .pytest_cache
