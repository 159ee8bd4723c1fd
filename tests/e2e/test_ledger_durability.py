"""The ledger never loses a record: SIGKILL under load (SQLite and Postgres), a Postgres
outage under load, and SIGTERM flushing. Compared by request id with what the test
upstream actually received."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import pytest

from tests.conftest import ALICE_KEY, base_config
from tests.support import Gatehouse

PRICED = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


def durable_config(upstream_url: str, store_url: str | None = None, **metering) -> dict:
    cfg = base_config(upstream_url, metering={"flush_seconds": 0.05, **metering})
    cfg["models"][0]["deployments"][0].update(PRICED)
    cfg["logging"] = {"access_log": False}
    if store_url:
        cfg["store"] = {"url": store_url, "pool_size": 4}
    return cfg


@dataclass
class Load:
    """Clients hammering gatehouse from a background thread, each HTTP request with a fresh id."""

    url: str
    prefix: str
    workers: int = 6
    complete_unary: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (in, out) tokens
    sent: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
            await asyncio.gather(*(self._worker(s, w) for w in range(self.workers)))

    async def _worker(self, s: aiohttp.ClientSession, w: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            request_id = f"{self.prefix}-{w}-{n}-{uuid.uuid4().hex[:6]}"
            kind = n % 3  # unary, fast stream, slow stream (likely in flight when killed)
            text = {0: "alpha beta gamma", 1: "one two three four", 2: "DRIP a b c d e f"}[kind]
            body = {"model": "chat", "messages": [{"role": "user", "content": text}], "stream": kind != 0}
            headers = {"Authorization": f"Bearer {ALICE_KEY}", "x-request-id": request_id}
            self.sent += 1
            try:
                async with s.post(self.url + "/v1/chat/completions", json=body, headers=headers) as r:
                    if kind == 0:
                        data = await r.json()
                        if r.status == 200:
                            u = data["usage"]
                            self.complete_unary[request_id] = (u["prompt_tokens"], u["completion_tokens"])
                    else:
                        await r.read()
            except (TimeoutError, aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.05)  # gatehouse is down or restarting


def upstream_ids(recorder, prefix: str) -> Counter:
    ids: Counter = Counter()
    for seen in list(recorder.requests):
        rid = next((v for k, v in seen.headers.items() if k.lower() == "x-request-id"), "")
        if rid.startswith(prefix):
            ids[rid] += 1
    return ids


def sqlite_rows(gh: Gatehouse, prefix: str) -> list[dict]:
    with sqlite3.connect(gh.home / "gatehouse.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM usage_records WHERE client_request_id LIKE ?", (prefix + "%",))]


def postgres_rows(url: str, prefix: str) -> list[dict]:
    async def go():
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch("SELECT * FROM usage_records WHERE client_request_id LIKE $1",
                                                      prefix + "%")]
        finally:
            await conn.close()
    return asyncio.run(go())


def check_exactly_once(rows: list[dict], upstream: Counter, load: Load) -> None:
    per_request = Counter(r["client_request_id"] for r in rows)
    assert set(upstream.values()) == {1}, "each HTTP request reached the upstream once"
    missing = [rid for rid in upstream if per_request[rid] == 0]
    twice = [rid for rid, n in per_request.items() if n > 1]
    assert not missing, f"{len(missing)} answered requests have no ledger record"
    assert not twice, f"{len(twice)} requests were recorded more than once"
    # A record the upstream never saw can only be an attempt journaled a moment before the
    # kill, before its bytes left the process: it is marked interrupted, never a success.
    by_id = {r["client_request_id"]: r for r in rows}
    extra = [by_id[rid] for rid in per_request if rid not in upstream]
    assert all(r["error_type"] == "interrupted" for r in extra)
    # A client holding a complete non-streamed answer implies an exact record, not an estimate.
    for rid, (tin, tout) in load.complete_unary.items():
        r = by_id[rid]
        assert (r["status"], r["input_tokens"], r["output_tokens"], bool(r["estimated"])) == (200, tin, tout, False)
        assert r["cost_usd"] == pytest.approx((tin * 1.0 + tout * 2.0) / 1e6)
    interrupted = sum(1 for r in rows if r["error_type"] == "interrupted")
    print(f"\n{load.sent} requests sent, {len(upstream)} reached the upstream, {len(rows)} records, "
          f"{len(load.complete_unary)} complete unary, {interrupted} interrupted, {len(extra)} never sent")


def kill_and_restart_under_load(gh: Gatehouse, load: Load, kills: int = 3) -> None:
    with load:
        for _ in range(kills):
            time.sleep(1.0)
            gh.kill()
            gh.start()
        time.sleep(1.0)
    gh.stop()  # SIGTERM: flushes the journal into the store before exiting


@pytest.mark.process
def test_sigkill_under_load_loses_no_record_sqlite(openai_upstream, recorder, start_gatehouse_process):
    gh = start_gatehouse_process(durable_config(openai_upstream.url))
    prefix = f"kill-sqlite-{uuid.uuid4().hex[:6]}"
    load = Load(gh.url, prefix)
    kill_and_restart_under_load(gh, load)
    upstream = upstream_ids(recorder, prefix)
    assert len(upstream) > 30
    check_exactly_once(sqlite_rows(gh, prefix), upstream, load)
    assert not list((gh.home / "journal").glob("seg-*")) or all(
        p.stat().st_size == 0 for p in (gh.home / "journal").glob("seg-*"))


@pytest.mark.process
def test_sigkill_under_load_loses_no_record_postgres(openai_upstream, recorder, start_gatehouse_process, postgres_server):
    gh = start_gatehouse_process(durable_config(openai_upstream.url, postgres_server.url))
    prefix = f"kill-pg-{uuid.uuid4().hex[:6]}"
    load = Load(gh.url, prefix)
    kill_and_restart_under_load(gh, load)
    upstream = upstream_ids(recorder, prefix)
    assert len(upstream) > 30
    check_exactly_once(postgres_rows(postgres_server.url, prefix), upstream, load)


def _backlog(gh: Gatehouse) -> float:
    import urllib.request

    req = urllib.request.Request(gh.url + "/metrics", headers={"Authorization": "Bearer test-admin-key"})
    for line in urllib.request.urlopen(req, timeout=5).read().decode().splitlines():
        if line.startswith("gatehouse_ledger_backlog "):
            return float(line.split()[1])
    raise AssertionError("no gatehouse_ledger_backlog in /metrics")


def test_postgres_outage_keeps_serving_and_drains_when_it_returns(openai_upstream, recorder, start_gatehouse,
                                                                   postgres_server):
    gh = start_gatehouse(durable_config(openai_upstream.url, postgres_server.url))
    prefix = f"outage-{uuid.uuid4().hex[:6]}"
    load = Load(gh.url, prefix, workers=4)
    postgres_server.stop_server()
    try:
        with load:
            time.sleep(2.0)
            during_outage = len(upstream_ids(recorder, prefix))
            assert during_outage > 5, "requests keep being served while the store is down"
            assert _backlog(gh) > 0
        assert postgres_rows_safely(postgres_server) is None  # still down: nothing could be written
    finally:
        postgres_server.start_server()
    upstream = upstream_ids(recorder, prefix)
    deadline = time.monotonic() + 60
    while _backlog(gh) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _backlog(gh) == 0
    check_exactly_once(postgres_rows(postgres_server.url, prefix), upstream, load)
    assert "unavailable" in gh.logs() and "is back" in gh.logs()
    assert "gatehouse:gatehouse@" not in gh.logs(), "the store password is never logged"


def postgres_rows_safely(postgres_server) -> list | None:
    try:
        return postgres_rows(postgres_server.url, "none")
    except (OSError, asyncpg.PostgresError):
        return None


@pytest.mark.process
def test_sigterm_flushes_the_journal_before_exit(openai_upstream, recorder, start_gatehouse_process):
    gh = start_gatehouse_process(durable_config(openai_upstream.url, flush_seconds=60))  # the writer would wait a minute
    prefix = f"term-{uuid.uuid4().hex[:6]}"

    async def send(n: int) -> None:
        async with aiohttp.ClientSession() as s:
            for i in range(n):
                body = {"model": "chat", "messages": [{"role": "user", "content": f"n{i}"}], "stream": i % 2 == 1}
                headers = {"Authorization": f"Bearer {ALICE_KEY}", "x-request-id": f"{prefix}-{i}"}
                async with s.post(gh.url + "/v1/chat/completions", json=body, headers=headers) as r:
                    assert r.status == 200
                    await r.read()

    asyncio.run(send(20))
    assert sqlite_rows(gh, prefix) == []  # still in the journal
    gh.stop()
    rows = sqlite_rows(gh, prefix)
    assert sorted(r["client_request_id"] for r in rows) == sorted(f"{prefix}-{i}" for i in range(20))
    assert all(r["status"] == 200 and not r["estimated"] for r in rows)
