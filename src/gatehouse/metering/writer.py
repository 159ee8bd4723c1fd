"""The background task that moves ledger records from the journal into the store in batches.

It wakes when records are journaled, waits up to `flush_seconds` for a batch to fill, and
inserts up to `batch_size` rows per transaction. When the store fails it backs off (0.5 s
doubling to 15 s) and retries the same rows; records keep piling up in the journal, not in
memory, and drain when the store is back. On shutdown it drains what it can within
`shutdown_flush_seconds`; the rest stays journaled for the next start.
"""
from __future__ import annotations

import asyncio
import logging
import time

from gatehouse.metering.journal import Journal
from gatehouse.metering.record import LedgerRecord
from gatehouse.store.ledger import insert_records
from gatehouse.store.sql import SqlStore, redact_url

log = logging.getLogger("gatehouse.ledger")

MAX_BACKOFF = 15.0


class LedgerWriter:
    def __init__(self, journal: Journal, store: SqlStore, batch_size: int = 500, flush_seconds: float = 0.25):
        self.journal = journal
        self.store = store
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.committed = 0
        self.failing_since: float | None = None
        self._stopping = asyncio.Event()
        self._sync_stop = asyncio.Event()
        self._drain_lock = asyncio.Lock()  # one reader of the journal at a time
        self._task: asyncio.Task | None = None
        self._sync_task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        if self.journal.fsync_seconds > 0:
            self._sync_task = asyncio.ensure_future(self.journal.sync_loop(self._sync_stop))

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            await self._wait(self.journal.has_data, None)
            self.journal.has_data.clear()
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
            records, stop = await j.read(seg, start, end)
            for i in range(0, len(records), self.batch_size):
                await self._insert(records[i:i + self.batch_size])
            j.committed(seg, stop, len(records))
        if self.failing_since is not None:
            log.warning("ledger store is back after %.0f s; the journal backlog is drained",
                        time.monotonic() - self.failing_since)
            self.failing_since = None

    async def _insert(self, records: list[LedgerRecord]) -> None:
        await insert_records(self.store, [r.row() for r in records])
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
            except (asyncio.TimeoutError, Exception):
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
        self.journal.close()
