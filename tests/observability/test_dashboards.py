"""The Grafana dashboards (deploy/grafana/dashboards/): generated from deploy/grafana/generate.py,
valid JSON with unique UIDs, every query valid PromQL over metrics that exist — and, the
strong check, every query over the gateway's metrics returns data from a real Prometheus
(Debian's package) scraping a real gateway under scripted traffic, with the alert rules
loaded (their recording rules feed the SLO panels).

Panels over vLLM's own metrics (vllm:*) cannot return data here (no vLLM); they are only
parsed."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.promql import (
    DASHBOARDS,
    EXTERNAL_PREFIXES,
    PENDING,
    ROOT,
    RULES,
    defined_in_source,
    metric_names,
    unknown_names,
)
from tests.observability.traffic import METRICS_TOKEN, observed_config, send_traffic, settled
from tests.support import Gatehouse, run_cli
from tests.upstreams.harness import free_port

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
# Grafana's variables, as a user who picked "All" (and a short range) would send them.
VARIABLES = {"$__rate_interval": "30s", "$__range": "10m", "$job": "gatehouse", "$model": ".*", "$group": ".*",
             "$provider": ".*", "$suite": ".*"}


def boards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def targets(board: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in board["panels"] if p["type"] != "row" for t in p["targets"]]


def concrete(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def recorded() -> set[str]:
    return {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}


def test_dashboards_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("grafana_generate", ROOT / "deploy" / "grafana" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert sorted(rendered) == sorted(boards())
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text() == text, f"{name} is stale: run python deploy/grafana/generate.py"


def test_dashboards_load_with_unique_uids_titles_and_panel_ids():
    loaded = boards()
    assert set(loaded) == {"gatehouse-overview.json", "gatehouse-usage.json", "gatehouse-backends.json",
                           "gatehouse-limits.json", "gatehouse-evals.json"}
    uids = [b["uid"] for b in loaded.values()]
    assert len(set(uids)) == len(uids) and all(0 < len(u) <= 40 for u in uids)
    titles = [b["title"] for b in loaded.values()]
    assert len(set(titles)) == len(titles)
    for name, b in loaded.items():
        ids = [p["id"] for p in b["panels"]]
        assert len(set(ids)) == len(ids), name
        assert {v["name"] for v in b["templating"]["list"]} >= {"datasource", "job"}
        for p in b["panels"]:
            if p["type"] == "row":
                continue
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", (name, p["title"])
            refs = [t["refId"] for t in p["targets"]]
            assert len(set(refs)) == len(refs)
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24 and g["h"] > 0


def test_dashboard_queries_read_only_metrics_that_exist():
    for name, b in boards().items():
        for title, expr in targets(b):
            assert unknown_names(metric_names(concrete(expr)), recorded()) == set(), (name, title, expr)


def test_overview_has_ttft_percentiles_and_saturation():
    exprs = " ".join(e for _, e in targets(boards()["gatehouse-overview.json"]))
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(gatehouse_time_to_first_token_seconds_bucket" in exprs
    assert "gatehouse_inflight_requests" in exprs and "vllm:num_requests_waiting" in exprs


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`)")
def test_every_dashboard_query_parses(tmp_path: Path):
    """promtool parses each query as a recording rule (no server needed)."""
    rules = [{"record": f"check:q{i}", "expr": concrete(expr)}
             for i, (_, expr) in enumerate(e for b in boards().values() for e in targets(b))]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    out = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# ---- a real Prometheus scraping a real gateway ---------------------------------------------------


class Prometheus:
    def __init__(self, home: Path, gateway_port: int):
        self.home, self.port = home, free_port()
        rules = RULES.read_text().replace("interval: 30s", "interval: 1s")  # evaluate the SLO rules quickly
        (home / "rules.yaml").write_text(rules)
        (home / "token").write_text(METRICS_TOKEN)
        (home / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(home / "rules.yaml")],
            "scrape_configs": [{"job_name": "gatehouse", "authorization": {"credentials_file": str(home / "token")},
                                "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}]}],
        }))
        self.log = open(home / "prometheus.log", "ab")
        assert PROMETHEUS
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=self.log, cwd=home)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1)
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("prometheus did not start:\n" + (home / "prometheus.log").read_text()) from None
                time.sleep(0.2)

    def query(self, expr: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def record_eval_run(gh: Gatehouse, tmp: Path) -> None:
    from tests.conftest import ALICE_KEY

    suite = tmp / "suite.yaml"
    suite.write_text(yaml.safe_dump({"description": "smoke", "models": ["chat"], "cases": [
        {"id": "echo", "category": "basics", "prompt": "hello", "assert": [{"type": "contains", "value": "hello"}]},
        {"id": "miss", "category": "basics", "prompt": "hello", "assert": [{"type": "contains", "value": "bye"}]}]}))
    assert gh.config_path is not None
    out = run_cli("eval", str(suite), "--url", gh.url, "--key", ALICE_KEY, "--record", "--config",
                  str(gh.config_path), "--threshold", "0", env={**os.environ, "GATEHOUSE_HOME": str(gh.home)})
    assert out.returncode == 0, out.stdout + out.stderr


def may_be_empty(expr: str) -> bool:
    names = metric_names(expr)
    return any(n.startswith(EXTERNAL_PREFIXES) or (n in PENDING and not defined_in_source(n)) for n in names)


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package `prometheus`)")
def test_every_dashboard_query_returns_data_from_a_real_prometheus(openai_upstream, tmp_path: Path):
    gh = Gatehouse(observed_config(openai_upstream.url), tmp_path / "gh").start()
    prom: Prometheus | None = None
    try:
        record_eval_run(gh, tmp_path)
        send_traffic(gh.url)
        settled(gh.url)
        (tmp_path / "prom").mkdir()
        prom = Prometheus(tmp_path / "prom", gh.port)
        deadline = time.monotonic() + 30
        while prom.query('up{job="gatehouse"} == 1')["data"]["result"] == [] and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        send_traffic(gh.url)  # a second round inside the rate windows, so rates are not all zero
        settled(gh.url)
        time.sleep(4)  # a few scrapes and rule evaluations
        assert float(prom.query('sum(rate(gatehouse_requests_total{status="200"}[30s]))')["data"]["result"][0]
                     ["value"][1]) > 0
        problems, empty_allowed, checked = [], [], 0
        for name, board in boards().items():
            for title, expr in targets(board):
                q = concrete(expr)
                answer = prom.query(q)
                if answer.get("status") != "success":
                    problems.append(f"{name} / {title}: {answer.get('error')} in {q}")
                    continue
                values = [float(s["value"][1]) for s in answer["data"]["result"]]
                if may_be_empty(q):
                    empty_allowed.append(title)
                    continue
                checked += 1
                if not values:
                    problems.append(f"{name} / {title}: no data for {q}")
                elif all(math.isnan(v) for v in values):
                    problems.append(f"{name} / {title}: only NaN for {q}")
        assert problems == [], "\n".join(problems)
        assert checked >= 50
        # exactly these panels are left unchecked (named, so that a new panel cannot slip through)
        vllm = {"vLLM requests running / waiting", "Requests running", "Requests waiting", "KV cache use",
                "Generation tokens / s", "vLLM time to first token p95"}
        pending = {"Upstream connection pool", "Ejected deployments (circuit breaker)",
                   "Connection pool wait p95 by provider"}
        assert set(empty_allowed) <= vllm | pending and vllm <= set(empty_allowed), empty_allowed
    finally:
        if prom is not None:
            prom.stop()
        gh.stop()
