"""Keep-alive frames to a streaming client held by a cold start, over real sockets: a client
streaming from a model whose only deployment starts late gets its response head (200,
text/event-stream, x-gatehouse-cold-start) with the first keep-alive — an SSE comment for OpenAI,
an `event: ping` for Anthropic, nothing for Ollama's NDJSON — then the answer in the same body; a
hold that times out after the head went out ends the stream with the dialect's error frame."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import aiohttp

from tests.conftest import BOB_KEY
from tests.routing.test_strategies_live import with_model
from tests.upstreams.fleet import Replica, dead_url

COLD = {"timeout_seconds": 20, "poll_interval_seconds": 0.2, "keepalive_seconds": 0.4}


async def stream(url: str, path: str, body: dict[str, Any],
                 headers: dict[str, str]) -> tuple[int, dict[str, str], float, list[tuple[float, bytes]]]:
    """Status, headers, when the head arrived, and each chunk with when it arrived (seconds from the send)."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as s, s.post(url + path, json=body, headers=headers) as r:
        head_at = time.monotonic() - started
        chunks = [(time.monotonic() - started, c) async for c in r.content.iter_any()]
        return r.status, dict(r.headers), head_at, chunks


def _late(replica: Replica, after: float) -> None:
    threading.Timer(after, replica.server.start).start()


async def test_an_openai_stream_gets_keepalive_comments_while_held_then_its_answer(start_gatehouse):
    replica = Replica("late")
    try:
        gh = start_gatehouse(with_model([("gpu", replica.url)], name="sleepy", cold_start=COLD))
        _late(replica, 2.5)
        status, headers, head_at, chunks = await stream(
            gh.url, "/v1/chat/completions", {"model": "sleepy", "stream": True,
                                             "messages": [{"role": "user", "content": "hi"}]},
            {"Authorization": f"Bearer {BOB_KEY}"})
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        assert headers["x-gatehouse-cold-start"] == "true"
        assert head_at < 1.5, head_at  # the head went out with the first keep-alive, not with the answer
        body = b"".join(c for _, c in chunks)
        assert body.startswith(b": keep-alive\n\n")
        assert body.count(b": keep-alive\n\n") >= 3
        keepalives = [at for at, c in chunks if c.startswith(b": keep-alive")]
        assert keepalives[0] < 1.5
        text = body.replace(b": keep-alive\n\n", b"")
        assert b"served by late" in text and text.rstrip().endswith(b"data: [DONE]")
        assert b"HTTP/1.1" not in body
    finally:
        replica.server.stop() if replica.server._thread.is_alive() else None


async def test_an_anthropic_stream_gets_ping_events_while_held(start_gatehouse):
    replica = Replica("late")
    try:
        gh = start_gatehouse(with_model([("gpu", replica.url)], name="sleepy", cold_start=COLD))
        _late(replica, 1.5)
        status, headers, head_at, chunks = await stream(
            gh.url, "/v1/messages", {"model": "sleepy", "max_tokens": 10, "stream": True,
                                     "messages": [{"role": "user", "content": "hi"}]},
            {"x-api-key": BOB_KEY, "anthropic-version": "2023-06-01"})
        assert status == 200 and head_at < 1.2
        body = b"".join(c for _, c in chunks).decode()
        events = [block.split("\n", 1)[0] for block in body.strip().split("\n\n")]
        assert events[0] == "event: ping" and events.count("event: ping") >= 2
        rest = [e for e in events if e != "event: ping"]
        assert rest[0] == "event: message_start" and rest[-1] == "event: message_stop"
        assert "served by late" in body
    finally:
        replica.server.stop() if replica.server._thread.is_alive() else None


async def test_an_ollama_stream_is_held_without_keepalive_lines(start_gatehouse):
    replica = Replica("late")
    try:
        gh = start_gatehouse(with_model([("gpu", replica.url)], name="sleepy", cold_start=COLD))
        _late(replica, 1.5)
        status, headers, head_at, chunks = await stream(
            gh.url, "/api/chat", {"model": "sleepy", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            {"Authorization": f"Bearer {BOB_KEY}"})
        assert status == 200 and head_at > 1.2  # nothing sent while held: the head comes with the answer
        lines = [json.loads(ln) for ln in b"".join(c for _, c in chunks).splitlines() if ln.strip()]
        assert "served by late" in "".join(ln.get("message", {}).get("content", "") for ln in lines)
        assert lines[-1]["done"] is True
    finally:
        replica.server.stop() if replica.server._thread.is_alive() else None


async def test_a_hold_that_times_out_after_the_head_ends_the_stream_with_an_error_frame(start_gatehouse):
    cold = {**COLD, "timeout_seconds": 1.5}
    gh = start_gatehouse(with_model([("gpu", dead_url())], name="sleepy", cold_start=cold))
    status, headers, head_at, chunks = await stream(
        gh.url, "/v1/chat/completions", {"model": "sleepy", "stream": True,
                                         "messages": [{"role": "user", "content": "hi"}]},
        {"Authorization": f"Bearer {BOB_KEY}"})
    assert status == 200 and head_at < 1.0
    body = b"".join(c for _, c in chunks)
    assert body.startswith(b": keep-alive\n\n") and b"HTTP/1.1" not in body
    last = body.replace(b": keep-alive\n\n", b"").strip()
    assert last.startswith(b"data: ")
    err = json.loads(last[len(b"data: "):])["error"]
    assert "not ready within 1.5 s" in err["message"] and err["type"] == "overloaded_error"
    status, headers, _, chunks = await stream(
        gh.url, "/v1/messages", {"model": "sleepy", "max_tokens": 10, "stream": True,
                                 "messages": [{"role": "user", "content": "hi"}]},
        {"x-api-key": BOB_KEY, "anthropic-version": "2023-06-01"})
    body = b"".join(c for _, c in chunks).decode()
    assert status == 200 and body.startswith("event: ping")
    last = body.strip().split("\n\n")[-1]
    assert last.startswith("event: error") and '"overloaded_error"' in last
