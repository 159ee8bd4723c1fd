"""The last eval run per suite, kept in the gateway's store and exported on its /metrics.

`gatehouse eval --record` writes one small JSON document per suite into the `settings` table
(name `eval:<hash of the suite name>`). Every replica's /metrics reads them back at most once a
minute, on a scrape, so the pass rates appear whichever replica Prometheus scrapes.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from gatehouse.config import Config
from gatehouse.evals.exported import PREFIX
from gatehouse.evals.report import by_category, by_model
from gatehouse.evals.runner import Run
from gatehouse.store.migrate import upgrade
from gatehouse.store.schema import settings
from gatehouse.store.sql import SqlStore


def summary(name: str, run: Run) -> dict[str, Any]:
    return {
        "suite": name, "started_at": run.started_at, "duration_s": run.duration_s,
        "models": {m: {"ratio": r.ratio, **(r.counts or {})} for m, r in by_model(run.results).items()},
        "categories": [[m, c, r.ratio] for (m, c), r in by_category(run.results).items()],
    }


async def save_summary(store: SqlStore, doc: dict[str, Any]) -> None:
    name = PREFIX + hashlib.sha256(doc["suite"].encode()).hexdigest()[:32]
    value = json.dumps(doc)
    async with store.engine.begin() as conn:
        done = await conn.execute(settings.update().where(settings.c.name == name).values(value=value))
        if done.rowcount == 0:
            await conn.execute(settings.insert().values(name=name, value=value))


async def record_run(cfg: Config, name: str, run: Run) -> None:
    from gatehouse.runtime import data_dir_from_env, store_url

    store = SqlStore(store_url(cfg, data_dir_from_env()))
    try:
        await upgrade(store)
        await save_summary(store, summary(name, run))
    finally:
        await store.close()
