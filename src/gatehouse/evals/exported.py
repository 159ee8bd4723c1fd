"""The recorded eval runs on the gateway's /metrics (see evals/record.py for the writing side).

Kept apart from the eval runner so the gateway imports nothing of it (jsonschema, aiohttp
sessions, rich) to export a few gauges.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gatehouse.store.schema import settings
from gatehouse.store.sql import SqlStore

PREFIX = "eval:"
REFRESH_SECONDS = 60.0
READ_TIMEOUT_SECONDS = 2.0

log = logging.getLogger("gatehouse.evals")


class EvalResults(Collector):
    """Exports the recorded runs; `refresh` reads them from the store when they are stale."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.read_at = 0.0

    async def refresh(self, store: SqlStore) -> None:
        now = time.monotonic()
        if self.read_at and now - self.read_at < REFRESH_SECONDS:
            return
        self.read_at = now
        try:  # a store outage keeps the last values: /metrics must answer whatever the store does
            async with asyncio.timeout(READ_TIMEOUT_SECONDS), store.engine.connect() as conn:
                rows = (await conn.execute(sa.select(settings.c.value)
                                           .where(settings.c.name.like(PREFIX + "%")))).all()
        except Exception as e:
            log.warning("could not read the recorded eval runs: %s", type(e).__name__)
            return
        docs = []
        for (value,) in rows:
            try:
                docs.append(json.loads(value))
            except ValueError:
                continue
        self.docs = docs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ratio = GaugeMetricFamily("gatehouse_eval_pass_ratio", "Weighted pass ratio of the last recorded eval run, "
                                  "per model and category", labels=["suite", "model", "category"])
        model_ratio = GaugeMetricFamily("gatehouse_eval_model_pass_ratio", "Weighted pass ratio of the last recorded "
                                        "eval run, per model", labels=["suite", "model"])
        cases = GaugeMetricFamily("gatehouse_eval_cases", "Cases of the last recorded eval run by status",
                                  labels=["suite", "model", "status"])
        duration = GaugeMetricFamily("gatehouse_eval_run_duration_seconds", "Duration of the last recorded eval run",
                                     labels=["suite"])
        started = GaugeMetricFamily("gatehouse_eval_run_timestamp_seconds", "When the last recorded eval run "
                                    "started (Unix time)", labels=["suite"])
        for doc in self.docs:
            suite = str(doc.get("suite", ""))
            duration.add_metric([suite], float(doc.get("duration_s", 0.0)))
            started.add_metric([suite], float(doc.get("started_at", 0.0)))
            for model, cat, value in doc.get("categories", ()):
                ratio.add_metric([suite, str(model), str(cat)], float(value))
            for model, m in doc.get("models", {}).items():
                model_ratio.add_metric([suite, model], float(m.get("ratio", 0.0)))
                for status in ("passed", "failed", "error"):
                    cases.add_metric([suite, model, status], float(m.get(status, 0)))
        yield from (ratio, model_ratio, cases, duration, started)
