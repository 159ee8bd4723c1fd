"""The usage ledger table, its idempotent batch insert and the usage report query.

Inserts ignore rows whose id is already there, so replaying a journal after a crash, or a
batch retried after a lost commit acknowledgement, never counts a record twice.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import msgspec
import sqlalchemy as sa
from msgspec import Struct

from gatehouse.store.schema import usage_records
from gatehouse.store.sql import SqlStore

_COLUMNS = tuple(c.name for c in usage_records.columns)


def insert_sql(paramstyle: str, columns: tuple[str, ...] = _COLUMNS) -> str:
    """One plain INSERT ... ON CONFLICT (id) DO NOTHING for the driver's parameter style.

    The writer sends hundreds of rows at a time; handing tuples straight to the driver's
    executemany skips SQLAlchemy's per-row processing, which ran on the event loop and
    stalled requests for milliseconds at every flush.
    """
    n = len(columns)
    marks = ", ".join("?" * n) if paramstyle == "qmark" else ", ".join(f"${i}" for i in range(1, n + 1))
    return f"INSERT INTO usage_records ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING"


async def insert_records(store: SqlStore, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    await insert_tuples(store, _COLUMNS, [tuple(r[c] for c in _COLUMNS) for r in rows])


async def insert_tuples(store: SqlStore, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Insert rows given as tuples in `columns` order, in one transaction, through the engine."""
    if not rows:
        return
    sql = insert_sql(store.engine.dialect.paramstyle, columns)
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(sql, rows)


def json_insert_sql(columns: tuple[str, ...]) -> str:
    """INSERT ... SELECT over `json_each(?)`: the parameter is a JSON array of journal lines
    (LedgerRecord objects, defaults omitted); `begin` lines are skipped, a field left out
    takes the record's default."""
    from gatehouse.metering.record import LedgerRecord  # (metering imports this module)

    fields = {("group_name" if f.name == "group" else f.name): f for f in msgspec.structs.fields(LedgerRecord)}
    exprs = []
    for col in columns:
        f = fields[col]
        expr = f"json_extract(value, '$.{f.name}')"
        if f.default is not msgspec.NODEFAULT and f.default is not None:
            literal = str(int(f.default)) if isinstance(f.default, (bool, int)) else \
                "''" if f.default == "" else repr(f.default)
            expr = f"coalesce({expr}, {literal})"
        exprs.append(expr)
    return (f"INSERT INTO usage_records ({', '.join(columns)}) SELECT {', '.join(exprs)} FROM json_each(?) "
            "WHERE json_extract(value, '$.phase') IS NOT 'begin' ON CONFLICT (id) DO NOTHING")


class SqliteLedgerSink:
    """Blocking inserts into a SQLite ledger over its own `sqlite3` connection, for one
    dedicated thread (the ledger writer's).

    Why not the async engine: aiosqlite hands every call to its thread through a queue and a
    future, and SQLAlchemy's async layer adds a greenlet switch per call; at a few thousand
    records a second that machinery, not SQLite, was a third of the gateway's CPU, and its
    GIL hand-offs were the p99 of the request path. Here a batch is one executemany in one
    transaction, and SQLite releases the GIL while it works.
    """

    def __init__(self, path: str, columns: tuple[str, ...]):
        self.path = path
        self.sql = insert_sql("qmark", columns)
        self.json_sql = json_insert_sql(columns)
        self._conn: sqlite3.Connection | None = None
        self.takes_json = False  # SQLite has JSON1 (built in since 3.38): known once connected

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self.takes_json = conn.execute("SELECT count(*) FROM json_each('[1]')").fetchone()[0] == 1
            except sqlite3.OperationalError:  # an SQLite built without JSON1: rows one by one
                self.takes_json = False
            self._conn = conn
        return conn

    def json_ready(self) -> bool:
        """Connected, and this SQLite can parse JSON (JSON1)."""
        self._connection()
        return self.takes_json

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._transaction(lambda conn: conn.executemany(self.sql, rows))

    def insert_journal_lines(self, lines: bytes) -> None:
        """Insert the `end` records among raw journal lines in one statement.

        Why: decoding each line, building its tuple and binding 23 parameters per row held
        the GIL for most of a batch, and executemany released and re-took it per row; each
        re-take could keep the event loop waiting up to the switch interval (the c=1 p99).
        Here SQLite parses the JSON while the GIL is released for the whole statement.
        Raises sqlite3.DatabaseError for a line that is not a valid record (the caller then
        decodes line by line, skipping the bad one)."""
        text = "[" + lines.rstrip(b"\n").replace(b"\n", b",").decode() + "]"
        self._transaction(lambda conn: conn.execute(self.json_sql, (text,)))

    def _transaction(self, work: Callable[[sqlite3.Connection], object]) -> None:
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def sqlite_path(store: SqlStore) -> str | None:
    """The database file of a SQLite store (None for other databases)."""
    if store.engine.dialect.name != "sqlite":
        return None
    return store.url.split(":///", 1)[1]


# ---- reports -----------------------------------------------------------------------------

GROUPINGS = ("consumer", "group", "model", "deployment", "provider", "key", "day", "route", "data_class",
             "routed_to")


class UsageRow(Struct):
    key: str | None
    requests: int  # distinct gateway request ids (never the client's x-request-id)
    attempts: int  # ledger records (upstream attempts)
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    errors: int  # attempts with status >= 400
    estimated: int  # attempts whose tokens are estimated


def _grouping(by: str, dialect: str) -> sa.ColumnElement[Any]:
    t = usage_records.c
    if by == "day":
        if dialect == "postgresql":
            return sa.func.to_char(sa.func.to_timestamp(t.ts).op("AT TIME ZONE")("UTC"), "YYYY-MM-DD")
        return sa.func.date(t.ts, "unixepoch")
    return {"consumer": t.consumer, "group": t.group_name, "model": t.model, "deployment": t.deployment,
            "provider": t.provider, "key": t.key_id, "route": t.route, "data_class": t.data_class,
            "routed_to": t.routed_to}[by]


async def usage_report(store: SqlStore, by: str, since: float, until: float | None = None, *,
                       consumer: str | None = None, group: str | None = None,
                       model: str | None = None, status: str | None = None) -> list[UsageRow]:
    """Totals grouped by `by` for records in [since, until), most expensive first.
    `status`: "ok" (below 400) or "error" (400 and above) keeps only those records."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
    t = usage_records.c
    key = _grouping(by, store.engine.dialect.name).label("key")
    q = sa.select(
        key,
        sa.func.count(sa.distinct(t.request_id)),
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(t.input_tokens), 0),
        sa.func.coalesce(sa.func.sum(t.output_tokens), 0),
        sa.func.coalesce(sa.func.sum(t.cached_tokens), 0),
        sa.func.coalesce(sa.func.sum(t.cost_usd), 0.0),
        sa.func.sum(sa.case((t.status >= 400, 1), else_=0)),
        sa.func.sum(sa.case((t.estimated, 1), else_=0)),
    ).where(t.ts >= since)
    if until is not None:
        q = q.where(t.ts < until)
    if consumer is not None:
        q = q.where(t.consumer == consumer)
    if group is not None:
        q = q.where(t.group_name == group)
    if model is not None:
        q = q.where(t.model == model)
    if status is not None:
        q = q.where(t.status >= 400 if status == "error" else t.status < 400)
    q = q.group_by(key).order_by(sa.desc(sa.func.coalesce(sa.func.sum(t.cost_usd), 0.0)), key)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(q)).all()
    return [UsageRow(None if r[0] is None else str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]),
                     int(r[5]), round(float(r[6]), 9), int(r[7] or 0), int(r[8] or 0)) for r in rows]
