"""The background task that moves ledger records from the journal into the store in batches.

It wakes when records are journaled, waits up to `flush_seconds` for a batch to fill, and
inserts up to `batch_size` rows per transaction. With a SQLite store, reading, decoding and
inserting a range all happen in one dedicated thread over a plain `sqlite3` connection
(store/ledger.SqliteLedgerSink), so the event loop only learns that a range is committed;
with Postgres the rows go to asyncpg's executemany on the loop. When the store fails it
backs off (0.5 s doubling to 15 s) and retries the same rows; records keep piling up in the
journal, not in memory, and drain when the store is back. On shutdown it drains what it can
within `shutdown_flush_seconds`; the rest stays journaled for the next start.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gatehouse.metering.journal import Journal, Segment, count_end_records, decode_end_records
from gatehouse.metering.record import ROW_COLUMNS, LedgerRecord, row_tuple
from gatehouse.store.ledger import SqliteLedgerSink, insert_tuples, sqlite_path
from gatehouse.store.sql import SqlStore, redact_url

log = logging.getLogger("gatehouse.ledger")

MAX_BACKOFF = 15.0
PROBE_SECONDS = 1.0


# SQLite batches run in a thread at the lowest CPU priority (SCHED_IDLE: any request work
# preempts it at once). With the gateway on one core, SQLite's few milliseconds per batch at
# normal priority waited out a whole scheduler slice in front of requests: that was the p99.
# When the store falls this many records behind (the CPU is saturated and the idle thread
# starves), batches go to a second thread at normal priority until it has caught up, so a
# busy gateway trades some latency for a bounded journal. (Two threads rather than one that
# changes class: an unprivileged thread cannot leave SCHED_IDLE.)
CATCH_UP_RECORDS = 50_000


def _lowest_priority() -> None:
    """Put the calling thread in SCHED_IDLE (Linux; elsewhere it keeps its priority)."""
    if hasattr(os, "SCHED_IDLE") and hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: the calling thread
        except OSError:
            pass


def _bad_line(err: Exception) -> bool:
    """A journal line SQLite could not take as a record (torn JSON, a missing field), as
    opposed to the store failing (locked, disk full), which the caller must see."""
    if isinstance(err, UnicodeDecodeError | sqlite3.IntegrityError):
        return True
    return "JSON" in str(err)


class LedgerWriter:
    def __init__(self, journal: Journal, store: SqlStore, batch_size: int = 500, flush_seconds: float = 0.25,
                 catch_up_records: int = CATCH_UP_RECORDS):
        self.journal = journal
        self.store = store
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.catch_up_records = catch_up_records
        self.committed = 0
        self.failing_since: float | None = None
        self._stopping = asyncio.Event()
        self._sync_stop = asyncio.Event()
        self._drain_lock = asyncio.Lock()  # one reader of the journal at a time
        self._task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        path = sqlite_path(store)
        self._sink = SqliteLedgerSink(path, ROW_COLUMNS) if path else None
        self._idle_thread = ThreadPoolExecutor(1, thread_name_prefix="gatehouse-ledger-idle",
                                               initializer=_lowest_priority) if path else None
        self._busy_thread = ThreadPoolExecutor(1, thread_name_prefix="gatehouse-ledger") if path else None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        if self.journal.fsync_seconds > 0:
            self._sync_task = asyncio.ensure_future(self.journal.sync_loop(self._sync_stop))

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            # while the disk refuses the journal, wake every second to probe it
            await self._wait(self.journal.has_data, PROBE_SECONDS if self.journal.failing_since is not None else None)
            self.journal.has_data.clear()
            await self._mind_journal()
            if self.journal.backlog < self.batch_size:
                await self._wait(self._stopping, self.flush_seconds)  # let a batch gather
            try:
                await self.drain()
            except Exception as e:
                self._failed(e)
                await self._wait(self._stopping, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                self.journal.has_data.set()
                continue
            backoff = 0.5

    async def _wait(self, event: asyncio.Event, timeout: float | None) -> None:
        """Wait for `event` (or stopping), at most `timeout` seconds."""
        waits = [asyncio.ensure_future(event.wait())]
        if event is not self._stopping:
            waits.append(asyncio.ensure_future(self._stopping.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _mind_journal(self) -> None:
        """Records held in memory go back into the journal once the disk takes them (and with
        none held, a probe write finds out whether it would)."""
        j = self.journal
        if j.failing_since is None and not j.overflow:
            return
        async with self._drain_lock:
            j.requeue_overflow()
            if j.failing_since is not None and not j.overflow and await asyncio.to_thread(j.probe_sync):
                j.recovered()

    async def drain(self) -> None:
        """Insert everything journaled so far; raises when the store fails."""
        async with self._drain_lock:
            await self._drain()

    async def _drain(self) -> None:
        j = self.journal
        while j.overflow:
            batch = j.overflow[: self.batch_size]
            await self._insert(batch)
            del j.overflow[: len(batch)]
        while (span := j.next_range()) is not None:
            seg, start, end = span
            if self._sink is not None:
                count, stop = await self._in_thread(self._drain_range, seg, start, end)
            else:
                records, stop = await j.read(seg, start, end)
                for i in range(0, len(records), self.batch_size):
                    await insert_tuples(self.store, ROW_COLUMNS, [row_tuple(r) for r in records[i:i + self.batch_size]])
                count = len(records)
            self.committed += count
            j.committed(seg, stop, count)
        if self.failing_since is not None:
            log.warning("ledger store is back after %.0f s; the journal backlog is drained",
                        time.monotonic() - self.failing_since)
            self.failing_since = None

    def _drain_range(self, seg: Segment, start: int, end: int) -> tuple[int, int]:
        """In the ledger thread: read and insert one journal range (SQLite), in one statement
        that parses the lines inside SQLite; line by line if a line does not parse."""
        lines, stop = self.journal.read_lines_sync(seg, start, end)
        assert self._sink is not None
        if not lines:
            return 0, stop
        if self._sink.json_ready():
            try:
                self._sink.insert_journal_lines(lines)
                return count_end_records(lines), stop
            except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
                if not _bad_line(e):
                    raise
        records = decode_end_records(lines, seg.path.name)
        for i in range(0, len(records), self.batch_size):
            self._sink.insert([row_tuple(r) for r in records[i:i + self.batch_size]])
        return len(records), stop

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run `fn` in the idle-priority ledger thread, or the normal one when far behind."""
        behind = self.journal.backlog > self.catch_up_records
        return asyncio.get_running_loop().run_in_executor(self._busy_thread if behind else self._idle_thread,
                                                          fn, *args)

    async def _insert(self, records: list[LedgerRecord]) -> None:
        rows = [row_tuple(r) for r in records]
        if self._sink is not None:
            await self._in_thread(self._sink.insert, rows)
        else:
            await insert_tuples(self.store, ROW_COLUMNS, rows)
        self.committed += len(records)

    def _failed(self, err: Exception) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.error("ledger store %s unavailable (%s); records stay in the journal and are retried",
                      redact_url(self.store.url), type(err).__name__)

    async def stop(self, timeout: float) -> None:
        """Drain into the store for at most `timeout` seconds, then stop and close the journal."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (TimeoutError, Exception):
                pass
        deadline = time.monotonic() + timeout
        while self.journal.backlog > 0 or self.journal.overflow:
            try:
                await asyncio.wait_for(self.drain(), max(0.1, deadline - time.monotonic()))
                break
            except Exception as e:
                self._failed(e)
                if time.monotonic() + 0.5 >= deadline:
                    log.warning("shutting down with %d ledger records still journaled; they are written "
                                "at the next start", self.journal.backlog)
                    break
                await asyncio.sleep(0.5)
        self._sync_stop.set()
        if self._sync_task is not None:
            await self._sync_task
        if self._sink is not None:
            await self._in_thread(self._sink.close)
            for t in (self._idle_thread, self._busy_thread):
                t.shutdown(wait=False)  # type: ignore[union-attr]
        self.journal.close()
