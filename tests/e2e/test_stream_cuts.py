"""Streams that end badly, end to end through a real `gatehouse serve`: an upstream that closes
a close-delimited body early, resets mid-stream, or never answers; clients that hang up.
Every stream that did not end with its dialect's terminator ends with an error frame; every
cut attempt is billed for what was relayed, flagged estimated; a client that hangs up on a
non-streamed request cancels the upstream call and frees its concurrency slot."""
from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import time
import uuid

import aiohttp
import openai
import pytest

from tests.conftest import ALICE_KEY, BOB_KEY, base_config
from tests.support import Gatehouse
from tests.upstreams.raw_cuts import (
    ANTHROPIC_INPUT,
    DELTA_TEXT,
    DELTAS,
    RawUpstream,
    delta_chars,
)


def cuts_config(raw_url: str, openai_url: str, **server: float) -> dict:
    cfg = base_config(openai_url, metering={"flush_seconds": 0.05})
    cfg["server"].update(server)
    cfg["providers"].update({
        "raw-oa": {"type": "openai", "base_url": f"{raw_url}/v1", "api_key": "k"},
        "raw-an": {"type": "anthropic", "base_url": raw_url, "api_key": "k"},
        "raw-ol": {"type": "ollama", "base_url": raw_url},
    })
    cfg["models"] = [
        {"name": "raw-chat", "deployments": [{"provider": "raw-oa", "model": "raw"}]},
        {"name": "claude-raw", "deployments": [{"provider": "raw-an", "model": "claude-raw"}]},
        {"name": "ollama-raw", "deployments": [{"provider": "raw-ol", "model": "raw"}]},
    ]
    cfg["groups"] = {"dev": {"models": ["*"]}, "solo": {"models": ["*"], "max_concurrent": 1}}
    cfg["consumers"]["bob"]["group"] = "solo"
    return cfg


@pytest.fixture(scope="module")
def raw():
    with RawUpstream() as srv:
        yield srv


@pytest.fixture(scope="module")
def gh(raw, openai_upstream, tmp_path_factory):
    g = Gatehouse(cuts_config(raw.url, openai_upstream.url), tmp_path_factory.mktemp("cuts")).start()
    yield g
    g.stop()


def rid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def _rows(home, request_id: str) -> list[dict]:
    with sqlite3.connect(home / "gatehouse.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM usage_records WHERE client_request_id = ?", (request_id,))]


def record(home, request_id: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(home, request_id)
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, rows
            return rows[0]
        time.sleep(0.05)


def post_raw(url: str, path: str, body: dict, request_id: str, http10: bool = False) -> bytes:
    """POST over a plain socket and return the whole de-framed response body."""
    port = int(url.rsplit(":", 1)[1])
    data = json.dumps(body).encode()
    version = b"HTTP/1.0" if http10 else b"HTTP/1.1"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST %b %b\r\nHost: x\r\nAuthorization: Bearer %b\r\nx-request-id: %b\r\n"
                  b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%b"
                  % (path.encode(), version, ALICE_KEY.encode(), request_id.encode(), len(data), data))
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return rest
    out = b""
    while True:
        size, _, rest = rest.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return out
        out, rest = out + rest[:n], rest[n + 2:]


def sse_data(body: bytes) -> list[bytes]:
    return [line[5:].strip() for line in body.split(b"\n") if line.startswith(b"data:")]


# ---- a close-delimited body ended early: an error frame, never a quiet end --------------------


@pytest.mark.parametrize("http10", [False, True], ids=["spliced", "iterated"])
def test_openai_relay_ends_an_early_closed_body_with_an_error_frame(gh, http10):
    request_id = rid("oa-early")
    body = {"model": "raw-chat", "stream": True, "messages": [{"role": "user", "content": "EARLYCLOSE"}]}
    data = sse_data(post_raw(gh.url, "/v1/chat/completions", body, request_id, http10))
    assert len(data) == 4 and data[-1] != b"[DONE]"
    assert [json.loads(d)["choices"][0]["delta"]["content"] for d in data[:3]] == [DELTA_TEXT % i for i in range(3)]
    assert json.loads(data[-1])["error"]["message"] == "The upstream for model 'raw-chat' ended the stream early."
    rec = record(gh.home, request_id)
    assert (rec["status"], rec["error_type"], rec["estimated"], rec["output_tokens"]) == \
        (502, "upstream_disconnected", 1, 3)


def test_an_upstream_error_frame_before_the_close_is_the_only_error_frame(gh):
    request_id = rid("oa-uperror")
    body = {"model": "raw-chat", "stream": True, "messages": [{"role": "user", "content": "EARLYCLOSE UPERROR"}]}
    data = sse_data(post_raw(gh.url, "/v1/chat/completions", body, request_id))
    # The upstream's own error frame is the last frame, in the gateway's words (docs/errors.md).
    assert len(data) == 4
    assert json.loads(data[-1])["error"]["message"].startswith("The upstream for model 'raw-chat' failed")
    rec = record(gh.home, request_id)
    assert (rec["status"], rec["error_type"]) == (502, "upstream_error")


@pytest.mark.parametrize("prompt", ["EARLYCLOSE", "EARLYCLOSE MIDFRAME"], ids=["between-frames", "mid-frame"])
def test_the_openai_sdk_raises_on_an_early_closed_stream_instead_of_returning_partial_text(gh, prompt):
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    got: list[str] = []
    with pytest.raises(openai.APIError, match="ended the stream early"):
        for chunk in client.chat.completions.create(model="raw-chat", stream=True,
                                                    messages=[{"role": "user", "content": prompt}]):
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "".join(DELTA_TEXT % i for i in range(3))


def test_a_whole_stream_still_ends_normally(gh):
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="raw-chat", stream=True, messages=[{"role": "user", "content": "whole"}]) if c.choices)
    assert text == "".join(DELTA_TEXT % i for i in range(DELTAS))


def test_anthropic_relay_ends_an_early_closed_body_with_an_error_event(gh):
    body = {"model": "claude-raw", "stream": True, "max_tokens": 50,
            "messages": [{"role": "user", "content": "EARLYCLOSE"}]}
    out = post_raw(gh.url, "/v1/messages", body, rid("an-early"))
    assert out.rstrip().split(b"\n\n")[-1].startswith(b"event: error\n")
    assert json.loads(sse_data(out)[-1])["error"]["type"] == "api_error"


def test_ollama_relay_ends_an_early_closed_body_with_an_error_line(gh):
    request_id = rid("ol-early")
    body = {"model": "ollama-raw", "messages": [{"role": "user", "content": "EARLYCLOSE"}]}
    lines = [json.loads(line) for line in post_raw(gh.url, "/api/chat", body, request_id).splitlines()]
    assert [line["message"]["content"] for line in lines[:3]] == [DELTA_TEXT % i for i in range(3)]
    assert len(lines) == 4 and "ended the stream early" in lines[-1]["error"]
    rec = record(gh.home, request_id)
    assert (rec["status"], rec["error_type"], rec["estimated"]) == (502, "upstream_disconnected", 1)


def test_a_translated_stream_ends_an_early_closed_body_with_an_error_frame(gh):
    """OpenAI client, Anthropic upstream: the decoder notices the missing message_stop."""
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    with pytest.raises(openai.APIError, match="ended the stream early"):
        list(client.chat.completions.create(model="claude-raw", stream=True, max_tokens=50,
                                            messages=[{"role": "user", "content": "EARLYCLOSE"}]))


# ---- cut Anthropic pass-through streams are billed for the deltas relayed ------------------------


def test_anthropic_stream_reset_by_the_upstream_is_billed_for_the_relayed_deltas(gh):
    request_id = rid("an-reset")
    body = {"model": "claude-raw", "stream": True, "max_tokens": 500,
            "messages": [{"role": "user", "content": "RESET"}]}
    out = post_raw(gh.url, "/v1/messages", body, request_id)
    assert out.count(b"event: content_block_delta") == DELTAS
    assert out.rstrip().split(b"\n\n")[-1].startswith(b"event: error\n")
    rec = record(gh.home, request_id)
    assert (rec["status"], rec["error_type"]) == (502, "upstream_disconnected")
    # Not message_start's placeholder output count of 1: the text of the 20 deltas at ~4 chars/token.
    assert rec["estimated"] and rec["output_tokens"] == (delta_chars(DELTAS) + 3) // 4 == 35
    assert rec["input_tokens"] == ANTHROPIC_INPUT  # reported by message_start


async def test_anthropic_stream_the_client_hangs_up_on_is_billed_for_the_relayed_deltas(gh):
    request_id = rid("an-hangup")
    body = {"model": "claude-raw", "stream": True, "max_tokens": 5000,
            "messages": [{"role": "user", "content": "DRIP"}]}
    headers = {"x-api-key": ALICE_KEY, "anthropic-version": "2023-06-01", "x-request-id": request_id}
    async with aiohttp.ClientSession() as s, s.post(gh.url + "/v1/messages", json=body, headers=headers) as r:
        got = b""
        while got.count(b"event: content_block_delta") < DELTAS:
            got += await r.content.readany()
        r.close()  # hang up mid-stream, as Claude Code does when the user interrupts
    rec = await asyncio.to_thread(record, gh.home, request_id)
    assert (rec["status"], rec["error_type"]) == (499, "client_closed")
    assert rec["estimated"] and rec["input_tokens"] == ANTHROPIC_INPUT
    assert (delta_chars(DELTAS) + 3) // 4 <= rec["output_tokens"] < 100


def test_a_finished_anthropic_stream_keeps_the_reported_usage(gh):
    request_id = rid("an-whole")
    body = {"model": "claude-raw", "stream": True, "max_tokens": 500,
            "messages": [{"role": "user", "content": "whole"}]}
    out = post_raw(gh.url, "/v1/messages", body, request_id)
    assert out.rstrip().endswith(b'data: {"type":"message_stop"}')
    rec = record(gh.home, request_id)
    assert (rec["status"], rec["output_tokens"], rec["estimated"]) == (200, DELTAS, 0)


# ---- a client that hangs up on a non-streamed request ---------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream-before-its-first-byte"])
def test_a_hang_up_on_a_unary_request_cancels_the_upstream_call_and_frees_the_slot(gh, raw, stream):
    """bob's group allows one request at a time: the hung-up request must give its slot back."""
    request_id = rid("unary-hangup")
    data = json.dumps({"model": "raw-chat", "stream": stream,
                       "messages": [{"role": "user", "content": "HANG"}]}).encode()
    port = int(gh.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %b\r\n"
                  b"x-request-id: %b\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                  % (BOB_KEY.encode(), request_id.encode(), len(data), data))
        deadline = time.monotonic() + 10
        while request_id not in raw.arrived and time.monotonic() < deadline:
            time.sleep(0.02)
        assert request_id in raw.arrived, "the request reached the upstream"
        hung_up = time.monotonic()
    deadline = time.monotonic() + 5
    while request_id not in raw.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert request_id in raw.closed, "the upstream call was not cancelled"
    assert raw.closed[request_id] - hung_up < 1.0
    rec = record(gh.home, request_id)
    assert (rec["status"], rec["error_type"], rec["estimated"], rec["output_tokens"]) == (499, "client_closed", 1, 0)
    assert rec["streamed"] == stream
    assert rec["input_tokens"] > 0  # the prompt was processed upstream: billed at its estimate
    bob = openai.OpenAI(base_url=gh.url + "/v1", api_key=BOB_KEY, max_retries=0)
    reply = bob.chat.completions.create(model="raw-chat", messages=[{"role": "user", "content": "next"}])
    assert reply.choices[0].message.content == "ok", "the slot was given back"


# ---- SIGTERM: streams cut when the grace runs out; the exit code -----------------------------------


def _dechunk(raw_body: bytes) -> bytes:
    out, rest = b"", raw_body
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, rest = out + rest[:n], rest[n + 2:]
    return out


@pytest.mark.parametrize(("model", "path"), [("raw-chat", "/v1/chat/completions"), ("claude-raw", "/v1/messages")],
                         ids=["openai-spliced", "anthropic"])
@pytest.mark.process
def test_streams_cut_when_the_shutdown_grace_runs_out_are_billed_and_end_with_an_error(
        start_gatehouse_process, raw, openai_upstream, tmp_path, model, path):
    home = tmp_path / "home"
    gh = start_gatehouse_process(cuts_config(raw.url, openai_upstream.url, shutdown_grace_seconds=1), home=home)
    request_id = rid("shutdown")
    data = json.dumps({"model": model, "stream": True, "max_tokens": 5000,
                       "messages": [{"role": "user", "content": "DRIP"}]}).encode()
    marker = b"content_block_delta" if path == "/v1/messages" else b'"content"'
    buf = b""
    with socket.create_connection(("127.0.0.1", gh.port), timeout=10) as s:
        s.sendall(b"POST %b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %b\r\nx-request-id: %b\r\n"
                  b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                  % (path.encode(), ALICE_KEY.encode(), request_id.encode(), len(data), data))
        while buf.count(marker) < DELTAS:
            buf += s.recv(65536)
        gh.proc.send_signal(signal.SIGTERM)  # the stream drips on for 60 s: the 1 s grace cuts it
        while chunk := s.recv(65536):
            buf += chunk
    gh.proc.wait(15)
    body = _dechunk(buf.partition(b"\r\n\r\n")[2])
    frames = body.rstrip().split(b"\n\n")
    content = [json.loads(d) for f in frames for d in sse_data(f) if b'"error"' not in d]
    if path == "/v1/messages":
        texts = [c["delta"]["text"] for c in content if c["type"] == "content_block_delta"]
        expected = (sum(map(len, texts)) + 3) // 4
    else:
        texts = [c["choices"][0]["delta"]["content"] for c in content]
        expected = len(texts)  # relayed without usage: one token per content frame
    assert len(texts) > DELTAS + 10  # it kept streaming through the grace
    if not _rows(home, request_id):  # not drained into the store before the exit: replayed on the next start
        start_gatehouse_process(gh.config, home=home)
    rec = record(home, request_id)
    assert rec["estimated"] and rec["output_tokens"] == expected, "billed for what was delivered"
    assert (rec["status"], rec["error_type"]) == (499, "cancelled")
    error = json.loads(sse_data(frames[-1])[0])  # the client learns that the stream was cut
    assert "shutting down" in error["error"]["message"]
    if path == "/v1/messages":
        assert frames[-1].startswith(b"event: error\n") and error["error"]["type"] == "overloaded_error"
    assert gh.proc.returncode == 0, "a graceful shutdown exits 0"


@pytest.mark.process
def test_a_graceful_shutdown_exits_0(start_gatehouse_process, openai_upstream):
    gh = start_gatehouse_process(base_config(openai_upstream.url))
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}]).choices
    assert gh.stop(signal.SIGTERM) == 0
    gh2 = start_gatehouse_process(base_config(openai_upstream.url))
    assert gh2.stop(signal.SIGINT) == 0
