"""The alert rules (deploy/prometheus/gatehouse-rules.yaml): valid for promtool, unit-tested
alert by alert (rules_test.yaml), reading only metrics that exist, each with a runbook."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability.promql import RULES, RUNBOOK, metric_names, unknown_names

HERE = Path(__file__).parent
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`; `make services` installs it)")


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def alerts() -> list[dict]:
    return [r for r in rules() if "alert" in r]


@needs_promtool
def test_promtool_check_rules():
    out = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


@needs_promtool
def test_promtool_unit_tests_pass():
    out = subprocess.run([PROMTOOL, "test", "rules", str(HERE / "rules_test.yaml")], capture_output=True, text=True,
                         timeout=120, cwd=HERE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_is_quiet():
    tests = yaml.safe_load((HERE / "rules_test.yaml").read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = {a["alert"] for a in alerts()}
    assert names - fires == set()
    # every alert besides the plain "exporter says down" ones has a case where it stays quiet
    assert names - quiet <= {"PostgresDown", "RedisDown", "VllmKvCacheFull"}


def test_required_alerts_are_present():
    names = {a["alert"] for a in alerts()}
    assert {"GatehouseTokenUsageHigh", "GatehouseRateLimitHits", "GatehouseUpstreamErrorRate",
            "GatehouseLatencyP99High", "GatehouseDown", "GatehouseLedgerBacklogGrowing", "GatehouseJournalUnwritable",
            "GatehouseDeploymentEjected", "GatehouseLedgerStoreDown", "GatehouseLimitsStoreDown", "PostgresDown",
            "RedisDown", "GatehouseEvalPassRateDropped"} <= names
    for slo in ("Errors", "Ttft", "Saturation"):
        assert {f"GatehouseSlo{slo}BurnFast", f"GatehouseSlo{slo}BurnSlow"} <= names
    upstream = next(a for a in alerts() if a["alert"] == "GatehouseUpstreamErrorRate")
    assert upstream["labels"]["severity"] == "critical" and "> 0.05" in upstream["expr"]


def test_rules_read_only_metrics_that_exist():
    recorded = {r["record"] for r in rules() if "record" in r}
    used = set().union(*(metric_names(r["expr"]) for r in rules()))
    assert "gatehouse_requests_total" in used and "gatehouse_limit_rejections_total" in used
    assert unknown_names(used, recorded) == set()


def test_metric_name_extraction_sees_what_it_must():
    names = metric_names('sum by (le) (rate(foo_bucket{le=~"2|2\\\\.0"}[5m])) / on (x) bar > 1e-9 '
                         'and vllm:num_requests_waiting offset 5m')
    assert names == {"foo_bucket", "bar", "vllm:num_requests_waiting"}
    assert unknown_names({"gatehouse_no_such_metric_total"}, set()) == {"gatehouse_no_such_metric_total"}


def test_every_alert_has_a_runbook_section():
    text = RUNBOOK.read_text()
    headings = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
                for h in re.findall(r"^## (.+)$", text, re.M)}
    for a in alerts():
        anchor = a["alert"].lower()
        assert anchor in headings, f"docs/runbooks/alerts.md has no section '## {a['alert']}'"
        assert a["annotations"]["runbook_url"] == f"docs/runbooks/alerts.md#{anchor}"
        assert a["labels"]["severity"] in ("critical", "warning")
        assert a["annotations"]["summary"] and a["annotations"]["description"]
