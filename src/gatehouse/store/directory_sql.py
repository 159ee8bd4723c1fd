"""Groups and consumers created at run time (admin API, CLI), next to api_keys in the SQL store.

Each row keeps its settings as the same JSON the config file's struct has (GroupConfig,
ConsumerConfig), so one validator serves both. Every change bumps one version counter in
the same transaction; replicas poll it (a one-row read every half second) and reload the
directory when it moves - that is how a change made on one replica reaches the others.
"""
from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatehouse.config import ConsumerConfig, GroupConfig
from gatehouse.store.schema import access_consumers, access_groups, access_version, api_keys
from gatehouse.store.sql import SqlStore

_encode = msgspec.json.Encoder().encode


SpecT = TypeVar("SpecT", GroupConfig, ConsumerConfig)


class Row(msgspec.Struct, Generic[SpecT], frozen=True):
    name: str
    spec: SpecT
    created_at: float
    updated_at: float


class NameTaken(Exception):
    pass


class DirectoryStore:
    def __init__(self, store: SqlStore):
        self.engine = store.engine

    async def version(self) -> int:
        async with self.engine.connect() as conn:
            v = (await conn.execute(sa.select(access_version.c.version).where(access_version.c.id == 1))).scalar()
        return int(v or 0)

    async def _bump(self, conn: AsyncConnection) -> None:
        done = await conn.execute(access_version.update().where(access_version.c.id == 1)
                                  .values(version=access_version.c.version + 1))
        if done.rowcount == 0:
            await conn.execute(access_version.insert().values(id=1, version=1))

    async def bump(self) -> None:
        """Tell every replica to reload (after key changes made outside this module)."""
        async with self.engine.begin() as conn:
            await self._bump(conn)

    # ---- groups --------------------------------------------------------------------------------

    async def groups(self) -> dict[str, Row[GroupConfig]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(access_groups).order_by(access_groups.c.name))).all()
        return {r.name: Row(r.name, msgspec.json.decode(r.spec, type=GroupConfig), r.created_at, r.updated_at)
                for r in rows}

    async def put_group(self, name: str, spec: GroupConfig, *, create: bool) -> Row[GroupConfig] | None:
        return await self._put(access_groups, name, spec, create, {})

    async def delete_group(self, name: str) -> bool | None:
        """True when deleted, False when absent, None when consumers are still in it."""
        async with self.engine.begin() as conn:
            members = (await conn.execute(sa.select(sa.func.count()).select_from(access_consumers)
                                          .where(access_consumers.c.group_name == name))).scalar()
            if members:
                return None
            done = await conn.execute(access_groups.delete().where(access_groups.c.name == name))
            if done.rowcount:
                await self._bump(conn)
            return bool(done.rowcount)

    # ---- consumers -----------------------------------------------------------------------------

    async def consumers(self) -> dict[str, Row[ConsumerConfig]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(access_consumers).order_by(access_consumers.c.name))).all()
        return {r.name: Row(r.name, _consumer(r.spec, r.group_name), r.created_at, r.updated_at) for r in rows}

    async def consumer_exists(self, name: str) -> bool:
        async with self.engine.connect() as conn:
            found = (await conn.execute(sa.select(access_consumers.c.name)
                                        .where(access_consumers.c.name == name))).first()
        return found is not None

    async def consumers_in(self, group: str) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(access_consumers)
                                           .where(access_consumers.c.group_name == group))).scalar() or 0)

    async def put_consumer(self, name: str, spec: ConsumerConfig, *, create: bool) -> Row[ConsumerConfig] | None:
        assert spec.group is not None
        return await self._put(access_consumers, name, spec, create, {"group_name": spec.group})

    async def delete_consumer(self, name: str) -> bool:
        """Delete a consumer and revoke every key it has, in one transaction."""
        now = time.time()
        async with self.engine.begin() as conn:
            done = await conn.execute(access_consumers.delete().where(access_consumers.c.name == name))
            if not done.rowcount:
                return False
            await conn.execute(api_keys.update().where(api_keys.c.consumer == name)
                               .where(api_keys.c.revoked_at.is_(None)).values(revoked_at=now))
            await self._bump(conn)
        return True

    # ---- shared --------------------------------------------------------------------------------

    async def _put(self, table: sa.Table, name: str, spec: SpecT, create: bool,
                   extra: dict[str, Any]) -> Row[SpecT] | None:
        """Insert (create) or replace (update) a row. Raises NameTaken on a duplicate create;
        returns None when updating a row that does not exist."""
        now = time.time()
        body = _encode(spec).decode()
        async with self.engine.begin() as conn:
            if create:
                try:
                    await conn.execute(table.insert().values(name=name, spec=body, created_at=now,
                                                             updated_at=now, **extra))
                except sa.exc.IntegrityError:
                    raise NameTaken(name) from None
                created = now
            else:
                found = (await conn.execute(sa.select(table.c.created_at).where(table.c.name == name))).scalar()
                if found is None:
                    return None
                created = float(found)
                await conn.execute(table.update().where(table.c.name == name)
                                   .values(spec=body, updated_at=now, **extra))
            await self._bump(conn)
        return Row(name, spec, created, now)


def _consumer(spec: str, group: str) -> ConsumerConfig:
    c = msgspec.json.decode(spec, type=ConsumerConfig)
    return msgspec.structs.replace(c, group=group, keys=[])
