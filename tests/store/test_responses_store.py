"""The stored-responses store on real SQLite and Postgres: reads wait for a write in flight,
rows belong to one consumer, expired rows are invisible and purged, a failed write is logged."""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from gatehouse.store import responses_sql
from gatehouse.store.migrate import upgrade
from gatehouse.store.responses_sql import ResponseStore, stored_response_items, stored_responses
from gatehouse.store.sql import SqlStore

RESPONSE = {"id": "resp_1", "object": "response", "output": [
    {"type": "message", "id": "msg_out", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}]}
INPUT = [{"type": "message", "id": "msg_in", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}]


async def exercise(url: str) -> None:
    store = SqlStore(url, pool_size=2)
    try:
        await upgrade(store)
        kept = ResponseStore(store, ttl_seconds=0.5)
        kept.save("alice", RESPONSE, INPUT)
        assert await kept.get("resp_1", "alice") == RESPONSE  # waits for the write in flight
        assert await kept.get("resp_1", "bob") is None
        assert await kept.conversation("resp_1", "alice") == [*INPUT, *RESPONSE["output"]]
        assert await kept.conversation("resp_1", "bob") is None
        assert set(await kept.items_by_id(["msg_out", "msg_in", "nope"], "alice")) == {"msg_out", "msg_in"}
        assert await kept.items_by_id(["msg_out"], "bob") == {}
        assert await kept.input_items("resp_1", "alice", after=None, limit=5, descending=True) == (INPUT, False)
        assert await kept.delete("resp_1", "bob") is False
        await asyncio.sleep(0.6)  # past the TTL: invisible at once, purged on the next pass
        assert await kept.get("resp_1", "alice") is None and await kept.items_by_id(["msg_in"], "alice") == {}
        assert await kept.purge() == 1
        async with store.engine.connect() as conn:
            for table in (stored_responses, stored_response_items):
                assert (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar() == 0
        kept.save("alice", {**RESPONSE, "id": "resp_2"}, INPUT)
        assert await kept.delete("resp_2", "alice") is True and await kept.get("resp_2", "alice") is None
    finally:
        await store.close()


async def test_sqlite(tmp_path: Any) -> None:
    await exercise(f"sqlite:///{tmp_path / 'r.db'}")


def test_postgres(postgres_server: Any) -> None:
    name = f"gh_resp_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_server.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        asyncio.run(exercise(postgres_server.url.rsplit("/", 1)[0] + "/" + name))
    finally:
        asyncio.run(admin(f"DROP DATABASE {name}"))


async def test_writes_purge_expired_rows_now_and_then(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        await upgrade(store)
        kept = ResponseStore(store, ttl_seconds=0.2)
        kept.save("alice", RESPONSE, INPUT)
        await kept.flush()
        await asyncio.sleep(0.3)
        monkeypatch.setattr(responses_sql, "PURGE_EVERY", 0.0)
        kept.save("alice", {**RESPONSE, "id": "resp_2"}, [])
        await kept.flush()
        async with store.engine.connect() as conn:
            ids = (await conn.execute(sa.select(stored_responses.c.id))).scalars().all()
        assert ids == ["resp_2"]
    finally:
        await store.close()


async def test_a_failed_write_is_logged_not_raised(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        await upgrade(store)
        kept = ResponseStore(store, ttl_seconds=60)
        kept.save("alice", RESPONSE, INPUT)
        await kept.flush()
        with caplog.at_level(logging.ERROR, logger="gatehouse.responses"):
            kept.save("alice", RESPONSE, INPUT)  # the same id again: the insert fails
            await kept.flush()
        assert "storing response resp_1 failed" in caplog.text
        assert "hello" not in caplog.text and "INSERT" not in caplog.text  # neither content nor SQL
        assert await kept.get("resp_1", "alice") == RESPONSE
    finally:
        await store.close()
