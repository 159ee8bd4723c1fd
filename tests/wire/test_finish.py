"""Finish reasons for traces (wire/finish.py): read from a forwarded answer in each dialect, in
the upstream's own words, or named from a translated answer's canonical stop reason."""
from __future__ import annotations

import json

import pytest

from gatehouse.wire import finish


@pytest.mark.parametrize(("dialect", "answer", "expected"), [
    ("openai", {"id": "c", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                        "finish_reason": "stop"}], "usage": {"prompt_tokens": 1}}, ("stop",)),
    ("openai", {"choices": [{"finish_reason": "length"}, {"finish_reason": "tool_calls"}]}, ("length", "tool_calls")),
    ("openai", {"choices": [{"text": "a", "finish_reason": None}]}, None),
    ("anthropic", {"type": "message", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn"},
     ("end_turn",)),
    ("anthropic", {"type": "message", "stop_reason": "max_tokens"}, ("max_tokens",)),
    ("ollama", {"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": True,
                "done_reason": "stop"}, ("stop",)),
    ("openai-responses", {"object": "response", "status": "completed", "output": []}, ("completed",)),
    ("openai-responses", {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}},
     ("max_output_tokens",)),
])
def test_a_forwarded_answer_says_why_it_stopped(dialect, answer, expected):
    assert finish.forwarded(dialect, json.dumps(answer).encode()) == expected


@pytest.mark.parametrize("body", [b"", b"not json", b'{"choices": "oops"}', b"[" * 10_000])
def test_an_unreadable_answer_has_none(body):
    assert finish.forwarded("openai", body) is None


def test_an_unknown_dialect_has_none():
    assert finish.forwarded("bedrock", b'{"stopReason": "end_turn"}') is None


def test_canonical_stop_reasons_in_the_openai_names():
    assert finish.canonical("end") == ("stop",) and finish.canonical("stop_sequence") == ("stop",)
    assert finish.canonical("length") == ("length",) and finish.canonical("tool_calls") == ("tool_calls",)
    assert finish.canonical("content_filter") == ("content_filter",) and finish.canonical(None) is None
