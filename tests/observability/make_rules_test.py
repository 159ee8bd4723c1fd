"""Writes rules_test.yaml (promtool unit tests of deploy/prometheus/gatehouse-rules.yaml): expected
annotations are rendered from the rule file with the values each case expects. Run it after
changing the rules, then `promtool test rules tests/observability/rules_test.yaml`."""
import re
from pathlib import Path

import yaml

HERE = Path(__file__).parent
R = HERE.parents[1] / "deploy" / "prometheus" / "gatehouse-rules.yaml"
rules = {r["alert"]: r for g in yaml.safe_load(open(R))["groups"] for r in g["rules"] if "alert" in r}

def ann(alert, labels, value):
    out = {}
    for k, v in rules[alert]["annotations"].items():
        v = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], v)
        if "$value" in v:
            assert value is not None, (alert, v)
            v = re.sub(r"\{\{ \$value[^}]*\}\}", value, v)
        out[k] = v
    return out

def case(alertname, eval_time, fires=(), value=None):
    exp = []
    for labels in fires:
        full = {"severity": rules[alertname]["labels"]["severity"], **{k: v for k, v in rules[alertname]["labels"].items()}, **labels}
        exp.append({"exp_labels": full, "exp_annotations": ann(alertname, full, value)})
    return {"eval_time": eval_time, "alertname": alertname, "exp_alerts": exp}

def t(name, series, cases, interval="1m"):
    return {"name": name, "interval": interval,
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": cases}

G = 'job="gatehouse",instance="gh-a:8080"'
GL = {"job": "gatehouse", "instance": "gh-a:8080"}
tests = [
    t("gateway down: every target fails its scrape", [(f'up{{{G}}}', "0x10")],
      [case("GatehouseDown", "1m"), case("GatehouseDown", "5m", [{}])]),
    t("gateway down: no target at all", [('up{job="other"}', "1x10")],
      [case("GatehouseDown", "5m", [{}])]),
    t("one replica down, another up", [(f'up{{{G}}}', "0x10"), ('up{job="gatehouse",instance="gh-b:8080"}', "1x10")],
      [case("GatehouseDown", "8m"), case("GatehouseReplicaDown", "3m"), case("GatehouseReplicaDown", "8m", [GL])]),
    t("upstream error rate above 5% on one deployment only", [
        ('gatehouse_deployment_errors_total{provider="vllm",deployment="qwen",type="upstream_error"}', "0+6x30"),
        ('gatehouse_deployment_attempt_duration_seconds_count{provider="vllm",deployment="qwen"}', "0+60x30"),
        ('gatehouse_deployment_errors_total{provider="bedrock",deployment="claude",type="upstream_timeout"}', "0+1x30"),
        ('gatehouse_deployment_attempt_duration_seconds_count{provider="bedrock",deployment="claude"}', "0+100x30"),
        ('gatehouse_deployment_errors_total{provider="tiny",deployment="rare",type="upstream_error"}', "0+0.005x30"),
        ('gatehouse_deployment_attempt_duration_seconds_count{provider="tiny",deployment="rare"}', "0+0.01x30")],
      [case("GatehouseUpstreamErrorRate", "4m"), case("GatehouseUpstreamErrorRate", "20m", [{"provider": "vllm", "deployment": "qwen"}], "10%")]),
    t("p99 latency above 30 s", [
        ('gatehouse_request_duration_seconds_bucket{model="chat",le="30.0"}', "0+0x30"),
        ('gatehouse_request_duration_seconds_bucket{model="chat",le="60.0"}', "0+10x30"),
        ('gatehouse_request_duration_seconds_bucket{model="chat",le="+Inf"}', "0+10x30"),
        ('gatehouse_request_duration_seconds_bucket{model="fast",le="1.0"}', "0+10x30"),
        ('gatehouse_request_duration_seconds_bucket{model="fast",le="+Inf"}', "0+10x30")],
      [case("GatehouseLatencyP99High", "10m"), case("GatehouseLatencyP99High", "20m", [{"model": "chat"}], "59.7s")]),
    t("token usage over 5M per hour for one group", [
        ('gatehouse_tokens_input_total{group="dev",model="chat"}', "0+80000x80"),
        ('gatehouse_tokens_output_total{group="dev",model="chat"}', "0+20000x80"),
        ('gatehouse_tokens_input_total{group="ops",model="chat"}', "0+1000x80"),
        ('gatehouse_tokens_output_total{group="ops",model="chat"}', "0+1000x80")],
      [case("GatehouseTokenUsageHigh", "30m"), case("GatehouseTokenUsageHigh", "75m", [{"group": "dev"}], "6M")]),
    t("rate-limit hits per consumer (upstream 429s are not the consumer's limits)", [
        ('gatehouse_limit_rejections_total{group="tight",consumer="carol",reason="rate_limit_exceeded"}', "0+20x30"),
        ('gatehouse_limit_rejections_total{group="dev",consumer="alice",reason="upstream_rate_limited"}', "0+100x30"),
        ('gatehouse_limit_rejections_total{group="dev",consumer="bob",reason="budget_exceeded"}', "0+2x30")],
      [case("GatehouseRateLimitHits", "3m"), case("GatehouseRateLimitHits", "20m", [{"group": "tight", "consumer": "carol"}], "20")]),
    t("ledger backlog growing, not merely high", [
        (f'gatehouse_ledger_backlog{{{G}}}', "0+100x60"),
        ('gatehouse_ledger_backlog{job="gatehouse-b",instance="gh-b:8080"}', "5000x60")],
      [case("GatehouseLedgerBacklogGrowing", "15m"),
       case("GatehouseLedgerBacklogGrowing", "40m", [{"job": "gatehouse"}], "4000")]),
    t("journal unwritable", [(f'gatehouse_journal_writable{{{G}}}', "1 1 0x10")],
      [case("GatehouseJournalUnwritable", "2m"), case("GatehouseJournalUnwritable", "5m", [GL])]),
    t("deployment ejected for long; a short ejection is quiet", [
        (f'gatehouse_upstream_ejected{{{G},provider="vllm",deployment="qwen"}}', "1x30"),
        (f'gatehouse_upstream_ejected{{{G},provider="vllm",deployment="llama"}}', "1x5 0x25")],
      [case("GatehouseDeploymentEjected", "10m"),
       case("GatehouseDeploymentEjected", "20m", [{**GL, "provider": "vllm", "deployment": "qwen"}])]),
    t("ledger store and limits store down", [
        (f'gatehouse_ledger_store_up{{{G}}}', "1 0x10"), (f'gatehouse_limits_store_up{{{G}}}', "1 0x10"),
        ('pg_up{job="postgres",instance="pg:9187"}', "0x10"), ('redis_up{job="redis",instance="redis:9121"}', "0x10")],
      [case("GatehouseLedgerStoreDown", "3m"), case("GatehouseLedgerStoreDown", "8m", [GL]),
       case("GatehouseLimitsStoreDown", "1m"), case("GatehouseLimitsStoreDown", "5m", [GL]),
       case("PostgresDown", "5m", [{"job": "postgres", "instance": "pg:9187"}]),
       case("RedisDown", "5m", [{"job": "redis", "instance": "redis:9121"}])]),
    # exported by two replicas at once: one alert per suite and model; a model with no history yet
    # is its own median
    t("eval pass ratio 10 points below its 7-day median; a 2-point dip and a new model are quiet", [
        (f'gatehouse_eval_model_pass_ratio{{{G},suite="coding",model="qwen"}}', "0.9x3000 0.8x40"),
        ('gatehouse_eval_model_pass_ratio{job="gatehouse",instance="gh-b:8080",suite="coding",model="qwen"}',
         "0.9x3000 0.8x40"),
        (f'gatehouse_eval_model_pass_ratio{{{G},suite="coding",model="llama"}}', "0.9x3000 0.88x40"),
        (f'gatehouse_eval_model_pass_ratio{{{G},suite="coding",model="new"}}', "_x2990 0.5x50")],
      [case("GatehouseEvalPassRateDropped", "3005m"),
       case("GatehouseEvalPassRateDropped", "3030m", [{"suite": "coding", "model": "qwen"}], "80%")]),
    t("vLLM queue and KV cache", [
        ('vllm:num_requests_waiting{model_name="qwen",instance="v1"}', "12x20"),
        ('vllm:num_requests_waiting{model_name="qwen",instance="v2"}', "3x20"),
        ('vllm:gpu_cache_usage_perc{model_name="qwen",instance="v1"}', "0.97x20"),
        ('vllm:num_requests_waiting{model_name="llama",instance="v3"}', "4x20")],
      [case("VllmQueueBuilding", "5m"), case("VllmQueueBuilding", "15m", [{"model_name": "qwen"}]),
       case("VllmKvCacheFull", "15m", [{"model_name": "qwen"}])]),
]
# SLO burn rates: (fast fires, slow fires) for a share of bad requests
def slo(name, alert, series_fn, share_fast, share_slow, share_ok):
    for share, fast, slow in ((share_fast, True, True), (share_slow, False, True), (share_ok, False, False)):
        pct = f"{share:.4g}%".replace(".0%", "%")
        cases = [case(f"GatehouseSlo{alert}BurnFast", "90m", [{"slo": name}] if fast else [], pct),
                 case(f"GatehouseSlo{alert}BurnSlow", "90m", [{"slo": name}] if slow else [], pct)]
        tests.append(t(f"SLO {name}: {share}% bad", series_fn(share), cases, interval="1m"))
def ok_bad(status):
    return lambda share: [('gatehouse_requests_total{model="chat",group="dev",status="200"}', f"0+{100 - share}x120"),
                          (f'gatehouse_requests_total{{model="chat",group="dev",status="{status}"}}', f"0+{share}x120")]
slo("errors", "Errors", ok_bad("502"), 10, 2, 0.3)
slo("saturation", "Saturation", ok_bad("503"), 20, 4, 0.5)
slo("ttft", "Ttft", lambda share: [
    ('gatehouse_time_to_first_token_seconds_bucket{model="chat",le="2.0"}', f"0+{100 - share}x120"),
    ('gatehouse_time_to_first_token_seconds_count{model="chat"}', "0+100x120")], 80, 20, 3)
tests.append({"name": "SLO ratios are 0, not absent, when nothing failed", "interval": "1m",
              "input_series": [{"series": 'gatehouse_requests_total{model="chat",group="dev",status="200"}',
                                "values": "0+10x30"}],
              "promql_expr_test": [{"expr": f"gatehouse:slo_{n}:ratio_rate5m", "eval_time": "20m",
                                    "exp_samples": [{"labels": f"gatehouse:slo_{n}:ratio_rate5m", "value": 0}]} for n in ("errors", "saturation")]})
doc = {"rule_files": ["../../deploy/prometheus/gatehouse-rules.yaml"], "evaluation_interval": "1m", "tests": tests}
hdr = ("# promtool unit tests of deploy/prometheus/gatehouse-rules.yaml: every alert fires where it\n"
       "# should (labels and rendered annotations checked) and stays quiet where it should not.\n"
       "# Run: promtool test rules tests/observability/rules_test.yaml (tests/observability/test_rules.py does).\n")
open(HERE / "rules_test.yaml", "w").write(hdr + yaml.safe_dump(doc, sort_keys=False, width=120))
