"""Streams: canonical events -> Anthropic's exact SSE sequence (block indexes, opening and
closing blocks as the kind of output changes, ping, signature_delta, error frames);
OpenAI SSE -> Anthropic SSE end to end; Anthropic SSE -> canonical events; the pass-through
relay's usage reading and its refusal to end a truncated stream quietly."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gatehouse.errors import UpstreamError, UpstreamStatus
from gatehouse.types import (
    StreamEnd,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gatehouse.wire import openai_stream
from gatehouse.wire.anthropic_stream import MessageStreamEncoder, MessageStreamRelay, decode_stream, with_keepalive


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"], "the event name repeats the data's type"
        out.append((lines["event"], data))
    return out


def encode(events: list) -> list[tuple[str, dict[str, Any]]]:
    enc = MessageStreamEncoder("public", input_estimate=42)
    return parse_sse(b"".join(enc.encode(ev) for ev in events))


def shape(sse: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A compact picture of the sequence: event[index]:delta-type."""
    out = []
    for name, d in sse:
        if name == "content_block_start":
            out.append(f"start[{d['index']}]:{d['content_block']['type']}")
        elif name == "content_block_delta":
            out.append(f"delta[{d['index']}]:{d['delta']['type']}")
        elif name == "content_block_stop":
            out.append(f"stop[{d['index']}]")
        else:
            out.append(name)
    return out


END = StreamEnd("end", Usage(input_tokens=10, output_tokens=5))

# (case, canonical events, expected sequence)
SEQUENCES = [
    ("text", [StreamStart("c1", "up"), TextDelta("Hel"), TextDelta("lo"), END],
     ["message_start", "start[0]:text", "ping", "delta[0]:text_delta", "delta[0]:text_delta", "stop[0]",
      "message_delta", "message_stop"]),
    ("thinking then text", [StreamStart("c1", "up"), ThinkingDelta("hm"), ThinkingDelta(signature="sig"),
                            TextDelta("ok"), END],
     ["message_start", "start[0]:thinking", "ping", "delta[0]:thinking_delta", "delta[0]:signature_delta", "stop[0]",
      "start[1]:text", "delta[1]:text_delta", "stop[1]", "message_delta", "message_stop"]),
    ("text then parallel tools", [StreamStart("c1", "up"), TextDelta("Checking."),
                                  ToolCallStart(0, "call_a", "w"), ToolCallDelta(0, '{"city":'), ToolCallDelta(0, '"Paris"}'),
                                  ToolCallStart(1, "call_b", "w"), ToolCallDelta(1, '{"city":"Rome"}'),
                                  StreamEnd("tool_calls", Usage(output_tokens=9))],
     ["message_start", "start[0]:text", "ping", "delta[0]:text_delta", "stop[0]",
      "start[1]:tool_use", "delta[1]:input_json_delta", "delta[1]:input_json_delta", "stop[1]",
      "start[2]:tool_use", "delta[2]:input_json_delta", "stop[2]", "message_delta", "message_stop"]),
    ("empty deltas open nothing", [StreamStart("c1", "up"), TextDelta(""), ThinkingDelta(""), END],
     ["message_start", "message_delta", "message_stop"]),
    ("redacted thinking is a whole block", [StreamStart("c1", "up"), ThinkingDelta(redacted_data="xx"), TextDelta("a"), END],
     ["message_start", "start[0]:redacted_thinking", "ping", "stop[0]", "start[1]:text", "delta[1]:text_delta",
      "stop[1]", "message_delta", "message_stop"]),
]


@pytest.mark.parametrize("case,events,expected", SEQUENCES, ids=[c[0] for c in SEQUENCES])
def test_event_sequences(case: str, events: list, expected: list[str]) -> None:
    assert shape(encode(events)) == expected


def test_event_payloads() -> None:
    sse = encode([StreamStart("chatcmpl-9", "up"), ThinkingDelta("hm"), ThinkingDelta(signature="sig"),
                  ToolCallStart(0, "call.1", "get_weather"), ToolCallDelta(0, '{"city":"Paris"}'),
                  StreamEnd("tool_calls", Usage(input_tokens=50, output_tokens=9, cache_read_tokens=20))])
    start = sse[0][1]["message"]
    assert start["id"] == "msg_chatcmpl-9" and start["model"] == "public" and start["content"] == []
    assert start["stop_reason"] is None and start["usage"]["input_tokens"] == 42, "the estimate until the upstream tells"
    assert sse[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert sse[4][1]["delta"] == {"type": "signature_delta", "signature": "sig"}
    assert sse[6][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}
    assert sse[7][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'}
    delta = sse[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 30, "output_tokens": 9, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 20}


def test_stop_sequence_and_max_tokens_in_message_delta() -> None:
    sse = encode([StreamStart("c", "up"), TextDelta("a"), StreamEnd("stop_sequence", None, "END")])
    assert sse[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    sse = encode([StreamStart("c", "up"), TextDelta("a"), StreamEnd("length", None)])
    assert sse[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_error_frame_shape() -> None:
    enc = MessageStreamEncoder("public")
    assert parse_sse(enc.error("boom", "upstream_error")) == [
        ("error", {"type": "error", "error": {"type": "api_error", "message": "boom"}})]
    assert parse_sse(enc.error("slow", "timeout_error"))[0][1]["error"]["type"] == "timeout_error"
    assert parse_sse(enc.error("busy", "overloaded_error"))[0][1]["error"]["type"] == "overloaded_error"


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


def openai_sse(*chunks: dict) -> list[bytes]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up"}
    return [b"data: " + json.dumps({**base, **c}).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


async def test_openai_stream_as_anthropic_stream() -> None:
    raw = openai_sse(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]},
        {"choices": [{"index": 0, "delta": {"content": "ok"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                                            "function": {"name": "w", "arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}},
    )
    enc = MessageStreamEncoder("public")
    out = b"".join([enc.encode(ev) async for ev in openai_stream.decode_stream(_chunks(*raw), "m")])
    sse = parse_sse(out)
    assert shape(sse) == ["message_start", "start[0]:thinking", "ping", "delta[0]:thinking_delta", "stop[0]",
                          "start[1]:text", "delta[1]:text_delta", "stop[1]", "start[2]:tool_use",
                          "delta[2]:input_json_delta", "delta[2]:input_json_delta", "stop[2]", "message_delta",
                          "message_stop"]
    args = "".join(d["delta"]["partial_json"] for n, d in sse if n == "content_block_delta" and d["index"] == 2)
    assert json.loads(args) == {"a": 1}
    assert sse[-2][1]["usage"]["input_tokens"] == 11 and sse[-2][1]["usage"]["output_tokens"] == 6
    assert sse[-2][1]["delta"]["stop_reason"] == "tool_use"


def anthropic_sse(*events: dict) -> list[bytes]:
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]


MESSAGE_START = {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up", "content": [],
    "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 7, "cache_creation_input_tokens": 0}}}
FULL = [
    MESSAGE_START,
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "hi"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a":1}'}},
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 12}},
    {"type": "message_stop"},
]


async def test_anthropic_stream_to_canonical_events() -> None:
    events = [ev async for ev in decode_stream(_chunks(*anthropic_sse(*FULL)), "m")]
    assert events[0] == StreamStart("msg_1", "claude-up", events[0].usage)
    assert events[1:-1] == [ThinkingDelta("hm"), ThinkingDelta(signature="sig"), TextDelta("hi"),
                            ToolCallStart(0, "toolu_1", "w"), ToolCallDelta(0, '{"a":1}')]
    end = events[-1]
    assert end.stop_reason == "tool_calls"
    assert (end.usage.input_tokens, end.usage.cache_read_tokens, end.usage.output_tokens) == (12, 7, 12)


async def test_anthropic_stream_error_event_and_truncation_raise() -> None:
    err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamStatus) as info:
        [ev async for ev in decode_stream(_chunks(*anthropic_sse(MESSAGE_START, err)), "m")]
    assert info.value.status == 503 and info.value.type == "overloaded_error"
    with pytest.raises(UpstreamError) as info2:
        [ev async for ev in decode_stream(_chunks(*anthropic_sse(*FULL[:8])), "m")]
    assert info2.value.code == "upstream_disconnected"


async def test_relay_passes_bytes_and_reads_usage() -> None:
    raw = anthropic_sse(*FULL)
    relay = MessageStreamRelay("m")
    # split mid-frame to exercise reassembly
    joined = b"".join(raw)
    out = b"".join([c async for c in relay.relay(_chunks(joined[:100], joined[100:333], joined[333:]))])
    assert out == joined
    assert relay.finished and relay.usage == Usage(input_tokens=12, output_tokens=12, cache_read_tokens=7)
    assert relay.finish_reason == "tool_use"  # message_delta's stop_reason, for traces


async def test_relay_never_ends_a_truncated_stream_quietly() -> None:
    relay = MessageStreamRelay("m")
    got: list[bytes] = []
    with pytest.raises(UpstreamError):
        async for c in relay.relay(_chunks(*anthropic_sse(*FULL[:8]))):
            got.append(c)
    assert b"text_delta" in b"".join(got), "what arrived was relayed before the error"
    assert relay.usage is not None and relay.usage.input_tokens == 12


async def test_a_cut_relay_bills_the_relayed_delta_text_not_the_placeholder_output() -> None:
    """message_start says output_tokens 1; a stream cut before message_delta is billed for the
    text, thinking and tool-call JSON relayed (~4 characters a token), flagged estimated."""
    relay = MessageStreamRelay("m")
    with pytest.raises(UpstreamError):
        async for _ in relay.relay(_chunks(*anthropic_sse(*FULL[:12]))):
            pass
    assert relay.usage is not None and relay.usage.output_tokens == 1  # what message_start said
    chars = len("hm") + len("hi") + len('{"a":1}')  # (a signature is not generated text)
    assert relay.final_usage(99) == Usage(input_tokens=12, output_tokens=(chars + 3) // 4, cache_read_tokens=7,
                                          estimated=True)


async def test_a_whole_relay_bills_the_reported_usage() -> None:
    relay = MessageStreamRelay("m")
    async for _ in relay.relay(_chunks(*anthropic_sse(*FULL))):
        pass
    assert relay.final_usage(99) == Usage(input_tokens=12, output_tokens=12, cache_read_tokens=7)


async def test_a_relay_cut_before_message_start_bills_the_prompt_estimate() -> None:
    relay = MessageStreamRelay("m")
    with pytest.raises(UpstreamError):
        async for _ in relay.relay(_chunks(b"event: ping\ndata: {}\n\n")):
            pass
    assert relay.final_usage(99) == Usage(input_tokens=99, estimated=True)


async def test_delta_text_that_contains_a_marker_is_still_counted() -> None:
    text = 'say "message_delta" and "type":"error"'
    delta = {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": text}}
    relay = MessageStreamRelay("m")
    with pytest.raises(UpstreamError):
        async for _ in relay.relay(_chunks(*anthropic_sse(MESSAGE_START, FULL[6], delta))):
            pass
    assert relay.delta_chars == len(text)


async def _slow_events(closed: list[str]) -> AsyncIterator:
    try:
        yield StreamStart("c", "up")
        yield TextDelta("a")
        await asyncio.sleep(0.5)  # silence, 50 keepalive intervals long
        yield TextDelta("b")
        await asyncio.sleep(30)  # only ever cut short by the client going away
        yield TextDelta("never")
    finally:
        closed.append("inner")


async def test_keepalive_pings_during_silence_and_closes_cleanly() -> None:
    closed: list[str] = []
    enc = MessageStreamEncoder("public")
    wrapped = with_keepalive(_slow_events(closed), interval=0.01)
    out = b""
    async for ev in wrapped:
        out += enc.encode(ev)
        if isinstance(ev, TextDelta) and ev.text == "b":
            break
    await wrapped.aclose()  # the client went away while the upstream was silent
    names = shape(parse_sse(out))
    assert names[:4] == ["message_start", "start[0]:text", "ping", "delta[0]:text_delta"]
    assert names.count("ping") > 1 and names[-1] == "delta[0]:text_delta", "pings between deltas, block stays open"
    assert closed == ["inner"], "the upstream stream was closed"


async def test_keepalive_waits_for_the_first_event_and_passes_errors() -> None:
    async def failing():
        await asyncio.sleep(0.05)
        yield StreamStart("c", "up")
        raise UpstreamError("upstream gone")
        yield TextDelta("x")  # pragma: no cover

    got = []
    with pytest.raises(UpstreamError):
        async for ev in with_keepalive(failing(), interval=0.001):
            got.append(ev)
    assert got[0] == StreamStart("c", "up"), "no keepalive before the first event (failover is still possible)"
