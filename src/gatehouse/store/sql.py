"""SQL store (SQLAlchemy Core, async): SQLite through aiosqlite, Postgres through asyncpg.

One schema for both (store/schema.py), brought up to date by `migrate.upgrade(store)`. The
engine's pool is bounded so a burst cannot exhaust Postgres.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gatehouse.store.protocols import KeyRecord
from gatehouse.store.schema import api_keys, settings

_KEY_COLUMNS = [c for c in api_keys.c]


def async_url(url: str) -> str:
    """Accept the URLs people write and pick the async driver for them."""
    if url.startswith("sqlite:///") or url.startswith("sqlite+aiosqlite:///"):
        return "sqlite+aiosqlite:///" + url.split(":///", 1)[1]
    for prefix in ("postgresql://", "postgres://", "postgresql+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    raise ValueError("store.url must start with sqlite:/// or postgresql://")


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<store url>"


class SqlStore:
    def __init__(self, url: str, *, pool_size: int = 10):
        self.url = async_url(url)
        kwargs: dict[str, Any] = {}
        if self.url.startswith("sqlite"):
            Path(self.url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.url.startswith("sqlite"):
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    # ---- keys ------------------------------------------------------------------------

    async def add_key(self, record: KeyRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(api_keys.insert().values(**_record_values(record)))

    async def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(*_KEY_COLUMNS).where(api_keys.c.key_hash == key_hash))
            ).first()
        return _row_to_key(row) if row else None

    async def key_by_id(self, key_id: str) -> KeyRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(*_KEY_COLUMNS).where(api_keys.c.id == key_id))).first()
        return _row_to_key(row) if row else None

    async def list_keys(self, consumer: str | None = None) -> list[KeyRecord]:
        q = sa.select(*_KEY_COLUMNS).order_by(api_keys.c.created_at)
        if consumer is not None:
            q = q.where(api_keys.c.consumer == consumer)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [_row_to_key(r) for r in rows]

    async def revoke_key(self, key_id: str, at: float) -> KeyRecord | None:
        return await self._update_key(key_id, revoked_at=at)

    async def set_key_expiry(self, key_id: str, at: float) -> KeyRecord | None:
        return await self._update_key(key_id, expires_at=at)

    async def _update_key(self, key_id: str, **values: Any) -> KeyRecord | None:
        async with self.engine.begin() as conn:
            await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(**values))
            row = (await conn.execute(sa.select(*_KEY_COLUMNS).where(api_keys.c.id == key_id))).first()
        return _row_to_key(row) if row else None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _record_values(r: KeyRecord) -> dict[str, Any]:
    return {c.name: getattr(r, c.name) for c in _KEY_COLUMNS}


def _row_to_key(row: sa.Row[Any]) -> KeyRecord:
    return KeyRecord(**row._mapping)


async def get_or_create_setting(store: SqlStore, name: str, make_value: Callable[[], str]) -> str:
    """Read a setting, creating it once if absent (safe when replicas race: first insert wins)."""
    async with store.engine.begin() as conn:
        row = (await conn.execute(sa.select(settings.c.value).where(settings.c.name == name))).first()
        if row:
            return str(row[0])
    try:
        async with store.engine.begin() as conn:
            await conn.execute(settings.insert().values(name=name, value=make_value()))
    except sa.exc.IntegrityError:
        pass
    async with store.engine.begin() as conn:
        return str((await conn.execute(sa.select(settings.c.value).where(settings.c.name == name))).scalar_one())
