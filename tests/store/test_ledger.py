"""The ledger table on SQLite and Postgres: idempotent batch inserts and the usage report."""
from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from gatehouse.metering.record import ROW_COLUMNS, LedgerRecord, row_tuple
from gatehouse.store.ledger import insert_records, insert_tuples, usage_report
from gatehouse.store.migrate import upgrade
from gatehouse.store.sql import SqlStore

DAY1 = datetime(2024, 6, 1, 23, 30, tzinfo=UTC).timestamp()
DAY2 = datetime(2024, 6, 2, 0, 30, tzinfo=UTC).timestamp()


def record(tag: str, consumer: str, model: str, ts: float, **kw) -> LedgerRecord:
    return LedgerRecord(id=f"{tag}-{uuid.uuid4().hex}", request_id=kw.pop("request_id", uuid.uuid4().hex),
                        attempt=kw.pop("attempt", 1), ts=ts, consumer=consumer, model=model, surface="chat",
                        group="dev" if consumer != "carol" else None, deployment="d", provider="p",
                        status=kw.pop("status", 200), **kw)


async def exercise(store: SqlStore, tag: str) -> None:
    await upgrade(store)
    shared = uuid.uuid4().hex
    rows = [
        record(tag, "alice", "chat", DAY1, input_tokens=10, output_tokens=5, cost_usd=0.25),
        record(tag, "alice", "chat", DAY2, input_tokens=20, output_tokens=1, cost_usd=0.5, estimated=True),
        record(tag, "alice", "embed", DAY2, input_tokens=7, cost_usd=0.01, request_id=shared, status=502),
        record(tag, "alice", "embed", DAY2, input_tokens=7, cost_usd=0.01, request_id=shared, attempt=2),
        record(tag, "carol", "chat", DAY2, input_tokens=1, output_tokens=1, cost_usd=2.0, cached_tokens=1),
    ]
    batch = [r.row() for r in rows]
    await insert_records(store, batch)
    await insert_records(store, batch)  # a replayed batch changes nothing
    since, until = DAY1 - 1, DAY2 + 1

    by_consumer = {r.key: r for r in await usage_report(store, "consumer", since, until)}
    assert set(by_consumer) == {"alice", "carol"}
    alice = by_consumer["alice"]
    assert (alice.requests, alice.attempts, alice.input_tokens, alice.output_tokens) == (3, 4, 44, 6)
    assert alice.cost_usd == pytest.approx(0.77) and alice.estimated == 1
    assert [r.key for r in await usage_report(store, "consumer", since, until)] == ["carol", "alice"]  # by cost

    by_day = {r.key: r.attempts for r in await usage_report(store, "day", since, until, consumer="alice")}
    assert by_day == {"2024-06-01": 1, "2024-06-02": 3}
    by_group = {r.key: r.attempts for r in await usage_report(store, "group", since, until)}
    assert by_group == {"dev": 4, None: 1}
    only_embed = await usage_report(store, "model", since, until, model="embed")
    assert [(r.key, r.requests, r.attempts) for r in only_embed] == [("embed", 1, 2)]
    assert await usage_report(store, "model", DAY2 + 10, DAY2 + 20) == []
    errors = await usage_report(store, "model", since, until, status="error")
    assert [(r.key, r.attempts, r.errors) for r in errors] == [("embed", 1, 1)]
    ok = {r.key: r.attempts for r in await usage_report(store, "model", since, until, status="ok")}
    assert ok == {"chat": 3, "embed": 1}
    with pytest.raises(ValueError):
        await usage_report(store, "prompt", since)
    assert {r.key for r in await usage_report(store, "route", since, until)} == {None}

    # the Postgres ledger writer's path (tuples in ROW_COLUMNS order): why each attempt went where it did
    routed = [record(tag, "dave", "auto", DAY2, route="primary", data_class="pii", routed_to="coder", status=502),
              record(tag, "dave", "auto", DAY2, attempt=2, route="failover_5xx", data_class="pii", routed_to="coder")]
    await insert_tuples(store, ROW_COLUMNS, [row_tuple(r) for r in routed])
    by_route = {r.key: r.attempts for r in await usage_report(store, "route", since, until, consumer="dave")}
    assert by_route == {"primary": 1, "failover_5xx": 1}
    assert [(r.key, r.attempts) for r in await usage_report(store, "data_class", since, until, consumer="dave")] \
        == [("pii", 2)]
    assert [(r.key, r.attempts) for r in await usage_report(store, "routed_to", since, until, consumer="dave")] \
        == [("coder", 2)]


async def test_sqlite(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        await exercise(store, "s")
    finally:
        await store.close()


def test_postgres(postgres_server):
    # The session database is shared with other tests; their rows are from today, not 2024.
    async def go() -> None:
        store = SqlStore(postgres_server.url, pool_size=2)
        try:
            await exercise(store, "p")
        finally:
            await store.close()

    asyncio.run(go())
