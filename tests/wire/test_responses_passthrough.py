"""The Responses pass-through relay: bytes relayed as they came (model name swapped) however
the stream is cut into chunks, usage read from the terminal event only; the config refuses
`responses_api` on providers that cannot speak it."""
from __future__ import annotations

import json

import pytest

from gatehouse.config import ConfigError, from_mapping
from gatehouse.types import Usage
from gatehouse.wire.model_swap import ModelSwap
from gatehouse.wire.responses_passthrough import ResponsesRelay, body_usage

USAGE = {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 7,
         "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 18}


def frame(kind: str, **data: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


STREAM = (frame("response.created", response={"model": "up-9", "usage": None})
          + frame("response.output_text.delta", delta="the words response.completed are only text")
          + frame("response.completed", response={"model": "up-9", "usage": USAGE}))


@pytest.mark.parametrize("size", [1, 7, 64, len(STREAM)])
def test_relayed_unchanged_but_the_model_with_usage_from_the_end(size: int) -> None:
    relay = ResponsesRelay(ModelSwap("up-9", "gpt"))
    out = b"".join(relay.feed(STREAM[i:i + size]) for i in range(0, len(STREAM), size)) + relay.flush()
    assert out == STREAM.replace(b'"model": "up-9"', b'"model": "gpt"')
    assert relay.finished and relay.usage == Usage(11, 7, cache_read_tokens=4, reasoning_tokens=3)
    assert relay.finish_reason == "completed"  # for traces


def test_an_incomplete_stream_says_why() -> None:
    relay = ResponsesRelay()
    relay.feed(frame("response.incomplete", response={"usage": USAGE,
                                                       "incomplete_details": {"reason": "max_output_tokens"}}))
    assert relay.finished and relay.finish_reason == "max_output_tokens"


def test_a_stream_without_its_terminal_event_is_not_finished() -> None:
    relay = ResponsesRelay()
    relay.feed(STREAM[:STREAM.index(b"event: response.completed")])
    assert not relay.finished and relay.usage is None and relay.frames == 2 and relay.finish_reason is None


def test_body_usage() -> None:
    assert body_usage(json.dumps({"id": "r", "usage": USAGE}).encode()) == Usage(11, 7, 4, 0, 3)
    assert body_usage(b'{"id": "r"}') is None and body_usage(b"not json") is None


def test_responses_api_only_on_openai_providers() -> None:
    with pytest.raises(ConfigError, match=r"providers\.claude\.responses_api"):
        from_mapping({"providers": {"claude": {"type": "anthropic", "api_key": "k", "responses_api": True}}}, env={})
    from_mapping({"providers": {"oai": {"type": "openai", "responses_api": True}}}, env={})
