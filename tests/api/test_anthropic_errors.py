"""Every error on /v1/messages in Anthropic's shape `{"type":"error","error":{"type","message"}}`
with Anthropic's status codes, before a stream starts and after: an upstream that resets or
fails mid-stream yields an `error` event and a closed stream, never a hang or a fake end_turn.
Raw HTTP (aiohttp) so every byte is seen; the anthropic SDK for its exception classes."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import anthropic
import pytest

from tests.anthropic_setup import anthropic_config
from tests.conftest import ALICE_KEY
from tests.support import Gatehouse

PDF = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"}}
# "No hang": the providers under test have read timeouts of 1-2 s, so the gateway must never
# leave the client without a byte for longer than that (plus a margin for a busy machine).
NO_HANG = aiohttp.ClientTimeout(total=30, sock_read=8)


@pytest.fixture(scope="module")
def gh(openai_upstream, anthropic_upstream, tmp_path_factory) -> Iterator[Gatehouse]:
    g = Gatehouse(anthropic_config(openai_upstream.url, anthropic_upstream.url), tmp_path_factory.mktemp("gh")).start()
    yield g
    g.stop()


def body(model: str = "chat", text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": text}], **extra}


async def post(gh: Gatehouse, payload: Any, headers: dict | None = None, raw: bytes | None = None,
               path: str = "/v1/messages", method: str = "POST") -> tuple[int, Any, Any]:
    hdrs = {"x-api-key": ALICE_KEY, "content-type": "application/json", "anthropic-version": "2023-06-01",
            **(headers or {})}
    data = raw if raw is not None else json.dumps(payload).encode()
    async with aiohttp.ClientSession(timeout=NO_HANG) as s:
        async with s.request(method, gh.url + path, data=data, headers=hdrs) as r:
            return r.status, await r.json(content_type=None), r.headers


def assert_anthropic_error(payload: dict, type_: str) -> str:
    assert set(payload) == {"type", "error"} and payload["type"] == "error", payload
    assert set(payload["error"]) == {"type", "message"} and payload["error"]["type"] == type_, payload
    message = payload["error"]["message"]
    assert message and "Traceback" not in message and "127.0.0.1" not in message
    return message


# (case, request kwargs for post(), status, Anthropic error type, text the message must contain)
CASES = [
    ("no key", dict(payload=body(), headers={"x-api-key": ""}), 401, "authentication_error", "API key"),
    ("unknown key", dict(payload=body(), headers={"x-api-key": "nope"}), 401, "authentication_error", "API key"),
    ("model not allowed", dict(payload=body("restricted")), 403, "permission_error", "restricted"),
    ("unknown model", dict(payload=body("gpt-9")), 404, "not_found_error", "gpt-9"),
    ("max_tokens missing", dict(payload={"model": "chat", "messages": [{"role": "user", "content": "x"}]}), 400,
     "invalid_request_error", "max_tokens"),
    ("bad role", dict(payload={**body(), "messages": [{"role": "robot", "content": "x"}]}), 400,
     "invalid_request_error", "robot"),
    ("wrong type", dict(payload=body(max_tokens="many")), 400, "invalid_request_error", "max_tokens"),
    ("malformed JSON", dict(payload=None, raw=b'{"model": "chat", "messages": ['), 400, "invalid_request_error", "JSON"),
    ("upstream override refused", dict(payload=body(base_url="http://evil.test")), 400, "invalid_request_error",
     "base_url"),
    ("PDF to an OpenAI-wire model", dict(payload={**body(), "messages": [{"role": "user", "content": [PDF]}]}), 400,
     "invalid_request_error", "Anthropic models"),
    ("server tool to an OpenAI-wire model", dict(payload=body(tools=[{"type": "web_search_20250305", "name": "web_search"}])),
     400, "invalid_request_error", "web_search_20250305"),
    ("body too large", dict(payload=body(text="x" * 2_100_000)), 413, "request_too_large", "larger"),
    ("not JSON", dict(payload=None, raw=b"hello", headers={"content-type": "text/plain"}), 415,
     "invalid_request_error", "Content-Type"),
    ("wrong method", dict(payload=None, raw=b"", method="GET"), 405, "invalid_request_error", "GET"),
    ("count_tokens unknown model", dict(payload={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]},
                                        path="/v1/messages/count_tokens"), 404, "not_found_error", "gpt-9"),
    ("upstream 429 (OpenAI wire)", dict(payload=body("chat", "FAIL429")), 429, "rate_limit_error", "Rate limit"),
    ("upstream 429 (Anthropic wire)", dict(payload=body("claude", "FAIL429")), 429, "rate_limit_error", "rate limit"),
    ("upstream 500 (OpenAI wire)", dict(payload=body("chat", "FAIL500")), 502, "api_error", "500"),
    ("upstream 500 (Anthropic wire)", dict(payload=body("claude", "FAIL500")), 502, "api_error", "500"),
    ("upstream overloaded is 529", dict(payload=body("claude", "FAIL529")), 529, "overloaded_error", "Overloaded"),
    ("upstream refuses the request", dict(payload=body("claude", thinking={"type": "enabled", "budget_tokens": 500})),
     400, "invalid_request_error",
     "rejected the request (HTTP 400, invalid_request_error)"),
    ("upstream too slow", dict(payload=body("chat-timeout", "SLOW", stream=True)), 504, "timeout_error", "timed out"),
]


@pytest.mark.parametrize("case,kwargs,status,type_,needle", CASES, ids=[c[0] for c in CASES])
async def test_errors_in_anthropic_shape(gh, case, kwargs, status, type_, needle):
    got_status, payload, headers = await post(gh, **kwargs)
    assert got_status == status, payload
    message = assert_anthropic_error(payload, type_)
    assert needle.lower() in message.lower(), message
    assert headers["x-request-id"]


async def test_tool_arguments_named_like_forbidden_fields_are_fine(gh):
    """A tool the model called with `headers`/`api_key` arguments is history, not gateway config."""
    turns = [{"role": "user", "content": "call it"},
             {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "http",
                                                "input": {"url": "https://x.test", "headers": {"a": "b"}, "api_key": "k"}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}]}]
    for model in ("chat", "claude"):
        status, got, _ = await post(gh, {**body(model), "messages": turns})
        assert status == 200 and got["content"][0]["text"] == "echo: done", got


async def test_pdf_passes_through_to_an_anthropic_model(gh):
    payload = {**body("claude"), "messages": [{"role": "user", "content": [PDF, {"type": "text", "text": "summary"}]}]}
    status, got, _ = await post(gh, payload)
    assert status == 200 and got["content"][0]["text"] == "echo: summary"


def test_sdk_exception_classes(gh):
    client = anthropic.Anthropic(base_url=gh.url, api_key=ALICE_KEY, max_retries=0)
    msg = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="gpt-9", max_tokens=5, messages=msg)
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model="restricted", max_tokens=5, messages=msg)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": "FAIL429"}])
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": "FAIL529"}])
    assert info.value.status_code == 529
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gh.url, api_key="wrong", max_retries=0).messages.create(
            model="chat", max_tokens=5, messages=msg)


# ---- failures after the stream started -------------------------------------------------------------


async def stream_events(gh: Gatehouse, payload: dict) -> tuple[int, list[tuple[str, dict]]]:
    """POST a streaming request and read until the server closes the stream."""
    async with aiohttp.ClientSession(timeout=NO_HANG) as s:
        async with s.post(gh.url + "/v1/messages", json={**payload, "stream": True},
                          headers={"x-api-key": ALICE_KEY, "anthropic-version": "2023-06-01"}) as r:
            raw = (await r.read()).decode()  # returns only once the stream is closed
            status = r.status
    events = []
    for frame in raw.split("\n\n"):
        if frame.strip():
            fields = dict(line.split(": ", 1) for line in frame.split("\n"))
            events.append((fields["event"], json.loads(fields["data"])))
    return status, events


# (case, model, trigger, Anthropic error type): OpenAI wire translated, Anthropic wire passed through
MID_STREAM = [
    ("reset, OpenAI wire", "chat-timeout", "one two three CUTSTREAM", "api_error"),
    ("reset, Anthropic wire", "claude-strict", "one two three CUTSTREAM", "api_error"),
    ("in-stream error, Anthropic wire", "claude", "one two three STREAMERR", "overloaded_error"),
]


@pytest.mark.parametrize("case,model,trigger,type_", MID_STREAM, ids=[c[0] for c in MID_STREAM])
async def test_mid_stream_failure_is_an_error_event_and_a_closed_stream(gh, case, model, trigger, type_):
    status, events = await stream_events(gh, body(model, trigger))
    names = [n for n, _ in events]
    assert status == 200 and names[0] == "message_start"
    assert "content_block_delta" in names, "what arrived before the failure was delivered"
    assert names[-1] == "error" and events[-1][1]["error"]["type"] == type_
    assert "message_stop" not in names and "message_delta" not in names, "no made-up end of message"
    assert "127.0.0.1" not in events[-1][1]["error"]["message"]


def test_sdk_raises_on_a_mid_stream_failure(gh):
    client = anthropic.Anthropic(base_url=gh.url, api_key=ALICE_KEY, max_retries=0, timeout=20)
    for model in ("chat", "claude"):
        text: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as info:
            with client.messages.stream(model=model, max_tokens=50,
                                        messages=[{"role": "user", "content": "a b c CUTSTREAM"}]) as stream:
                for t in stream.text_stream:
                    text.append(t)
        assert "closed the connection" in str(info.value) or "ended the stream" in str(info.value)
        assert text, "text before the failure reached the client"
