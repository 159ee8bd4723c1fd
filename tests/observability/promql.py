"""What the rule and dashboard tests need to know about PromQL: the metric names an
expression reads, and which of them the gateway exports."""
from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics_core import Metric

from gatehouse.observability.metrics import Metrics
from gatehouse.store.limiter_shared import LimitStats

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "gatehouse-rules.yaml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RUNBOOK = ROOT / "docs" / "runbooks" / "alerts.md"

# Series other exporters provide (Prometheus itself, postgres_exporter, redis_exporter, vLLM).
EXTERNAL = {"up", "pg_up", "redis_up"}
EXTERNAL_PREFIXES = ("vllm:",)
# Metrics the upstream-reliability change (branch rel-upstream: journal health, breaker
# ejections, ledger store) adds to observability/metrics.py. Until it is merged they are
# allowed to be missing; once metrics.py defines them they must be exported like the rest.
PENDING = {"gatehouse_journal_writable", "gatehouse_upstream_ejected", "gatehouse_ledger_store_up",
           "gatehouse_upstream_connections_in_use", "gatehouse_upstream_pool_waiting",
           "gatehouse_upstream_pool_wait_seconds_bucket"}

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "inf", "nan", "le"}
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names read by a PromQL expression (recording-rule names included)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\{[^}]*\}", " ", e)  # matchers
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\w+", " ", e)  # Grafana variables ($__rate_interval, $model)
    names = set()
    for m in _NAME.finditer(e):
        rest = e[m.end():].lstrip()
        word = m.group()
        if rest.startswith("(") or word.lower() in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]?", word):
            continue
        if m.start() > 0 and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue  # the exponent or unit of a number (1e-9, 5m)
        names.add(word)
    return names


def exported_names() -> set[str]:
    """Every sample name the gateway's registry can export (with consumer_label on)."""
    m = Metrics(["m"], ["g"], ["p"], lambda: 0.0, consumer_label=True)
    m.track_limits(LimitStats())
    names: set[str] = set()
    family: Metric
    for family in m.registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"],
                    "summary": ["_count", "_sum", ""]}.get(family.type, [""])
        names.update(family.name + s for s in suffixes)
    # metrics registered by track_*() calls that need the runtime's objects (journal, pools, breakers)
    src = (ROOT / "src" / "gatehouse" / "observability" / "metrics.py").read_text()
    for kind, name in re.findall(r'\b(Counter|Gauge|Histogram|_CounterOf)\(\s*"(gatehouse_\w+)"', src):
        suffixes = {"Counter": ["_total"], "_CounterOf": ["_total"], "Histogram": ["_bucket", "_count", "_sum"]}
        names.update(name + s for s in suffixes.get(kind, [""]))
    return names


def defined_in_source(name: str) -> bool:
    src = (ROOT / "src" / "gatehouse" / "observability" / "metrics.py").read_text()
    family = re.sub(r"_(total|bucket|count|sum)$", "", name)
    return f'"{family}"' in src


def unknown_names(names: set[str], recorded: set[str]) -> set[str]:
    """The names that neither the gateway nor a known exporter nor a recording rule provides."""
    exported = exported_names()
    missing = set()
    for n in names:
        if n in exported or n in recorded or n in EXTERNAL or n.startswith(EXTERNAL_PREFIXES):
            continue
        if n in PENDING and not defined_in_source(n):
            continue
        missing.add(n)
    return missing
