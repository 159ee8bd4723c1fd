"""Table-driven tests of the response mappings: an OpenAI-compatible upstream's reply as an
Anthropic client sees it, and Anthropic's reply as an OpenAI client sees it (stop reasons,
tool calls, reasoning/thinking, usage with cache tokens)."""
from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from gatehouse.wire import anthropic_response as wa, openai_response as wr


def openai_reply_as_anthropic(choice: dict[str, Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"id": "chatcmpl-1", "model": "up", "choices": [{"index": 0, **choice}]}
    if usage is not None:
        body["usage"] = usage
    canonical = wr.response_to_canonical(wr.response_decoder.decode(json.dumps(body)), "m")
    return wa.render_response(canonical, "public")


def anthropic_reply_as_openai(message: dict[str, Any]) -> dict[str, Any]:
    body = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
            "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 4}, **message}
    canonical = wa.response_to_canonical(wa.response_decoder.decode(json.dumps(body)), "m")
    return wr.render_response(canonical, "public")


# (case, OpenAI choice, expected stop_reason, expected stop_sequence)
OPENAI_STOPS = [
    ("stop", {"message": {"content": "hi"}, "finish_reason": "stop"}, "end_turn", None),
    ("length", {"message": {"content": "hi"}, "finish_reason": "length"}, "max_tokens", None),
    ("tool_calls", {"message": {"content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"},
     "tool_use", None),
    ("vLLM names the stop string", {"message": {"content": "hi"}, "finish_reason": "stop", "stop_reason": "END"},
     "stop_sequence", "END"),
    ("vLLM stop token id is a natural end", {"message": {"content": "hi"}, "finish_reason": "stop", "stop_reason": 151645},
     "end_turn", None),
    ("content_filter", {"message": {"content": ""}, "finish_reason": "content_filter"}, "refusal", None),
    ("missing finish_reason", {"message": {"content": "hi"}}, "end_turn", None),
]


@pytest.mark.parametrize("case,choice,stop,seq", OPENAI_STOPS, ids=[c[0] for c in OPENAI_STOPS])
def test_openai_stop_reasons_as_anthropic(case: str, choice: dict, stop: str, seq: str | None) -> None:
    out = openai_reply_as_anthropic(choice)
    assert (out["stop_reason"], out["stop_sequence"]) == (stop, seq)


def test_openai_reply_shape_as_anthropic_message() -> None:
    out = openai_reply_as_anthropic(
        {"message": {"content": "answer", "reasoning_content": "think", "tool_calls": [
            {"id": "call:1/x", "type": "function", "function": {"name": "f", "arguments": '{"a": [1, 2]}'}},
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}}]},
         "finish_reason": "tool_calls"},
        {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107, "prompt_tokens_details": {"cached_tokens": 40}})
    assert out["id"] == "msg_chatcmpl-1" and out["type"] == "message" and out["role"] == "assistant"
    assert out["model"] == "public"
    assert out["content"] == [
        {"type": "thinking", "thinking": "think", "signature": ""},
        {"type": "text", "text": "answer"},
        {"type": "tool_use", "id": "call_1_x", "name": "f", "input": {"a": [1, 2]}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
    ]
    assert out["usage"] == {"input_tokens": 60, "output_tokens": 7, "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 40}


# (case, Anthropic stop_reason, expected finish_reason)
ANTHROPIC_STOPS = [
    ("end_turn", "end_turn", "stop"), ("max_tokens", "max_tokens", "length"), ("stop_sequence", "stop_sequence", "stop"),
    ("tool_use", "tool_use", "tool_calls"), ("refusal", "refusal", "content_filter"), ("pause_turn", "pause_turn", "stop"),
    ("context window", "model_context_window_exceeded", "length"),
]


@pytest.mark.parametrize("case,stop,finish", ANTHROPIC_STOPS, ids=[c[0] for c in ANTHROPIC_STOPS])
def test_anthropic_stop_reasons_as_openai(case: str, stop: str, finish: str) -> None:
    out = anthropic_reply_as_openai({"content": [{"type": "text", "text": "x"}], "stop_reason": stop})
    assert out["choices"][0]["finish_reason"] == finish


def test_anthropic_reply_shape_as_openai_completion() -> None:
    out = anthropic_reply_as_openai({
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {"city": "Rome"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 5}})
    msg = out["choices"][0]["message"]
    assert msg["content"] == "Let me check." and msg["reasoning_content"] == "hmm"
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in msg["tool_calls"]] == [
        ("toolu_1", "w", {"city": "Paris"}), ("toolu_2", "w", {"city": "Rome"})]
    assert out["usage"] == {"prompt_tokens": 45, "completion_tokens": 7, "total_tokens": 52,
                            "prompt_tokens_details": {"cached_tokens": 30}}


def test_anthropic_usage_round_trips_through_canonical() -> None:
    wire_usage = {"input_tokens": 12, "output_tokens": 3, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 50}
    canonical = msgspec.convert(wire_usage, wa.AUsage).canonical()
    assert (canonical.input_tokens, canonical.cache_write_tokens, canonical.cache_read_tokens) == (162, 100, 50)
    assert wa.usage_out(canonical) == wire_usage


def test_signed_and_redacted_thinking_survive_a_round_trip() -> None:
    message = {"content": [{"type": "thinking", "thinking": "t", "signature": "sig"},
                           {"type": "redacted_thinking", "data": "opaque"}, {"type": "text", "text": "x"}],
               "stop_reason": "end_turn", "id": "msg_9", "model": "c", "usage": {"input_tokens": 1, "output_tokens": 1}}
    canonical = wa.response_to_canonical(wa.response_decoder.decode(json.dumps(message)), "m")
    assert wa.render_response(canonical, "m")["content"] == message["content"]
