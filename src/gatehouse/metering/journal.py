"""The local append-only journal every ledger record passes through before the store.

Why: the store (SQLite or Postgres) is written in batches off the hot path, and may be down.
A record only in memory dies with the process; a record in the journal survives SIGKILL.

Layout: `<journal dir>/seg-<seq>.jsonl` segments of JSON lines and a `journal.lock` that one
process holds (flock) while it owns the directory. Each line is a LedgerRecord with a phase:
`begin` when an upstream attempt starts, `end` when it is over. The writer inserts `end`
lines into the store (idempotent on the record id) and deletes a segment once all its `end`
lines are committed and no attempt begun in it is still open.

Durability: each line is one `os.write` on an O_APPEND descriptor, so it is in the kernel's
page cache when the call returns and survives the death of the process (SIGKILL, OOM kill).
Surviving a machine crash needs fsync, done every `fsync_seconds` in a thread (0 = after
every line, on the event loop: safest, slowest). The write is one small syscall per line
(a few microseconds on a local disk); that is the price of losing nothing.

Replay at start: `end` lines of old segments are inserted like new ones (duplicates are
ignored by the store); a `begin` with no `end` in any segment means the process died during
that attempt, and an `interrupted` record is written for it (see record.interrupted).

When the disk refuses a write (full, read-only, I/O error), the policy (docs/operations.md):
records go to a bounded in-memory buffer (`overflow`, drained into the store like journaled
ones), `failing_since` is set (so /readyz answers 503 and the metrics show it) and the error is
logged; once the buffer holds `memory_limit` records, new metered requests are refused with
503 (metering.MeteringStep) rather than served unrecorded. The writer probes the disk while
it fails, moves buffered records back into the journal when it can write again, and then
readiness returns. A torn line left by a partial write is cut off, so the offsets the writer
reads by stay true.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from pathlib import Path

import msgspec

from gatehouse.metering.record import LedgerRecord, decode_record, encode_record, interrupted

log = logging.getLogger("gatehouse.journal")

MAX_SEGMENT_BYTES = 8 * 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024


class JournalLocked(RuntimeError):
    pass


class Segment:
    __slots__ = ("seq", "path", "fd", "size", "read_pos", "open_begins", "sealed")

    def __init__(self, seq: int, path: Path, size: int = 0, fd: int | None = None):
        self.seq = seq
        self.path = path
        self.fd = fd  # write descriptor, only while it is the active segment
        self.size = size  # bytes written (complete lines only)
        self.read_pos = 0  # bytes the writer has committed to the store
        self.open_begins = 0  # attempts begun here whose `end` is not yet journaled
        self.sealed = fd is None

    @property
    def done(self) -> bool:
        return self.sealed and self.read_pos >= self.size and self.open_begins == 0


def _segment_name(seq: int) -> str:
    return f"seg-{seq:012d}.jsonl"


def _read_range(path: Path, start: int, end: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start)


def _scan(path: Path) -> list[LedgerRecord]:
    out = []
    for line in path.read_bytes().split(b"\n"):
        if line:
            try:
                out.append(decode_record(line))
            except msgspec.DecodeError:
                log.warning("skipping a torn line in %s", path.name)
    return out


def decode_end_records(lines: bytes, source: str) -> list[LedgerRecord]:
    """The `end` records among journal lines; a line that does not decode is skipped."""
    records = []
    for line in lines.split(b"\n"):
        if not line:
            continue
        try:
            r = decode_record(line)
        except msgspec.DecodeError:
            log.warning("skipping a torn line in %s", source)
            continue
        if r.phase == "end":
            records.append(r)
    return records


def count_end_records(lines: bytes) -> int:
    """How many of these journal lines are `end` records (a `begin` line always carries its
    phase, as `"phase":"begin"`, which JSON escaping keeps out of string values)."""
    return lines.count(b"\n") - lines.count(b'"phase":"begin"')


class Journal:
    def __init__(self, directory: Path, fsync_seconds: float = 1.0, max_segment_bytes: int = MAX_SEGMENT_BYTES,
                 memory_limit: int = 10_000):
        self.dir = directory
        self.memory_limit = memory_limit  # records the buffer may hold before metered requests are refused
        self.fsync_seconds = fsync_seconds
        self.max_segment_bytes = max_segment_bytes
        self.segments: list[Segment] = []
        self.active: Segment | None = None
        self.backlog = 0  # `end` records journaled but not yet committed to the store
        self.overflow: list[LedgerRecord] = []  # records the disk refused: kept in memory
        self.has_data = asyncio.Event()
        self._lock_fd: int | None = None
        self._to_close: list[int] = []
        self._dirty = False
        self._next_seq = 1
        self._last_write_error = 0.0
        self.failing_since: float | None = None  # monotonic time of the first refused write of an outage
        self.write_errors = 0

    # ---- opening and replay --------------------------------------------------------------

    def open(self) -> int:
        """Lock the directory, adopt old segments, journal `interrupted` records for attempts
        a dead process left open, and start a new segment. Returns the records to replay;
        the caller sets `has_data` so the writer picks them up."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "journal.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLocked(f"another gatehouse process is using the journal in {self.dir}; "
                                "give each process its own GATEHOUSE_HOME or metering.journal_dir") from None
        self._lock_fd = fd
        old = sorted((int(p.name[4:-6]), p) for p in self.dir.glob("seg-*.jsonl"))
        ended: set[str] = set()
        begun: dict[str, LedgerRecord] = {}
        for seq, path in old:
            records = _scan(path)
            for r in records:
                if r.phase == "end":
                    ended.add(r.id)
                    self.backlog += 1
                else:
                    begun[r.id] = r
            self.segments.append(Segment(seq, path, path.stat().st_size))
            self._next_seq = seq + 1
        self._start_segment()
        lost = [interrupted(r) for rid, r in begun.items() if rid not in ended]
        for r in lost:  # (not through end(): this runs in a thread, away from the loop's Event)
            if self._write(encode_record(r) + b"\n"):
                self.backlog += 1
            else:
                self.overflow.append(r)
        if lost:
            log.warning("journal: %d attempts were interrupted by the previous process's death", len(lost))
        return self.backlog + len(self.overflow)

    def _start_segment(self) -> None:
        path = self.dir / _segment_name(self._next_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.active = Segment(self._next_seq, path, os.fstat(fd).st_size, fd)
        self._next_seq += 1
        self.segments.append(self.active)

    def _rotate(self) -> None:
        old = self.active
        assert old is not None and old.fd is not None
        try:
            self._start_segment()  # first: if the new segment cannot be made, the old one stays active
        except OSError as e:
            self._refused(e)
            return
        old.sealed = True
        if self.fsync_seconds > 0:
            self._to_close.append(old.fd)  # the sync loop fsyncs and closes it off the loop
        else:
            os.close(old.fd)
        old.fd = None

    @property
    def full(self) -> bool:
        """The disk refuses records and the memory buffer is full: take no more metered work."""
        return self.failing_since is not None and len(self.overflow) >= self.memory_limit

    # ---- the hot path: one write per line ----------------------------------------------------

    def begin(self, record: LedgerRecord) -> Segment | None:
        if self._write(encode_record(record) + b"\n"):
            seg = self.active
            seg.open_begins += 1  # type: ignore[union-attr]
            return seg
        return None

    def end(self, record: LedgerRecord, begun_in: Segment | None = None) -> None:
        if not self._write(encode_record(record) + b"\n"):
            self.overflow.append(record)
        else:
            self.backlog += 1
        if begun_in is not None:
            begun_in.open_begins -= 1
        self.has_data.set()

    def _write(self, line: bytes) -> bool:
        seg = self.active
        if seg is None or seg.fd is None:
            return False
        try:
            view = memoryview(line)
            while view:
                n = os.write(seg.fd, view)
                view = view[n:]
            if self.fsync_seconds <= 0:
                os.fdatasync(seg.fd)
        except OSError as e:
            if len(view) < len(line):  # part of the line went in: cut it off again
                try:
                    os.ftruncate(seg.fd, seg.size)
                except OSError:
                    pass
            self._refused(e)
            return False
        seg.size += len(line)
        self._dirty = True
        if self.failing_since is not None:
            self.recovered()
        if seg.size >= self.max_segment_bytes:
            self._rotate()
        return True

    def _refused(self, e: OSError) -> None:
        self.write_errors += 1
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        if now - self._last_write_error > 10:
            self._last_write_error = now
            log.error("journal write failed in %s (%s): ledger records are held in memory (%d of at most %d; "
                      "then metered requests get 503) and /readyz reports not ready until the disk takes "
                      "writes again", self.dir, e.strerror, len(self.overflow), self.memory_limit)

    def requeue_overflow(self) -> None:
        """While the disk refuses writes: move records held in memory back into the journal,
        oldest first, as far as it takes them (the writer calls this under its drain lock)."""
        if self.failing_since is None and not self.overflow:
            return
        moved = 0
        for r in self.overflow:
            if not self._write(encode_record(r) + b"\n"):
                break
            moved += 1
        if moved:
            del self.overflow[:moved]
            self.backlog += moved

    def recovered(self) -> None:
        if self.failing_since is not None:
            log.warning("journal: the disk takes writes again after %.0f s; /readyz is green again",
                        time.monotonic() - self.failing_since)
            self.failing_since = None

    def probe_sync(self) -> bool:
        """Whether the journal's disk takes a write now (blocking: run it in a thread)."""
        path = self.dir / "write.probe"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"\0" * 4096)
            finally:
                os.close(fd)
                path.unlink()
        except OSError:
            return False
        return True

    # ---- the writer's side ------------------------------------------------------------------

    def next_range(self) -> tuple[Segment, int, int] | None:
        """The next unread byte range holding complete lines, oldest segment first."""
        for seg in self.segments:
            if seg.read_pos < seg.size:
                return seg, seg.read_pos, min(seg.size, seg.read_pos + READ_CHUNK_BYTES)
        return None

    async def read(self, seg: Segment, start: int, end: int) -> tuple[list[LedgerRecord], int]:
        """`read_sync` in a worker thread."""
        return await asyncio.to_thread(self.read_sync, seg, start, end)

    def read_lines_sync(self, seg: Segment, start: int, end: int) -> tuple[bytes, int]:
        """The complete lines in [start, end) as they are on disk, and where they stop.
        Blocking file I/O: called from the writer's thread, never the loop."""
        data = _read_range(seg.path, start, end)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if end < seg.size:  # one line longer than a chunk: read it whole
                return self.read_lines_sync(seg, start, seg.size)
            return b"", end  # a torn tail left by a machine crash
        return data[:cut], start + cut

    def read_sync(self, seg: Segment, start: int, end: int) -> tuple[list[LedgerRecord], int]:
        """The `end` records in [start, end) up to the last complete line, and where it stops."""
        data, stop = self.read_lines_sync(seg, start, end)
        return decode_end_records(data, seg.path.name), stop

    def committed(self, seg: Segment, pos: int, count: int) -> None:
        seg.read_pos = pos
        self.backlog -= count
        self._collect()

    def _collect(self) -> None:
        active = self.active
        if active is not None and active.read_pos >= active.size > 0 and active.open_begins == 0:
            self._rotate()  # an idle, fully committed segment: start afresh so it can go
        for seg in [s for s in self.segments if s.done]:
            self.segments.remove(seg)
            try:
                seg.path.unlink()
            except FileNotFoundError:
                pass

    # ---- fsync and shutdown --------------------------------------------------------------------

    async def sync_loop(self, stop: asyncio.Event) -> None:
        """fsync the journal every `fsync_seconds`, off the event loop, until `stop` is set.
        (Not cancelled: a cancelled fsync thread could race `close` on its descriptor.)"""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.fsync_seconds)
            except TimeoutError:
                pass
            await self.sync()

    async def sync(self) -> None:
        closing, self._to_close = self._to_close, []
        active = self.active
        fd = active.fd if active is not None and self._dirty else None
        self._dirty = False
        if closing or fd is not None:
            try:
                await asyncio.to_thread(_fsync_all, closing, fd)
            except OSError as e:  # the disk failed to persist what it took: as a refused write
                self._refused(e)

    def close(self) -> None:
        for fd in self._to_close:
            _fsync_close(fd)
        self._to_close = []
        if self.active is not None and self.active.fd is not None:
            _fsync_close(self.active.fd)
            self.active.fd = None
            self.active.sealed = True
        self._collect()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _fsync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(closing: list[int], fd: int | None) -> None:
    failed: OSError | None = None
    for c in closing:
        try:
            _fsync_close(c)  # (closes it either way)
        except OSError as e:
            failed = failed or e
    if failed is not None:
        raise failed
    if fd is not None:
        try:
            os.fdatasync(fd)
        except OSError:
            pass  # rotated and closed meanwhile: its own fsync happened on close
