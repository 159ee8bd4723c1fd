"""Writes the Grafana dashboards in deploy/grafana/dashboards/ (run it after editing this file:
`python deploy/grafana/generate.py`; tests/observability/test_dashboards.py checks that the
JSON is what this file generates, that every query parses, and that every query over the
gateway's metrics returns data from a real Prometheus scraping a real gateway).

Variables: `datasource` (a Prometheus data source), `job` (the gateway's scrape job) and,
per dashboard, `model` / `group` / `provider` filters. Queries use `$__rate_interval`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
J = 'job=~"$job"'
Q5XX, Q429, Q503 = '"5.."', '"429"', '"503"'


class Board:
    def __init__(self, uid: str, title: str, description: str, filters: list[tuple[str, str]]):
        self.uid, self.title, self.description, self.filters = uid, title, description, filters
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = 0
        self.row_h = 0

    def row(self, title: str) -> None:
        self.y += self.row_h
        self.x = self.row_h = 0
        self.panels.append({"type": "row", "title": title, "collapsed": False, "id": len(self.panels) + 1,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, kind: str, title: str, targets: list[tuple[str, str]], unit: str = "short", w: int = 12,
              h: int = 8, description: str = "", **options: Any) -> None:
        if self.x + w > 24:
            self.y += self.row_h
            self.x = self.row_h = 0
        p: dict[str, Any] = {
            "type": kind, "title": title, "id": len(self.panels) + 1, "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i),
                         **({"instant": True, "format": "table"} if kind in ("table", "bargauge") else {})}
                        for i, (expr, legend) in enumerate(targets)],
        }
        if description:
            p["description"] = description
        if kind == "timeseries":
            p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                            "tooltip": {"mode": "multi"}}
        elif kind == "stat":
            p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
        p["options"] = {**p.get("options", {}), **options}
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)

    def json(self) -> dict[str, Any]:
        variables: list[dict[str, Any]] = [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            {"name": "job", "label": "Gateway job", "type": "query", "datasource": DS,
             "query": {"query": "label_values(gatehouse_inflight_requests, job)", "refId": "job"},
             "definition": "label_values(gatehouse_inflight_requests, job)", "refresh": 2,
             "includeAll": True, "allValue": ".*", "multi": True, "current": {"text": "All", "value": "$__all"}},
        ]
        for name, source in self.filters:
            q = f"label_values({source}{{{J}}}, {name})"
            variables.append({"name": name, "label": name.capitalize(), "type": "query", "datasource": DS,
                              "query": {"query": q, "refId": name}, "definition": q, "refresh": 2,
                              "includeAll": True, "allValue": ".*", "multi": True,
                              "current": {"text": "All", "value": "$__all"}})
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["gatehouse", "llm-gateway"], "schemaVersion": 39, "version": 1, "editable": True,
            "graphTooltip": 1, "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "timezone": "",
            "annotations": {"list": []}, "links": [{"type": "dashboards", "tags": ["gatehouse"], "asDropdown": True,
                                                   "title": "Gatehouse"}],
            "templating": {"list": variables}, "panels": self.panels,
        }


def rate(metric: str, sel: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{sel}}}[$__rate_interval]))"


def quantiles(metric: str, sel: str, by: str = "") -> list[tuple[str, str]]:
    extra = f", {by}" if by else ""
    legend = f"{{{{{by}}}}} " if by else ""
    return [(f"histogram_quantile({q}, sum by (le{extra}) (rate({metric}_bucket{{{sel}}}[$__rate_interval])))",
             f"{legend}p{round(q * 100)}") for q in (0.5, 0.95, 0.99)]


def overview() -> Board:
    b = Board("gatehouse-overview", "Gatehouse / Overview",
              "Traffic, errors, latency, time to first token, saturation and SLOs of the gateway.",
              [("model", "gatehouse_requests_total")])
    s = f'{J},model=~"$model"'
    req = "gatehouse_requests_total"
    b.row("Now")
    b.panel("stat", "Requests / s", [(rate(req, s), "")], "reqps", w=4, h=4)
    b.panel("stat", "5xx ratio", [(f'({rate(req, s + ",status=~" + Q5XX)} or vector(0)) / {rate(req, s)}', "")], "percentunit",
            w=4, h=4)
    b.panel("stat", "429 ratio", [(f'({rate(req, s + ",status=" + Q429)} or vector(0)) / {rate(req, s)}', "")], "percentunit",
            w=4, h=4)
    b.panel("stat", "In flight", [(f"sum (gatehouse_inflight_requests{{{J}}})", "")], w=4, h=4)
    b.panel("stat", "Replicas up", [(f"sum (up{{{J}}})", "")], w=4, h=4)
    b.panel("stat", "Ledger backlog", [(f"sum (gatehouse_ledger_backlog{{{J}}})", "")], w=4, h=4)
    b.row("Traffic and errors")
    b.panel("timeseries", "Requests / s by status", [(rate(req, s, "status"), "{{status}}")], "reqps")
    b.panel("timeseries", "Requests / s by model", [(rate(req, s, "model"), "{{model}}")], "reqps")
    b.panel("timeseries", "Errors / s by type", [(rate("gatehouse_errors_total", J, "type"), "{{type}}")], "reqps")
    b.panel("timeseries", "Upstream attempts / s by provider and status",
            [(rate("gatehouse_upstream_attempts_total", s, "provider, status"), "{{provider}} {{status}}")], "reqps")
    b.row("Latency")
    b.panel("timeseries", "Request duration", quantiles("gatehouse_request_duration_seconds", s), "s")
    b.panel("timeseries", "Time to first token (streams)", quantiles("gatehouse_time_to_first_token_seconds", s), "s")
    b.panel("timeseries", "Time to first token p95 by model",
            [(f"histogram_quantile(0.95, sum by (le, model) (rate(gatehouse_time_to_first_token_seconds_bucket"
              f"{{{s}}}[$__rate_interval])))", "{{model}}")], "s")
    b.panel("timeseries", "Inter-token latency (streams)", quantiles("gatehouse_inter_token_latency_seconds", s), "s")
    b.row("Saturation")
    b.panel("timeseries", "In-flight requests by replica",
            [(f"sum by (instance) (gatehouse_inflight_requests{{{J}}})", "{{instance}}")])
    b.panel("timeseries", "Upstream connection pool",
            [(f"sum by (provider) (gatehouse_upstream_connections_in_use{{{J}}})", "{{provider}} in use"),
             (f"sum by (provider) (gatehouse_upstream_pool_waiting{{{J}}})", "{{provider}} waiting")],
            description="Plain-HTTP upstreams with max_connections (upstream reliability change).")
    b.panel("timeseries", "503 (capacity) refusals / s", [(f'{rate(req, s + ",status=" + Q503)} or vector(0)', "503")], "reqps")
    b.panel("timeseries", "vLLM requests running / waiting",
            [("sum by (model_name) (vllm:num_requests_running)", "{{model_name}} running"),
             ("sum by (model_name) (vllm:num_requests_waiting)", "{{model_name}} waiting")],
            description="Only when Prometheus scrapes the vLLM servers.")
    b.row("SLOs (need deploy/prometheus/gatehouse-rules.yaml loaded)")
    b.panel("timeseries", "5xx ratio vs SLO budget (0.5%)",
            [("gatehouse:slo_errors:ratio_rate5m", "5m"), ("gatehouse:slo_errors:ratio_rate1h", "1h"),
             ("gatehouse:slo_errors:ratio_rate1d", "1d")], "percentunit", w=8)
    b.panel("timeseries", "Streams over 2 s to first token vs SLO budget (5%)",
            [("gatehouse:slo_ttft:ratio_rate5m", "5m"), ("gatehouse:slo_ttft:ratio_rate1h", "1h"),
             ("gatehouse:slo_ttft:ratio_rate1d", "1d")], "percentunit", w=8)
    b.panel("timeseries", "503 ratio vs SLO budget (1%)",
            [("gatehouse:slo_saturation:ratio_rate5m", "5m"), ("gatehouse:slo_saturation:ratio_rate1h", "1h"),
             ("gatehouse:slo_saturation:ratio_rate1d", "1d")], "percentunit", w=8)
    b.row("Process")
    b.panel("timeseries", "CPU (cores) by replica",
            [(f"sum by (instance) (rate(process_cpu_seconds_total{{{J}}}[$__rate_interval]))", "{{instance}}")],
            w=8)
    b.panel("timeseries", "Resident memory by replica",
            [(f"sum by (instance) (process_resident_memory_bytes{{{J}}})", "{{instance}}")], "bytes", w=8)
    b.panel("timeseries", "Open file descriptors by replica",
            [(f"sum by (instance) (process_open_fds{{{J}}})", "{{instance}}")], w=8)
    return b


def usage() -> Board:
    b = Board("gatehouse-usage", "Gatehouse / Usage & cost",
              "Tokens and cost by group, model and (with metrics.consumer_label) consumer.",
              [("group", "gatehouse_tokens_input_total"), ("model", "gatehouse_tokens_input_total")])
    s = f'{J},group=~"$group",model=~"$model"'
    b.row("Totals over the time range")
    for title, metric, unit in (("Input tokens", "gatehouse_tokens_input_total", "short"),
                                ("Output tokens", "gatehouse_tokens_output_total", "short"),
                                ("Cost", "gatehouse_cost_usd_total", "currencyUSD")):
        b.panel("stat", title, [(f"sum (increase({metric}{{{s}}}[$__range]))", "")], unit, w=6, h=4)
    b.panel("stat", "Cached input share",
            [(f"sum (rate(gatehouse_tokens_cached_input_total{{{s}}}[$__range])) / "
              f"sum (rate(gatehouse_tokens_input_total{{{s}}}[$__range]))", "")], "percentunit", w=6, h=4)
    b.row("Tokens")
    for by in ("model", "group"):
        b.panel("timeseries", f"Tokens / s by {by}",
                [(rate("gatehouse_tokens_input_total", s, by), f"{{{{{by}}}}} in"),
                 (rate("gatehouse_tokens_output_total", s, by), f"{{{{{by}}}}} out")])
    b.row("Cost")
    b.panel("timeseries", "Cost per hour by group",
            [(f"sum by (group) (rate(gatehouse_cost_usd_total{{{s}}}[$__rate_interval])) * 3600", "{{group}}")],
            "currencyUSD")
    b.panel("bargauge", "Cost by model over the range",
            [(f"sort_desc (sum by (model) (increase(gatehouse_cost_usd_total{{{s}}}[$__range])))", "{{model}}")],
            "currencyUSD", displayMode="gradient", orientation="horizontal")
    b.panel("timeseries", "Unpriced upstream attempts / s",
            [(rate("gatehouse_unpriced_requests_total", f'{J},model=~"$model"', "model, provider"),
              "{{model}} {{provider}}")], "reqps",
            description="Traffic to deployments without a price is recorded at $0.")
    b.row("Consumers (metrics.consumer_label: true)")
    cs = f'{J},group=~"$group",model=~"$model"'
    b.panel("table", "Top consumers by tokens over the range",
            [(f"topk(20, sum by (consumer, group) (increase(gatehouse_consumer_tokens_input_total{{{cs}}}[$__range]))"
              f" + sum by (consumer, group) (increase(gatehouse_consumer_tokens_output_total{{{cs}}}[$__range])))",
              "")])
    b.panel("table", "Top consumers by cost over the range",
            [(f"topk(20, sum by (consumer, group) (increase(gatehouse_consumer_cost_usd_total{{{cs}}}[$__range])))",
              "")], "currencyUSD")
    b.panel("timeseries", "Requests / s by consumer (top 10)",
            [(f"topk(10, {rate('gatehouse_consumer_requests_total', cs, 'consumer')})", "{{consumer}}")], "reqps")
    b.panel("timeseries", "Output tokens / s by consumer (top 10)",
            [(f"topk(10, {rate('gatehouse_consumer_tokens_output_total', cs, 'consumer')})", "{{consumer}}")])
    return b


def backends() -> Board:
    b = Board("gatehouse-backends", "Gatehouse / Backends",
              "Upstream deployments as the gateway sees them, and vLLM engine metrics when Prometheus scrapes vLLM.",
              [("provider", "gatehouse_deployment_attempt_duration_seconds_count")])
    s = f'{J},provider=~"$provider"'
    count = "gatehouse_deployment_attempt_duration_seconds_count"
    b.row("Deployments")
    b.panel("timeseries", "Attempts / s by deployment",
            [(rate(count, s, "provider, deployment"), "{{provider}}/{{deployment}}")], "reqps")
    b.panel("timeseries", "Attempt duration p95 by deployment",
            [(f"histogram_quantile(0.95, sum by (le, provider, deployment) (rate("
              f"gatehouse_deployment_attempt_duration_seconds_bucket{{{s}}}[$__rate_interval])))",
              "{{provider}}/{{deployment}}")], "s")
    b.panel("timeseries", "Failed attempts / s by deployment and type",
            [(rate("gatehouse_deployment_errors_total", s, "provider, deployment, type"),
              "{{provider}}/{{deployment}} {{type}}")], "reqps")
    b.panel("timeseries", "Failure ratio by deployment",
            [(f"{rate('gatehouse_deployment_errors_total', s, 'provider, deployment')} / "
              f"{rate(count, s, 'provider, deployment')}", "{{provider}}/{{deployment}}")], "percentunit")
    b.panel("timeseries", "Ejected deployments (circuit breaker)",
            [(f"max by (provider, deployment) (gatehouse_upstream_ejected{{{s}}})", "{{provider}}/{{deployment}}")],
            description="1 while the breaker keeps the deployment out (upstream reliability change).")
    b.panel("timeseries", "Connection pool wait p95 by provider",
            [(f"histogram_quantile(0.95, sum by (le, provider) (rate(gatehouse_upstream_pool_wait_seconds_bucket"
              f"{{{s}}}[$__rate_interval])))", "{{provider}}")], "s")
    b.row("vLLM engines (scrape job of the model servers)")
    b.panel("timeseries", "Requests running", [("sum by (model_name) (vllm:num_requests_running)", "{{model_name}}")],
            w=8)
    b.panel("timeseries", "Requests waiting", [("sum by (model_name) (vllm:num_requests_waiting)", "{{model_name}}")],
            w=8)
    b.panel("timeseries", "KV cache use",
            [("avg by (model_name) (vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc)", "{{model_name}}")],
            "percentunit", w=8)
    b.panel("timeseries", "Generation tokens / s",
            [("sum by (model_name) (rate(vllm:generation_tokens_total[$__rate_interval]))", "{{model_name}} out"),
             ("sum by (model_name) (rate(vllm:prompt_tokens_total[$__rate_interval]))", "{{model_name}} prompt")])
    b.panel("timeseries", "vLLM time to first token p95",
            [("histogram_quantile(0.95, sum by (le, model_name) (rate(vllm:time_to_first_token_seconds_bucket"
              "[$__rate_interval])))", "{{model_name}}")], "s")
    return b


def limits() -> Board:
    b = Board("gatehouse-limits", "Gatehouse / Guardrails & limits",
              "Refusals by limits, budgets and access rules; the limits store (Redis).",
              [("group", "gatehouse_limit_rejections_total")])
    s = f'{J},group=~"$group"'
    rej = "gatehouse_limit_rejections_total"
    b.row("Limits and budgets")
    b.panel("timeseries", "429 refusals / min by group and reason",
            [(f"{rate(rej, s, 'group, reason')} * 60", "{{group}} {{reason}}")])
    b.panel("timeseries", "Budget refusals / min by group",
            [(rate(rej, s + ',reason="budget_exceeded"', "group") + " * 60", "{{group}}")])
    b.panel("table", "Consumers refused most over the range (metrics.consumer_label)",
            [(f"topk(20, sum by (consumer, group, reason) (increase({rej}{{{s}}}[$__range])))", "")])
    b.panel("timeseries", "Refusals / s by error code (auth, access, limits)",
            [(f'sum by (type) (rate(gatehouse_errors_total{{{J},type!~"upstream_.*|client_closed|cancelled"}}'
              f'[$__rate_interval]))', "{{type}}")], "reqps",
            description="Guardrail verdicts will show here once guardrails export their own metric.")
    b.panel("timeseries", "401 / 403 / 429 by group",
            [(f'sum by (group, status) (rate(gatehouse_requests_total{{{J},status=~"401|403|429"}}'
              f'[$__rate_interval]))', "{{group}} {{status}}")], "reqps")
    b.row("Limits store (Redis)")
    b.panel("stat", "Limits store up (min over replicas)", [(f"min (gatehouse_limits_store_up{{{J}}})", "")], w=8,
            h=4)
    b.panel("timeseries", "Limits store errors / s",
            [(f"sum (rate(gatehouse_limits_store_errors_total{{{J}}}[$__rate_interval]))", "errors")], w=8)
    b.panel("timeseries", "Fallback admissions / s (Redis out)",
            [(f"sum (rate(gatehouse_limits_fallback_admissions_total{{{J}}}[$__rate_interval]))", "admitted")], w=8)
    return b


def evals() -> Board:
    b = Board("gatehouse-evals", "Gatehouse / Evals",
              "Recorded `gatehouse eval` runs (gatehouse eval --record): pass ratios per suite, model and category.",
              [("suite", "gatehouse_eval_model_pass_ratio")])
    s = f'{J},suite=~"$suite"'
    b.row("Pass ratios")
    b.panel("timeseries", "Pass ratio by suite and model",
            [(f"max by (suite, model) (gatehouse_eval_model_pass_ratio{{{s}}})", "{{suite}} {{model}}")],
            "percentunit")
    b.panel("timeseries", "Pass ratio minus its 7-day median",
            [(f"max by (suite, model) (gatehouse_eval_model_pass_ratio{{{s}}}) - max by (suite, model) "
              f"(quantile_over_time(0.5, gatehouse_eval_model_pass_ratio{{{s}}}[7d]))", "{{suite}} {{model}}")],
            "percentunit", description="GatehouseEvalPassRateDropped fires below -5 points.")
    b.panel("table", "Pass ratio by category (last run)",
            [(f"max by (suite, model, category) (gatehouse_eval_pass_ratio{{{s}}})", "")], "percentunit")
    b.panel("table", "Cases by status (last run)",
            [(f"max by (suite, model, status) (gatehouse_eval_cases{{{s}}})", "")])
    b.panel("stat", "Hours since the last run",
            [(f"(time() - max by (suite) (gatehouse_eval_run_timestamp_seconds{{{s}}})) / 3600", "{{suite}}")],
            "h", w=12, h=4)
    b.panel("stat", "Last run duration",
            [(f"max by (suite) (gatehouse_eval_run_duration_seconds{{{s}}})", "{{suite}}")], "s", w=12, h=4)
    return b


BOARDS = {"gatehouse-overview.json": overview, "gatehouse-usage.json": usage, "gatehouse-backends.json": backends,
          "gatehouse-limits.json": limits, "gatehouse-evals.json": evals}


def render() -> dict[str, str]:
    return {name: json.dumps(make().json(), indent=1) + "\n" for name, make in BOARDS.items()}


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
