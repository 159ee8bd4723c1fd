"""Property-based tests of every decoder that reads bytes from outside: the request decoders of
each dialect (OpenAI chat/completions/embeddings, Anthropic messages/count_tokens, Ollama
chat/generate/embed: parse, screen, validate, map to the canonical request and back out to
each upstream's format) and the upstream stream decoders and relays (SSE, NDJSON, AWS
event-stream). Whatever the input, the outcome is a result or a GatehouseError (a 4xx/5xx the
gateway renders) - never another exception (a 500 with a stack behind it) and never a hang.

Inputs are JSON shaped like each dialect's bodies, with any field swapped for arbitrary JSON,
plus raw bytes; the examples that once crashed are kept below as regression cases.
Runtime is kept to a few seconds (max_examples)."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gatehouse.api.ollama import _model_name
from gatehouse.errors import GatehouseError
from gatehouse.metering.tokens import estimate_request, estimate_text
from gatehouse.wire import (
    anthropic as wa,
    anthropic_stream,
    bedrock_stream,
    gemini_stream,
    ollama as wo,
    ollama_stream,
    openai as woa,
    openai_stream,
)
from gatehouse.wire.bedrock import converse_body
from gatehouse.wire.common import convert, decode_json_object
from gatehouse.wire.gemini import generate_body as gemini_body
from gatehouse.wire.screen import screen_body
from tests.upstreams.bedrock_wire import event_frame, exception_frame, frame

# Per test: 16 of them, so the whole module runs in a few seconds.
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# -- request decoders -------------------------------------------------------------------------------

KEYS = ["model", "messages", "role", "content", "type", "text", "tool_calls", "function", "name", "arguments",
        "input", "id", "image_url", "url", "source", "data", "media_type", "tool_use_id", "tool_call_id",
        "properties", "parameters", "input_schema", "schema", "json_schema", "response_format", "options",
        "num_predict", "images", "tools", "tool_choice", "max_tokens", "temperature", "stream", "stop",
        "thinking", "budget_tokens", "system", "prompt", "suffix", "format", "think", "n", "seed", "top_k",
        "headers", "api_base", "metadata", "reasoning_content", "signature", "is_error", "cache_control",
        "detail", "file_id", "document", "tool_result", "tool_use", "image", "auto", "any", "none"]
SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12) | st.sampled_from(KEYS))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5), max_leaves=25)


def _like(example_: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A valid body with some of its fields (or their insides) swapped for arbitrary JSON, and
    arbitrary fields added."""
    def mutate(value: Any) -> st.SearchStrategy[Any]:
        if isinstance(value, dict):
            return st.fixed_dictionaries({k: mutate(v) for k, v in value.items()}) | JSON
        if isinstance(value, list):
            return st.lists(st.one_of(*(mutate(v) for v in value)), max_size=4) | JSON
        return st.just(value) | SCALARS
    extra = st.dictionaries(st.sampled_from(KEYS), JSON, max_size=3)
    return st.builds(lambda body, more: {**more, **body} if isinstance(body, dict) else body, mutate(example_), extra)


MSGS = [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "t"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                                                                 "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"}]
A_MSGS = [{"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image", "source": {
    "type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "h", "signature": "s"},
                                      {"type": "tool_use", "id": "u", "name": "f", "input": {"a": 1}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "u", "content": "r", "is_error": False}]}]
O_MSGS = [{"role": "system", "content": "s"}, {"role": "user", "content": "u", "images": ["iVBOR"]},
          {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
          {"role": "tool", "content": "r", "tool_name": "f"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def _openai_chat(obj: dict[str, Any]) -> None:
    screen_body(obj, woa.CHAT_BODY)
    req = woa.parse_chat(obj)
    canonical = woa.to_canonical(req, {k: v for k, v in obj.items() if k not in woa.CHAT_FIELDS})
    _egress(canonical)


def _openai_completion(obj: dict[str, Any]) -> None:
    screen_body(obj, woa.COMPLETION_BODY)
    c = woa.completion_to_canonical(convert(obj, woa.OACompletionRequest))
    estimate_text(c.prompt)


def _openai_embedding(obj: dict[str, Any]) -> None:
    screen_body(obj, woa.EMBEDDING_BODY)
    woa.embedding_to_canonical(convert(obj, woa.OAEmbeddingRequest))


def _anthropic(obj: dict[str, Any], counting: bool = False) -> None:
    screen_body(obj, wa.BODY)
    req = wa.parse_request(obj, counting=counting)
    _egress(wa.to_canonical(req, wa.extra_fields(obj)))


def _ollama_chat(obj: dict[str, Any]) -> None:
    screen_body(obj, wo.CHAT_BODY)
    _model_name(obj)
    _egress(wo.chat_to_canonical(wo.parse_chat(obj), obj))


def _ollama_generate(obj: dict[str, Any]) -> None:
    screen_body(obj, wo.GENERATE_BODY)
    _model_name(obj)
    req = convert(obj, wo.OLGenerateRequest)
    wo.generate_to_completion(req)
    _egress(wo.generate_to_chat(req, obj))


def _ollama_embed(obj: dict[str, Any]) -> None:
    screen_body(obj, wo.EMBED_BODY)
    _model_name(obj)
    wo.embed_to_canonical(convert(obj, wo.OLEmbedRequest))


def _egress(canonical: Any) -> None:
    """The canonical request as each upstream would be sent it."""
    estimate_request(canonical)
    for build in (lambda: woa.from_canonical(canonical, "up"), lambda: wa.from_canonical(canonical, "up"),
                  lambda: wo.chat_body(canonical, "up", {}, None, True),
                  lambda: converse_body(canonical, "anthropic.claude-x", {}, None, True),
                  lambda: gemini_body(canonical, {})):
        try:
            json.dumps(build(), default=str)
        except GatehouseError:
            pass


DECODERS: dict[str, tuple[Callable[[dict[str, Any]], None], dict[str, Any]]] = {
    "openai.chat": (_openai_chat, {"model": "m", "messages": MSGS, "tools": [TOOL], "tool_choice": "auto",
                                   "max_tokens": 5, "stop": ["x"], "response_format": {"type": "json_object"}}),
    "openai.completions": (_openai_completion, {"model": "m", "prompt": "p", "suffix": "s", "max_tokens": 5}),
    "openai.embeddings": (_openai_embedding, {"model": "m", "input": ["a", "b"], "dimensions": 8}),
    "anthropic.messages": (_anthropic, {"model": "m", "max_tokens": 5, "system": "s", "messages": A_MSGS,
                                        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
                                        "tool_choice": {"type": "auto"}, "thinking": {"type": "enabled",
                                                                                      "budget_tokens": 1024}}),
    "anthropic.count_tokens": (lambda o: _anthropic(o, counting=True), {"model": "m", "messages": A_MSGS}),
    "ollama.chat": (_ollama_chat, {"model": "m", "messages": O_MSGS, "tools": [TOOL], "format": "json",
                                   "options": {"num_predict": 5, "stop": ["x"]}, "think": True}),
    "ollama.generate": (_ollama_generate, {"model": "m", "prompt": "p", "system": "s", "images": ["iVBOR"],
                                           "options": {"temperature": 0.5}}),
    "ollama.embed": (_ollama_embed, {"model": "m", "input": ["a"], "options": {}}),
}


def ingress(name: str, raw: bytes) -> None:
    """What a route does with a body before any upstream is involved: GatehouseError or nothing."""
    decode, _ = DECODERS[name]
    try:
        decode(decode_json_object(raw))
    except GatehouseError:
        pass


@pytest.mark.parametrize("name", list(DECODERS))
def test_request_decoders_never_fail_other_than_with_a_gatehouse_error(name):
    @FUZZ
    @given(body=_like(DECODERS[name][1]))
    def check(body: Any) -> None:
        ingress(name, json.dumps(body).encode())

    check()


@FUZZ
@given(name=st.sampled_from(list(DECODERS)), raw=st.binary(max_size=200)
       | st.builds(lambda b, i, junk: b[:i] + junk + b[i:],
                   st.sampled_from([json.dumps(v[1]).encode() for v in DECODERS.values()]),
                   st.integers(0, 400), st.binary(min_size=1, max_size=8)))
def test_request_decoders_take_any_bytes(name, raw):
    ingress(name, raw)


REGRESSIONS = [  # inputs that once gave a 500
    ("openai.chat", b'{"model":"m","messages":[{"role":"user","content":"x"}],"seed":' + b"9" * 30 + b"}"),
    ("openai.chat", b'{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("ollama.chat", b'{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":'
                    + b"[" * 900 + b"]" * 900 + b"}}]}]}"),
]


@pytest.mark.parametrize("name,raw", REGRESSIONS)
def test_request_regressions(name, raw):
    ingress(name, raw)


# -- upstream stream decoders and relays -------------------------------------------------------------

def _sse(events: list[Any]) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if b > a]


async def _feed(parts: list[bytes]) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


@pytest.fixture(scope="module")
def loop() -> Any:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def consume(loop: asyncio.AbstractEventLoop, make: Callable[[AsyncIterator[bytes]], AsyncIterator[Any]],
            parts: list[bytes]) -> None:
    async def run() -> None:
        async for _ in make(_feed(parts)):
            pass

    try:
        loop.run_until_complete(asyncio.wait_for(run(), 2))  # a hang is a TimeoutError: it fails the test
    except GatehouseError:
        pass


STREAMS: dict[str, Callable[[AsyncIterator[bytes]], AsyncIterator[Any]]] = {
    "openai": lambda c: openai_stream.decode_stream(c, "m"),
    "openai.relay": lambda c: openai_stream.PassthroughRelay(True).relay(c),
    "anthropic": lambda c: anthropic_stream.decode_stream(c, "m"),
    "anthropic.relay": lambda c: anthropic_stream.MessageStreamRelay("m").relay(c),
    "gemini": lambda c: gemini_stream.decode_stream(c, "r", "m"),
    "ollama": lambda c: ollama_stream.decode_stream(c, "r", "m"),
    "ollama.relay": lambda c: ollama_stream.NDJSONRelay().relay(c),
    "bedrock": lambda c: bedrock_stream.decode_stream(c, "r", "m", "bedrock:InvokeModel"),
}
OA_CHUNK = {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"content": "hi", "tool_calls": [
    {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
A_EVENTS = [{"type": "message_start", "message": {"id": "m", "model": "m", "usage": {"input_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "u", "name": "f"}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}},
            {"type": "message_stop"}]
G_CHUNK = {"candidates": [{"content": {"parts": [{"text": "hi"}, {"functionCall": {"name": "f", "args": {}}}]},
                           "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 1}}
O_LINE = {"model": "m", "message": {"role": "assistant", "content": "hi", "tool_calls": [
    {"function": {"name": "f", "arguments": {}}}]}, "done": True, "done_reason": "stop", "eval_count": 1}
B_EVENTS = [("messageStart", {"role": "assistant"}),
            ("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}),
            ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{}"}}}),
            ("messageStop", {"stopReason": "end_turn"}), ("metadata", {"usage": {"inputTokens": 1, "outputTokens": 1}})]
CUTS = st.lists(st.integers(0, 10_000), max_size=6)


def _stream_bytes(kind: str) -> st.SearchStrategy[bytes]:
    if kind.startswith("openai"):
        return st.lists(_like(OA_CHUNK) | st.just(b"[DONE]") | st.binary(max_size=20), max_size=5).map(_sse)
    if kind.startswith("anthropic"):
        return st.lists(st.one_of(*(_like(e) for e in A_EVENTS)), max_size=6).map(_sse)
    if kind == "gemini":
        return st.lists(_like(G_CHUNK), max_size=4).map(_sse)
    if kind.startswith("ollama"):
        return st.lists(_like(O_LINE).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=20),
                        max_size=4).map(lambda lines: b"\n".join(lines) + b"\n")
    frames = st.one_of(*(_like(d).map(lambda v, t=t: event_frame(t, v) if isinstance(v, dict)
                                      else frame({":event-type": t, ":message-type": "event"}, json.dumps(v).encode()))
                         for t, d in B_EVENTS),
                       _like({"message": "m"}).map(lambda v: exception_frame("throttlingException", v)),
                       st.binary(max_size=30))
    return st.lists(frames, max_size=6).map(b"".join)


@pytest.mark.parametrize("kind", list(STREAMS))
def test_stream_decoders_never_fail_other_than_with_a_gatehouse_error(loop, kind):
    @FUZZ
    @given(data=_stream_bytes(kind) | st.binary(max_size=300), cuts=CUTS)
    def check(data: bytes, cuts: list[int]) -> None:
        consume(loop, STREAMS[kind], _chunked(data, cuts))

    check()


STREAM_REGRESSIONS = [  # inputs that once escaped as an unhandled exception
    b'{"message":' * 2000 + b"\n",  # RecursionError from the NDJSON decoder
    b'{"unknown":' + b"[" * 3000 + b"\n",  # (skipping an unknown field recurses too)
    b'data: {"unknown":' + b"[" * 3000 + b"\n\n",  # ... and from the SSE ones
    b"\x00\x00\x00\x10\x00\x00\x00\x00" + b"\xff" * 8,  # an event-stream prelude with a bad CRC
]


@pytest.mark.parametrize("kind", list(STREAMS))
@pytest.mark.parametrize("data", STREAM_REGRESSIONS)
def test_stream_regressions(loop, kind, data):
    consume(loop, STREAMS[kind], [data])
