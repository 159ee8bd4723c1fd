"""Readiness means "can serve": a Postgres outage the journal absorbs keeps /readyz 200 with the
outage in its detail, while a journal the disk refuses (a real tmpfs filled to the brim) turns
it 503, shows in metrics and logs, refuses metered requests once the memory buffer is full,
and recovers without losing a record once space is freed. Real gatehouse processes."""
from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ADMIN_KEY, ALICE_KEY, base_config
from tests.e2e.test_ledger_durability import postgres_rows

AUTH = {"Authorization": f"Bearer {ALICE_KEY}"}


class SmallDisk:
    """An 8 MiB tmpfs that can be filled to the brim and freed again."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        for name, size in (("filler", 65536), ("crumbs", 1)):  # then the last partial page, too
            try:
                fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            except OSError:
                continue
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC
            finally:
                os.close(fd)

    def free(self) -> None:
        for name in ("filler", "crumbs"):
            (self.path / name).unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    path = tmp_path / "disk"
    path.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)], capture_output=True,
                              check=False)
    except FileNotFoundError:
        pytest.skip("no mount command here: cannot make a small disk to fill")
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.decode().strip()})")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


async def get_json(s: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with s.get(url) as r:
        return r.status, await r.json()


async def chat(s: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with s.post(url + "/v1/chat/completions", headers=AUTH,
                      json={"model": "chat", "messages": [{"role": "user", "content": "hello there"}]}) as r:
        return r.status, await r.json()


async def metric(s: aiohttp.ClientSession, url: str, name: str) -> float:
    async with s.get(url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def wait_until(check, timeout: float = 25.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_full_disk_turns_readyz_red_and_recovers_without_losing_a_record(
        small_disk, start_gatehouse, openai_upstream, tmp_path):
    cfg = base_config(openai_upstream.url, metering={"journal_dir": str(small_disk.path / "journal"),
                                                     "flush_seconds": 0.05})
    cfg["store"] = {"url": f"sqlite:///{small_disk.path / 'gatehouse.db'}"}
    gh = start_gatehouse(cfg, home=tmp_path / "home")  # logs on another disk
    async with aiohttp.ClientSession() as s:
        assert (await chat(s, gh.url))[0] == 200
        assert (await get_json(s, gh.url + "/readyz"))[0] == 200
        small_disk.fill()
        for _ in range(10):  # served: the buffer holds up to metering.journal_memory_records
            assert (await chat(s, gh.url))[0] == 200
        status, ready = await get_json(s, gh.url + "/readyz")
        assert status == 503 and ready["checks"]["journal"] == "unwritable", ready
        assert await metric(s, gh.url, "gatehouse_journal_writable") == 0.0
        assert await metric(s, gh.url, "gatehouse_journal_write_errors_total") >= 1
        assert "journal write failed" in gh.logs()
        served = 11
        small_disk.free()

        async def ready() -> bool:
            return (await get_json(s, gh.url + "/readyz"))[0] == 200

        await wait_until(ready)
        assert (await chat(s, gh.url))[0] == 200
        served += 1

        def rows() -> int:
            with sqlite3.connect(small_disk.path / "gatehouse.db") as conn:
                return conn.execute("SELECT count(*) FROM usage_records").fetchone()[0]

        async def all_recorded() -> bool:
            return await asyncio.to_thread(rows) == served

        await wait_until(all_recorded)
    logs = gh.logs()
    assert "the disk takes writes again" in logs
    assert "torn line" not in logs  # a line cut short by the full disk was cut off, not left in the journal


async def test_buffer_full_refuses_metered_requests_with_503(small_disk, start_gatehouse, openai_upstream,
                                                             postgres_server, tmp_path):
    """With the store down as well, nothing can take the records: after `journal_memory_records`
    of them the gateway refuses metered work rather than serve it unrecorded."""
    cfg = base_config(openai_upstream.url, metering={"journal_dir": str(small_disk.path / "journal"),
                                                     "journal_memory_records": 3, "flush_seconds": 0.05})
    cfg["store"] = {"url": postgres_server.url, "pool_size": 2}
    gh = start_gatehouse(cfg, home=tmp_path / "home")
    prefix = f"full-{os.getpid()}-{time.time_ns()}"
    postgres_server.stop_server()
    try:
        small_disk.fill()
        async with aiohttp.ClientSession() as s:
            statuses = []
            for i in range(6):
                async with s.post(gh.url + "/v1/chat/completions", headers={**AUTH, "x-request-id": f"{prefix}-{i}"},
                                  json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}) as r:
                    statuses.append(r.status)
                    body = await r.json()
                    if r.status == 503:
                        assert body["error"]["code"] == "ledger_unavailable" and r.headers["Retry-After"]
            assert statuses == [200, 200, 200, 503, 503, 503]
            status, ready = await get_json(s, gh.url + "/readyz")
            assert status == 503 and ready["checks"]["ledger_in_memory"] == 3
            assert ready["checks"]["store"] == "unreachable"
    finally:
        small_disk.free()
        postgres_server.start_server()

    async def drained() -> bool:
        return len(await asyncio.to_thread(postgres_rows, postgres_server.url, prefix)) == 3

    await wait_until(drained, 40)


async def test_readyz_stays_ready_while_postgres_is_down_and_reports_it(start_gatehouse, openai_upstream,
                                                                       postgres_server, redis_server):
    cfg = base_config(openai_upstream.url, metering={"flush_seconds": 0.05})
    cfg["store"] = {"url": postgres_server.url, "pool_size": 2, "redis_url": redis_server.url}
    gh = start_gatehouse(cfg)
    async with aiohttp.ClientSession() as s:
        status, ready = await get_json(s, gh.url + "/readyz")
        assert status == 200 and ready["checks"]["store"] == "ok" and ready["checks"]["redis"] == "ok", ready
        postgres_server.stop_server()
        try:
            assert (await chat(s, gh.url))[0] == 200  # served: the record waits in the journal

            async def store_reported() -> bool:
                status, ready = await get_json(s, gh.url + "/readyz")
                assert status == 200, ready
                return ready["checks"]["store"] == "unreachable" and "ledger_store" in ready["checks"]

            await wait_until(store_reported)
            assert await metric(s, gh.url, "gatehouse_ledger_store_up") == 0.0
        finally:
            postgres_server.start_server()

        async def back() -> bool:
            status, ready = await get_json(s, gh.url + "/readyz")
            return status == 200 and ready["checks"]["store"] == "ok" and ready["checks"]["ledger_backlog"] == 0

        await wait_until(back, 40)
