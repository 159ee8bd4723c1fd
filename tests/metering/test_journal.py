"""The journal with a real SQLite store: replay after SIGKILL exactly once, interrupted
attempts, segment rotation and removal, torn lines, one owner per directory."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from gatehouse.metering.journal import Journal, JournalLocked
from gatehouse.metering.record import ROW_COLUMNS, LedgerRecord, encode_record, row_tuple
from gatehouse.metering.writer import LedgerWriter
from gatehouse.store.migrate import upgrade
from gatehouse.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[2]

# A process that journals, then dies by SIGKILL without any cleanup.
CRASHER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from msgspec.structs import replace
    from gatehouse.metering.journal import Journal
    from gatehouse.metering.record import ROW_COLUMNS, LedgerRecord, encode_record, row_tuple

    j = Journal(Path(sys.argv[1]), fsync_seconds=1.0, max_segment_bytes=int(sys.argv[3]))
    j.open()
    for i in range(int(sys.argv[2])):
        rec = LedgerRecord(id=f"r{i}", request_id=f"q{i}", attempt=1, ts=1.0 + i, consumer="alice",
                           model="chat", surface="chat", input_tokens=5, estimated=True, phase="begin")
        seg = j.begin(rec)
        if i % 10 != 9:  # every tenth attempt is still running when the process dies
            j.end(replace(rec, phase="end", status=200, output_tokens=7, estimated=False), seg)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def crash(journal_dir: Path, n: int, segment_bytes: int = 1 << 20) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(journal_dir), str(n), str(segment_bytes)],
                          cwd=ROOT, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()


async def drain(journal_dir: Path, db: Path) -> int:
    """Start like the gateway does (open, replay, drain), stop, return the records replayed."""
    store = SqlStore(f"sqlite:///{db}")
    await upgrade(store)
    journal = Journal(journal_dir)
    replayed = await asyncio.to_thread(journal.open)
    journal.has_data.set()
    writer = LedgerWriter(journal, store, batch_size=7, flush_seconds=0.01)
    writer.start()
    await writer.stop(timeout=10)
    await store.close()
    return replayed


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, status, error_type, output_tokens, estimated FROM usage_records "
                            "ORDER BY ts").fetchall()


@pytest.mark.process  # a journal left by a SIGKILLed process
def test_sigkill_then_replay_writes_every_record_once_and_marks_interrupted_attempts(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "ledger.db"
    crash(jdir, 50)
    assert asyncio.run(drain(jdir, db)) == 50
    got = rows(db)
    assert len(got) == 50 and len({r[0] for r in got}) == 50
    interrupted = [r for r in got if r[2] == "interrupted"]
    assert len(interrupted) == 5
    assert all(r[1] == 500 and r[3] == 0 and r[4] == 1 for r in interrupted)
    assert all(r[1] == 200 and r[3] == 7 and r[4] == 0 for r in got if r[2] is None)
    # a second start finds nothing left to write, and nothing is written twice
    assert asyncio.run(drain(jdir, db)) == 0
    assert len(rows(db)) == 50
    assert [p.name for p in jdir.glob("seg-*")] == []


@pytest.mark.process  # a journal left by a SIGKILLed process
def test_replay_is_idempotent_when_the_store_already_has_the_records(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "ledger.db"
    crash(jdir, 30)
    saved = {p.name: p.read_bytes() for p in jdir.glob("seg-*")}
    asyncio.run(drain(jdir, db))
    for name, data in saved.items():  # as if the process died after the insert, before cleanup
        (jdir / name).write_bytes(data)
    asyncio.run(drain(jdir, db))
    assert len(rows(db)) == 30


@pytest.mark.process  # a journal left by a SIGKILLed process
def test_small_segments_rotate_and_are_removed_once_committed(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "ledger.db"
    crash(jdir, 200, segment_bytes=2000)
    assert len(list(jdir.glob("seg-*"))) > 10
    asyncio.run(drain(jdir, db))
    assert len(rows(db)) == 200
    assert list(jdir.glob("seg-*")) == []


@pytest.mark.process  # a journal left by a SIGKILLed process
def test_a_torn_last_line_is_skipped(tmp_path):
    jdir, db = tmp_path / "journal", tmp_path / "ledger.db"
    crash(jdir, 9)
    seg = sorted(jdir.glob("seg-*"))[0]
    with open(seg, "ab") as f:
        f.write(b'{"id":"torn","request_id":"q","attem')
    asyncio.run(drain(jdir, db))
    assert len(rows(db)) == 9


@pytest.mark.process  # a journal left by a SIGKILLed process
def test_a_corrupt_line_inside_a_segment_is_skipped_and_the_rest_lands(tmp_path):
    """SQLite takes a whole range of lines in one statement; a line it cannot parse sends that
    range through the line-by-line decoder, which skips only the bad line."""
    jdir, db = tmp_path / "journal", tmp_path / "ledger.db"
    crash(jdir, 9)
    seg = sorted(jdir.glob("seg-*"))[0]
    after = LedgerRecord(id="after", request_id="qa", attempt=1, ts=100.0, consumer="alice", model="chat",
                         surface="chat", status=200)
    with open(seg, "ab") as f:
        f.write(b'{"id":"bad","request_id":"q","attem\n' + encode_record(after) + b"\n")
    asyncio.run(drain(jdir, db))
    ids = [r[0] for r in rows(db)]
    assert len(ids) == 10 and "after" in ids and "bad" not in ids


async def test_every_column_lands_as_the_record_has_it(tmp_path):
    """The journal lines omit default fields; the insert fills them from the record's defaults."""
    store = SqlStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    await upgrade(store)
    journal = Journal(tmp_path / "journal")
    journal.open()
    full = LedgerRecord(id="full", request_id="q1", attempt=2, ts=1.5, consumer="c\"q", model="m", surface="chat",
                        group="g", key_id="k", deployment="d", provider="p", status=429, error_type="rate_limited",
                        input_tokens=11, output_tokens=22, cached_tokens=3, cost_usd=0.125, priced=False,
                        latency_ms=9.5, ttft_ms=1.25, streamed=True, cache_hit=True, estimated=True,
                        route="failover_429", data_class="pii", routed_to="coder")
    sparse = LedgerRecord(id="sparse", request_id="q2", attempt=1, ts=2.5, consumer="c", model="m", surface="chat")
    journal.begin(msgspec.structs.replace(sparse, phase="begin"))  # a begin line is not a row
    for rec in (full, sparse):
        journal.end(rec)
    writer = LedgerWriter(journal, store, batch_size=10, flush_seconds=0.01)
    writer.start()
    await writer.stop(timeout=5)
    await store.close()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        got = conn.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM usage_records ORDER BY ts").fetchall()
    want = [tuple(int(v) if isinstance(v, bool) else v for v in row_tuple(r)) for r in (full, sparse)]
    assert got == want


async def test_records_wait_in_the_journal_while_the_store_is_unusable_then_drain(tmp_path):
    jdir = tmp_path / "journal"
    journal = Journal(jdir)
    journal.open()
    broken = SqlStore(f"sqlite:///{tmp_path / 'ledger.db'}")  # no schema: every insert fails
    writer = LedgerWriter(journal, broken, batch_size=10, flush_seconds=0.01)
    writer.start()
    for i in range(25):
        rec = LedgerRecord(id=f"r{i}", request_id=f"q{i}", attempt=1, ts=float(i), consumer="c", model="m",
                           surface="chat", status=200)
        journal.end(rec)
    for _ in range(50):
        await asyncio.sleep(0.02)
        if writer.failing_since is not None:
            break
    assert writer.failing_since is not None and journal.backlog == 25
    await writer.stop(timeout=0.2)  # gives up: the records stay journaled
    await broken.close()
    assert list(jdir.glob("seg-*")) != []
    store = SqlStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    await upgrade(store)
    await store.close()
    assert await drain(jdir, tmp_path / "ledger.db") == 25
    assert len(rows(tmp_path / "ledger.db")) == 25


def test_one_process_owns_a_journal_directory(tmp_path):
    first = Journal(tmp_path / "j")
    first.open()
    with pytest.raises(JournalLocked, match="another gatehouse process"):
        Journal(tmp_path / "j").open()
    first.close()
    second = Journal(tmp_path / "j")
    second.open()
    second.close()


def _ledger_threads() -> dict[str, int]:
    import threading
    return {t.name.rsplit("_", 1)[0]: t.native_id for t in threading.enumerate() if t.name.startswith("gatehouse-ledger")}


async def _write_through(tmp_path: Path, n: int, catch_up_records: int) -> dict[str, int]:
    store = SqlStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    await upgrade(store)
    journal = Journal(tmp_path / "journal")
    journal.open()
    writer = LedgerWriter(journal, store, batch_size=10, flush_seconds=0.01, catch_up_records=catch_up_records)
    for i in range(n):  # journaled before the writer runs: the backlog is n at its first drain
        journal.end(LedgerRecord(id=f"r{i}", request_id=f"q{i}", attempt=1, ts=float(i), consumer="c",
                                 model="m", surface="chat", status=200, output_tokens=i))
    writer.start()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if writer.committed == n:
            break
    threads = _ledger_threads()
    policies = {name: os.sched_getscheduler(tid) for name, tid in threads.items()}
    await writer.stop(timeout=5)
    await store.close()
    assert writer.committed == n and len(rows(tmp_path / "ledger.db")) == n
    return policies


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
async def test_sqlite_batches_run_in_an_idle_priority_thread(tmp_path):
    policies = await _write_through(tmp_path, 25, catch_up_records=1000)
    assert policies == {"gatehouse-ledger-idle": os.SCHED_IDLE}


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
async def test_a_backlog_past_the_catch_up_mark_drains_at_normal_priority(tmp_path):
    policies = await _write_through(tmp_path, 25, catch_up_records=5)
    assert policies.get("gatehouse-ledger") == os.SCHED_OTHER
