"""Apply the Alembic migrations shipped in gatehouse/store/migrations, programmatically.

`gatehouse migrate` calls `upgrade`, and so does start-up when `store.migrate_on_start`
is true. On Postgres an advisory lock serialises replicas that start at the same moment.
A database made by the pre-migration `create_all` (api_keys and settings, no
alembic_version) is stamped at revision 0001 first, then upgraded.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

from gatehouse.store.sql import SqlStore

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_ID = 0x6761746568  # "gateh": any constant shared by every replica
_PRE_ALEMBIC_REVISION = "0001"


class SchemaOutdated(RuntimeError):
    pass


def _alembic_config(connection: sa.Connection | None = None) -> AlembicConfig:
    # Alembic (12 MB of modules) is imported only when a schema really has to change: a
    # gateway starting on a current schema compares two strings and goes on.
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


_REVISION = re.compile(r'^revision = "([^"]+)"$', re.M)
_DOWN = re.compile(r'^down_revision = (?:"([^"]+)"|None)$', re.M)


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest revision shipped, read from the scripts (the one no other revises)."""
    revisions, revised = set(), set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        text = script.read_text()
        rev, down = _REVISION.search(text), _DOWN.search(text)
        if rev:
            revisions.add(rev.group(1))
            if down and down.group(1):
                revised.add(down.group(1))
    heads = revisions - revised
    assert len(heads) == 1, f"migrations must form one line, found heads {sorted(heads)}"
    return heads.pop()


def _current(connection: sa.Connection) -> str | None:
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _upgrade(connection: sa.Connection) -> str:
    from alembic import command

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
    if await current_revision(store) == head_revision():
        return head_revision()
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
