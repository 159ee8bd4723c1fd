"""The PromQL the chart ships outside alert rules — KEDA's scaling queries and the Grafana
dashboards — evaluated by promtool's rule-test engine (real Prometheus PromQL), so a query that
does not parse, or does not compute what the scaler expects, fails here."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.manifests import NAMESPACE, REPO, of_kind, rendered, run, tool


def _promtool_test(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    path = tmp_path / "queries.test.yaml"
    path.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": tests}))
    proc = run([tool("promtool"), "test", "rules", path])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _triggers(name: str) -> dict[str, str]:
    (so,) = [s for s in of_kind(rendered("eks-vllm"), "ScaledObject") if s["metadata"]["name"] == name]
    return {t["name"]: t["metadata"]["query"] for t in so["spec"]["triggers"]}


def test_keda_queries_compute_busy_slots_and_kv_cache_use(tmp_path: Path) -> None:
    svc = "gh-gatehouse-vllm-qwen-coder"        # max-num-seqs 64 in eks-vllm.yaml
    q = _triggers(svc)
    own = f'namespace="{NAMESPACE}",service="{svc}"'
    other = f'namespace="{NAMESPACE}",service="gh-gatehouse-vllm-llama-8b"'
    _promtool_test(tmp_path, [
        {"interval": "1m",
         "input_series": [
             {"series": f"vllm:num_requests_running{{{own},pod=\"a\"}}", "values": "32x5"},
             {"series": f"vllm:num_requests_running{{{own},pod=\"b\"}}", "values": "16x5"},
             {"series": f"vllm:num_requests_running{{{other},pod=\"c\"}}", "values": "100x5"},
             {"series": f"vllm:kv_cache_usage_perc{{{own},pod=\"a\"}}", "values": "0.5x5"},
             {"series": f"vllm:kv_cache_usage_perc{{{own},pod=\"b\"}}", "values": "0.7x5"},
         ],
         "promql_expr_test": [
             # 48 running over 64 slots per replica: 0.75 replica-loads, KEDA divides by the target
             {"expr": q["running-ratio"], "eval_time": "3m", "exp_samples": [{"labels": "{}", "value": 0.75}]},
             {"expr": q["kv-cache"], "eval_time": "3m", "exp_samples": [{"labels": "{}", "value": 0.6}]},
         ]},
        {"interval": "1m",   # vLLM before v0.10 names the KV-cache gauge gpu_cache_usage_perc
         "input_series": [{"series": f"vllm:gpu_cache_usage_perc{{{own},pod=\"a\"}}", "values": "0.9x5"}],
         "promql_expr_test": [
             {"expr": q["kv-cache"], "eval_time": "3m", "exp_samples": [{"labels": "{}", "value": 0.9}]}]},
    ])


def test_the_scale_from_zero_trigger_sees_the_gateways_attempts(tmp_path: Path) -> None:
    q = _triggers("gh-gatehouse-vllm-llama-8b")
    series = 'gatehouse_upstream_attempts_total{model="llama-8b",provider="vllm-llama-8b",status="502"}'
    _promtool_test(tmp_path, [
        {"interval": "1m",
         "input_series": [{"series": series, "values": "0 0 0 0 0 0 1 2 2 2 2 2 2 2 2 2 2 2"},
                          {"series": series.replace("vllm-llama-8b", "bedrock"), "values": "0+5x17"}],
         "promql_expr_test": [
             {"expr": q["gateway-demand"], "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 0}]},
             {"expr": q["gateway-demand"], "eval_time": "9m", "exp_samples": [{"labels": "{}", "value": 2}]},
             {"expr": q["gateway-demand"], "eval_time": "16m", "exp_samples": [{"labels": "{}", "value": 0}]},
         ]},
    ])


def test_every_dashboard_query_parses_and_runs(tmp_path: Path) -> None:
    exprs = []
    for path in sorted((REPO / "deploy/grafana/dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                exprs.append(re.sub(r"\$__rate_interval|\$__interval|\$__range", "5m", target["expr"]))
    assert len(exprs) >= 10
    # no input series: every query must parse and evaluate to an empty result (a 0 where it ends
    # in `or vector(0)`: a rate that is 0, not absent, when nothing failed)
    _promtool_test(tmp_path, [{"interval": "1m", "input_series": [], "promql_expr_test": [
        {"expr": e, "eval_time": "1m",
         "exp_samples": [{"labels": "{}", "value": 0}] if e.endswith(" or vector(0)") else []} for e in exprs]}])
