"""Cached answers replay as proper streams in the client's own dialect (openai and anthropic SDKs
read them), a stream and a non-stream request share an entry, and a cut stream is never stored."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.anthropic_setup import anthropic_config
from tests.cache.serving import post, serve
from tests.conftest import ALICE_KEY


def upstream_calls(*recorders) -> int:
    return sum(1 for rec in recorders for r in rec.requests if r.method == "POST")


@pytest.fixture
def gh(openai_upstream, anthropic_upstream, tmp_path: Path) -> Iterator[str]:
    cfg = anthropic_config(openai_upstream.url, anthropic_upstream.url)
    for m in cfg["models"]:
        if m["name"] in ("chat", "claude"):
            m["cache"] = {"ttl_seconds": 60, "allow_tools": True}
    with serve(cfg, tmp_path / "gh") as url:
        yield url


@pytest.fixture
def recorders(openai_upstream, anthropic_upstream):
    openai_upstream.recorder.clear()
    anthropic_upstream.recorder.clear()
    return openai_upstream.recorder, anthropic_upstream.recorder


def oa_stream(client: openai.OpenAI, text: str) -> tuple[str, str, Any, str]:
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": text}], temperature=0, max_tokens=64, stream=True,
        stream_options={"include_usage": True})
    out, finish, usage = "", "", None
    for chunk in raw.parse():
        if chunk.choices:
            out += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    return out, finish, usage, raw.headers["x-gatehouse-cache"]


def test_openai_stream_is_stored_and_replayed_and_shares_the_entry_with_non_stream(gh, recorders):
    client = openai.OpenAI(base_url=gh + "/v1", api_key=ALICE_KEY, max_retries=0)
    text = "tell me a long story " + " ".join(f"word{i}" for i in range(40))
    first = oa_stream(client, text)
    second = oa_stream(client, text)
    assert first[3] == "miss" and second[3] == "hit"
    assert first[:2] == second[:2] and second[0] == "echo: " + text and second[1] == "stop"
    assert second[2].completion_tokens == first[2].completion_tokens > 0
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": text}], temperature=0, max_tokens=64)
    assert raw.headers["x-gatehouse-cache"] == "hit"
    assert raw.parse().choices[0].message.content == "echo: " + text
    assert upstream_calls(*recorders) == 1


def an_stream(client: anthropic.Anthropic, model: str, text: str, **kw: Any) -> tuple[Any, str]:
    with client.messages.with_streaming_response.create(
            model=model, max_tokens=64, extra_body={"temperature": 0}, messages=[{"role": "user", "content": text}],
            stream=True, **kw) as resp:
        state = resp.headers["x-gatehouse-cache"]
        events = list(resp.parse())
    return _accumulate(events), state


def _accumulate(events: list[Any]) -> dict[str, Any]:
    """The message the SDK's events describe (what MessageStream builds), checked for order."""
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    blocks: dict[int, dict[str, Any]] = {}
    stop = None
    for ev in events:
        if ev.type == "content_block_start":
            blocks[ev.index] = ev.content_block.model_dump()
        elif ev.type == "content_block_delta":
            d = ev.delta
            b = blocks[ev.index]
            if d.type == "text_delta":
                b["text"] += d.text
            elif d.type == "thinking_delta":
                b["thinking"] += d.thinking
            elif d.type == "signature_delta":
                b["signature"] = d.signature
            elif d.type == "input_json_delta":
                b["partial"] = b.get("partial", "") + d.partial_json
        elif ev.type == "message_delta":
            stop = ev.delta.stop_reason
    return {"blocks": [blocks[i] for i in sorted(blocks)], "stop": stop}


@pytest.mark.parametrize("model", ["claude", "chat"])  # anthropic wire upstream, openai wire upstream
def test_anthropic_stream_with_thinking_replays_for_the_anthropic_sdk(gh, recorders, model):
    client = anthropic.Anthropic(base_url=gh, api_key=ALICE_KEY, max_retries=0)
    first, s1 = an_stream(client, model, "THINK a question")
    second, s2 = an_stream(client, model, "THINK a question")
    assert (s1, s2) == ("miss", "hit")
    assert second == first and first["stop"] == "end_turn"
    assert [b["type"] for b in first["blocks"]][-1] == "text"
    assert upstream_calls(*recorders) == 1


def test_anthropic_tool_call_replays(gh, recorders):
    client = anthropic.Anthropic(base_url=gh, api_key=ALICE_KEY, max_retries=0)
    tools = [{"name": "weather", "description": "w", "input_schema": {"type": "object",
                                                                   "properties": {"city": {"type": "string"}}}}]
    first, s1 = an_stream(client, "claude", "TOOL weather please", tools=tools)
    second, s2 = an_stream(client, "claude", "TOOL weather please", tools=tools)
    assert (s1, s2) == ("miss", "hit") and second == first and first["stop"] == "tool_use"
    tool = [b for b in second["blocks"] if b["type"] == "tool_use"][0]
    assert tool["name"] == "weather" and '"Paris"' in tool["partial"]
    unary = client.messages.create(model="claude", max_tokens=64, extra_body={"temperature": 0}, tools=tools,  # type: ignore[arg-type]
                                   messages=[{"role": "user", "content": "TOOL weather please"}])
    assert unary.stop_reason == "tool_use" and unary.content[-1].input == {"city": "Paris"}
    assert upstream_calls(*recorders) == 1


def test_the_same_question_in_two_dialects_shares_the_entry(gh, recorders):
    body = {"model": "chat", "messages": [{"role": "user", "content": "dialects"}], "temperature": 0,
            "max_tokens": 64}
    _, _, h = post(gh + "/v1/chat/completions", body, ALICE_KEY)
    assert h["x-gatehouse-cache"] == "miss"
    _, raw, h = post(gh + "/v1/messages", body, ALICE_KEY, {"anthropic-version": "2023-06-01"})
    assert h["x-gatehouse-cache"] == "hit" and b'"echo: dialects"' in raw
    assert upstream_calls(*recorders) == 1


@pytest.mark.parametrize("model", ["claude", "chat"])
def test_a_cut_stream_is_not_stored(gh, recorders, model):
    client = anthropic.Anthropic(base_url=gh, api_key=ALICE_KEY, max_retries=0)
    for _ in range(2):
        with pytest.raises(anthropic.APIError):
            an_stream(client, model, "one two three CUTSTREAM")
    assert upstream_calls(*recorders) == 2
