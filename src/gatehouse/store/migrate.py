"""Apply the Alembic migrations shipped in gatehouse/store/migrations, programmatically.

`gatehouse migrate` calls `upgrade`, and so does start-up when `store.migrate_on_start`
is true. On Postgres an advisory lock serialises replicas that start at the same moment.
A database made by the pre-migration `create_all` (api_keys and settings, no
alembic_version) is stamped at revision 0001 first, then upgraded.
"""
from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from gatehouse.store.sql import SqlStore

# Alembic announces its context at INFO on every start; only real upgrades are worth a line.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_ID = 0x6761746568  # "gateh": any constant shared by every replica
_PRE_ALEMBIC_REVISION = "0001"


class SchemaOutdated(RuntimeError):
    pass


def _alembic_config(connection=None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection) -> str:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_ID})")
    inspector = sa.inspect(connection)
    cfg = _alembic_config(connection)
    if not inspector.has_table("alembic_version") and inspector.has_table("api_keys"):
        command.stamp(cfg, _PRE_ALEMBIC_REVISION)
    command.upgrade(cfg, "head")
    return _current(connection) or ""


async def upgrade(store: SqlStore) -> str:
    """Bring the schema to the newest revision; returns it."""
    async with store.engine.begin() as conn:
        return await conn.run_sync(_upgrade)


async def current_revision(store: SqlStore) -> str | None:
    async with store.engine.connect() as conn:
        return await conn.run_sync(_current)


async def require_current(store: SqlStore) -> None:
    """For `store.migrate_on_start: false`: refuse to start on an outdated schema."""
    have, want = await current_revision(store), head_revision()
    if have != want:
        raise SchemaOutdated(f"the database schema is at revision {have or 'none'}, this gatehouse needs "
                             f"{want}: run `gatehouse migrate`")
