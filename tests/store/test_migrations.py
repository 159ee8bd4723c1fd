"""Alembic migrations: they build exactly the schema the code declares, on SQLite and on
Postgres; replicas migrating at once do not collide; a pre-migration database is adopted."""
from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gatehouse.store.migrate import current_revision, head_revision, upgrade
from gatehouse.store.schema import api_keys, metadata, settings
from gatehouse.store.sql import SqlStore


async def schema_drift(store: SqlStore) -> list:
    async with store.engine.connect() as conn:
        return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))


async def test_sqlite_migrations_build_the_declared_schema(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        assert await current_revision(store) is None
        assert await upgrade(store) == head_revision()
        assert await upgrade(store) == head_revision()  # idempotent
        assert await schema_drift(store) == []
    finally:
        await store.close()


async def test_a_database_from_before_migrations_is_adopted(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        async with store.engine.begin() as conn:  # what create_all used to make
            await conn.run_sync(lambda c: metadata.create_all(c, tables=[api_keys, settings]))
            await conn.execute(settings.insert().values(name="key_hmac_secret", value="kept"))
        assert await upgrade(store) == head_revision()
        async with store.engine.connect() as conn:
            assert (await conn.execute(sa.select(settings.c.value))).scalar_one() == "kept"
        assert await schema_drift(store) == []
    finally:
        await store.close()


@pytest.fixture
def fresh_postgres_db(postgres_server):
    name = f"gh_mig_{uuid.uuid4().hex[:8]}"
    admin_url = postgres_server.url

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name}"))
    yield admin_url.rsplit("/", 1)[0] + "/" + name
    asyncio.run(run(f"DROP DATABASE {name}"))


def test_postgres_replicas_migrating_at_once_agree(fresh_postgres_db):
    async def go() -> None:
        stores = [SqlStore(fresh_postgres_db, pool_size=2) for _ in range(3)]
        try:
            revisions = await asyncio.gather(*(upgrade(s) for s in stores))
            assert revisions == [head_revision()] * 3
            assert await schema_drift(stores[0]) == []
        finally:
            for s in stores:
                await s.close()

    asyncio.run(go())


def test_head_read_from_the_scripts_is_alembics_head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from gatehouse.store.migrate import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()


OLD_ROW = {"id": "r1", "request_id": "client-chosen-id", "attempt": 1, "ts": 1.0, "consumer": "alice",
           "group_name": None, "key_id": None, "model": "m", "deployment": "d", "provider": "p", "surface": "chat",
           "status": 200, "error_type": None, "input_tokens": 1, "output_tokens": 2, "cached_tokens": 0,
           "cost_usd": 0.0, "priced": True, "latency_ms": 1.0, "ttft_ms": None, "streamed": False,
           "cache_hit": False, "estimated": False}


async def upgrade_from_0003_with_a_ledger_row(url: str) -> None:
    """A ledger from before client ids had a column keeps its rows; new rows fill both ids."""
    from alembic import command

    from gatehouse.store.migrate import _alembic_config
    from gatehouse.store.schema import usage_records

    store = SqlStore(url, pool_size=2)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), "0003"))
            await conn.execute(sa.text(f"INSERT INTO usage_records ({', '.join(OLD_ROW)}) VALUES "
                                       f"({', '.join(':' + k for k in OLD_ROW)})"), OLD_ROW)
        assert await current_revision(store) == "0003"
        assert await upgrade(store) == head_revision()
        assert await schema_drift(store) == []
        async with store.engine.begin() as conn:
            old = (await conn.execute(sa.select(usage_records).where(usage_records.c.id == "r1"))).one()
            assert old.request_id == "client-chosen-id" and old.client_request_id is None and old.input_tokens == 1
            await conn.execute(usage_records.insert().values(
                {**OLD_ROW, "id": "r2", "request_id": "gateway-id", "client_request_id": "client-chosen-id"}))
            both = (await conn.execute(sa.select(sa.func.count()).select_from(usage_records)
                                       .where(usage_records.c.client_request_id == "client-chosen-id"))).scalar()
            assert both == 1
    finally:
        await store.close()


async def test_sqlite_upgrade_keeps_ledger_rows(tmp_path):
    await upgrade_from_0003_with_a_ledger_row(f"sqlite:///{tmp_path / 'old-ledger.db'}")


def test_postgres_upgrade_keeps_ledger_rows(fresh_postgres_db):
    asyncio.run(upgrade_from_0003_with_a_ledger_row(fresh_postgres_db))
