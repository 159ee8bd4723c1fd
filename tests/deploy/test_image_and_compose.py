"""The Dockerfile (hadolint, the image's contract), the compose stack (the real `docker compose`
binary's config check) and the gateway run the way both run it: config from a mounted file,
secrets from the environment, probes and the metrics scrape answered."""
from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatehouse.evals.exported import EvalResults
from tests.deploy.manifests import REPO, TOOLS, run, tool
from tests.in_process import run_cli
from tests.observability.promql import exported_names
from tests.support import Gatehouse, PostgresServer, RedisServer

DOCKERFILE = (REPO / "Dockerfile").read_text()
# the canonical alert rules and dashboards: compose mounts them, the chart ships copies of them
RULES = REPO / "deploy/prometheus/gatehouse-rules.yaml"
DASHBOARDS = REPO / "deploy/grafana/dashboards"
ENV = {"GATEHOUSE_ADMIN_KEY": "admin-k", "GATEHOUSE_SECRET": "hmac-s", "GATEHOUSE_METRICS_TOKEN": "metrics-t",
       "OPENWEBUI_API_KEY": "gh-ui", "POSTGRES_PASSWORD": "pg-p", "GRAFANA_ADMIN_PASSWORD": "gf-p"}
# Series a gateway exports only once `gatehouse eval --record` has stored a run (the chart's eval
# CronJob; tests/deploy/test_evals_chart.py runs its command against a live gateway and scrapes them).
AFTER_A_RECORDED_EVAL = {"gatehouse_eval_pass_ratio", "gatehouse_eval_model_pass_ratio", "gatehouse_eval_cases",
                         "gatehouse_eval_run_duration_seconds", "gatehouse_eval_run_timestamp_seconds"}
# Series this test's traffic does not bring: per-consumer series (metrics.consumer_label, off in
# compose) and the error and refusal counters (no request here fails); the gateway's registry
# declares them (tests/observability exercises them against a real Prometheus).
ONLY_ON_EVENTS = {"gatehouse_consumer_cost_usd_total", "gatehouse_consumer_requests_total",
                  "gatehouse_consumer_tokens_input_total", "gatehouse_consumer_tokens_output_total",
                  "gatehouse_deployment_errors_total", "gatehouse_errors_total", "gatehouse_limit_rejections_total"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "summary": ("_count", "_sum", "")}


def test_hadolint_finds_nothing() -> None:
    proc = run([tool("hadolint"), "--failure-threshold", "info", REPO / "Dockerfile"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_dockerfile_contract() -> None:
    lines = DOCKERFILE.splitlines()
    assert not any(line.startswith("# syntax=") for line in lines)  # fetches a frontend: fails offline
    assert len(re.findall(r"^FROM ", DOCKERFILE, re.MULTILINE)) == 2        # build stage, runtime stage
    assert re.search(r"^COPY --from=build /opt/gatehouse /opt/gatehouse$", DOCKERFILE, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert int(users[-1].split(":")[0]) >= 10000
    assert re.search(r'^VOLUME \["/var/lib/gatehouse"\]$', DOCKERFILE, re.MULTILINE)
    assert "GATEHOUSE_HOME=/var/lib/gatehouse" in DOCKERFILE   # the journal is <home>/journal
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", DOCKERFILE, re.MULTILINE)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert cmd[:3] == ["serve", "--config", "/etc/gatehouse/config.yaml"]


def _compose_binary() -> Path:
    found = sorted((TOOLS / "venv").glob("lib/python*/site-packages/compose/docker-compose"))
    if not found:
        tool("docker-compose")  # skips, naming the install step
    return found[0]


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([_compose_binary(), "-f", REPO / "compose.yaml", "--project-directory", REPO, "config",
                "--format", "json"], env_extra=env)


def test_compose_config_is_valid_and_wires_the_stack() -> None:
    proc = _compose_config(ENV)
    assert proc.returncode == 0, proc.stderr
    cfg: dict[str, Any] = json.loads(proc.stdout)
    services = cfg["services"]
    assert set(services) == {"gatehouse", "postgres", "redis", "ollama", "ollama-pull", "open-webui", "prometheus",
                             "grafana"}
    gw = services["gatehouse"]
    assert gw["read_only"] is True
    assert gw["environment"]["GATEHOUSE_DATABASE_URL"] == "postgresql://gatehouse:pg-p@postgres:5432/gatehouse"
    mounts = {v["target"]: v for v in gw["volumes"]}
    assert mounts["/etc/gatehouse/config.yaml"]["read_only"] is True
    assert mounts["/var/lib/gatehouse"]["type"] == "volume"
    ui = services["open-webui"]["environment"]
    assert ui["OPENAI_API_BASE_URL"] == "http://gatehouse:8080/v1" and ui["OPENAI_API_KEY"] == "gh-ui"
    # every bind mount exists in the repository
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            if v["type"] == "bind":
                assert Path(v["source"]).exists(), f"{name}: {v['source']}"
    # Prometheus and Grafana get the canonical rules and dashboards, the files the chart copies
    binds = {v["target"]: Path(v["source"]) for name in ("prometheus", "grafana")
             for v in services[name]["volumes"] if v["type"] == "bind"}
    assert binds["/etc/prometheus/rules/gatehouse.yaml"] == RULES
    assert binds["/var/lib/grafana/dashboards/gatehouse"] == DASHBOARDS
    # published ports stay on loopback
    for svc in services.values():
        for port in svc.get("ports", []):
            assert port["host_ip"] == "127.0.0.1"


def test_compose_refuses_to_start_without_the_secrets() -> None:
    proc = _compose_config({**ENV, "GATEHOUSE_SECRET": ""})
    assert proc.returncode != 0
    assert "GATEHOUSE_SECRET" in proc.stderr and "make local-up" in proc.stderr


def test_the_compose_prometheus_config_and_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = tool("promtool")
    prom = yaml.safe_load((REPO / "deploy/compose/prometheus.yml").read_text())
    (tmp_path / "token").write_text("t")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "gatehouse.yaml").write_text(RULES.read_text())
    prom["rule_files"] = [str(tmp_path / "rules" / "*.yaml")]
    prom["scrape_configs"][0]["authorization"]["credentials_file"] = str(tmp_path / "token")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom))
    proc = run([promtool, "check", "config", tmp_path / "prometheus.yml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_gateway_runs_the_compose_config_with_secrets_from_env(
        start_gatehouse: Callable[..., Gatehouse], postgres_server: PostgresServer, redis_server: RedisServer,
        tmp_path: Path) -> None:
    """What the image's CMD, the chart's migrations Job and probes, and Prometheus do, on a real
    Postgres and Redis: `gatehouse migrate` then `gatehouse serve --config FILE`."""
    env = {**ENV, "GATEHOUSE_DATABASE_URL": postgres_server.url, "GATEHOUSE_REDIS_URL": redis_server.url}
    config = REPO / "deploy/compose/gatehouse.yaml"
    migrate = run_cli("migrate", "--config", str(config), env={**Gatehouse(None, tmp_path).env, **env})
    assert migrate.returncode == 0, migrate.stderr
    gh = start_gatehouse(yaml.safe_load(config.read_text()), env=env)
    assert _get(gh.url + "/healthz")[0] == 200
    status, body = _get(gh.url + "/readyz")
    assert status == 200 and json.loads(body)["checks"]["store"] == "ok", body
    assert _get(gh.url + "/metrics")[0] == 401
    status, body = _get(gh.url + "/metrics", "metrics-t")
    assert status == 200 and b"gatehouse_ledger_backlog" in body
    status, body = _get(gh.url + "/v1/models", "gh-ui")   # Open WebUI's key lists the models
    assert status == 200 and {m["id"] for m in json.loads(body)["data"]} >= {"echo", "qwen2.5:0.5b"}
    for stream in (False, True):
        assert _post_chat(gh.url, "gh-ui", stream) == 200
    status, body = _get(gh.url + "/metrics", "metrics-t")
    exposed = set(re.findall(r"^(gatehouse_[a-z_]+)", body.decode(), re.MULTILINE))
    # series that need traffic this test does not make (errors, refusals, streams) are declared
    declared = {family + suffix for family, kind in re.findall(r"^# TYPE (gatehouse_[a-z_]+) (\w+)$", body.decode(),
                                                               re.MULTILINE) for suffix in SUFFIXES.get(kind, ("",))}
    # every gateway series the alert rules and the dashboards use is one the gateway exports
    # (recording rules, gatehouse:..., are the rule file's own)
    used = {n for n in re.findall(r"gatehouse_[a-z_]+", RULES.read_text()) if not n.startswith("gatehouse_slo")}
    for dashboard in DASHBOARDS.glob("*.json"):
        used |= set(re.findall(r"gatehouse_[a-z_]+", dashboard.read_text()))
    missing = used - AFTER_A_RECORDED_EVAL - exposed - declared
    assert used and missing <= ONLY_ON_EVENTS, " ".join(sorted(missing - ONLY_ON_EVENTS))
    assert ONLY_ON_EVENTS <= exported_names() and ONLY_ON_EVENTS <= used
    assert {"gatehouse_requests_total", "gatehouse_ledger_backlog"} <= exposed
    assert "gatehouse_eval_model_pass_ratio" in used
    lint = run([tool("promtool"), "check", "metrics"], input=body.decode())
    assert lint.returncode == 0, lint.stdout + lint.stderr


def _post_chat(url: str, key: str, stream: bool) -> int:
    body = json.dumps({"model": "echo", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
        return int(resp.status)


@pytest.mark.parametrize("path", ["deploy/compose/gatehouse.yaml", "deploy/compose/prometheus.yml",
                                  "deploy/compose/grafana/provisioning.yaml", "deploy/compose/grafana/dashboards.yaml"])
def test_compose_files_are_yaml(path: str) -> None:
    assert isinstance(yaml.safe_load((REPO / path).read_text()), dict)


def test_the_metrics_only_a_recorded_eval_brings_are_the_eval_exporters_own() -> None:
    """The allow-list above names only series that gatehouse.evals.exported exports from a
    recorded run, and none of them is on /metrics before one."""
    collector = EvalResults()
    assert [m.name for m in collector.collect() if m.samples] == []
    collector.docs = [{"suite": "smoke", "started_at": 1.0, "duration_s": 2.0, "categories": [["m", "c", 1.0]],
                       "models": {"m": {"ratio": 1.0, "passed": 1, "failed": 0, "error": 0}}}]
    exported = {m.name for m in collector.collect() if m.samples}
    assert AFTER_A_RECORDED_EVAL <= exported
