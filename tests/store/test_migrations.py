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

import gatehouse.store.directory_sql  # noqa: F401 - registers the access_* tables on the shared metadata
import gatehouse.store.ledger  # noqa: F401 - registers usage_records on the shared metadata
from gatehouse.store.migrate import current_revision, head_revision, upgrade
from gatehouse.store.sql import SqlStore, api_keys, metadata, settings


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
