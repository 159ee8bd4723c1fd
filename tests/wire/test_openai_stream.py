"""The pass-through relay of OpenAI SSE: frames go out byte for byte, usage and the finish are
read on the way, the usage-only chunk is dropped for a client that did not ask for it. Fed
with compact JSON (as OpenAI and vLLM send it, the relay's fast path) and spaced JSON (as
Python's json.dumps writes it, the general path)."""
from __future__ import annotations

import json

import pytest

from gatehouse.types import Usage
from gatehouse.wire.openai_stream import PassthroughRelay


def _dumps(obj: dict, compact: bool) -> bytes:
    return json.dumps(obj, separators=(",", ":") if compact else None).encode()


def _frame(obj: dict, compact: bool) -> bytes:
    return b"data: " + _dumps(obj, compact) + b"\n\n"


def _chunk(content: str | None = None, finish: str | None = None, usage: dict | None = None,
           choices: bool = True) -> dict:
    c = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}
    if choices:
        delta = {"content": content} if content is not None else {}
        c["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage is not None:
        c["usage"] = usage
    return c


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def _stream(compact: bool) -> list[bytes]:
    return [_frame(_chunk("Hel"), compact), _frame(_chunk("lo"), compact), _frame(_chunk("!"), compact),
            _frame(_chunk(finish="stop"), compact), _frame(_chunk(usage=USAGE, choices=False), compact),
            b"data: [DONE]\n\n"]


@pytest.mark.parametrize("compact", [True, False])
def test_ordinary_frames_pass_byte_for_byte_and_the_unasked_usage_chunk_is_dropped(compact):
    relay = PassthroughRelay(client_wants_usage=False)
    frames = _stream(compact)
    out = b"".join(relay.feed(f) for f in frames) + relay.flush()
    assert out == b"".join(frames[:4]) + frames[5]  # everything but the usage-only chunk
    assert relay.frames == 3  # content frames: the token estimate if usage never came
    assert relay.finished
    assert (relay.usage.input_tokens, relay.usage.output_tokens) == (7, 3)


@pytest.mark.parametrize("compact", [True, False])
def test_a_client_that_asked_for_usage_gets_every_frame(compact):
    relay = PassthroughRelay(client_wants_usage=True)
    frames = _stream(compact)
    out = b"".join(relay.feed(f) for f in frames) + relay.flush()
    assert out == b"".join(frames)
    assert relay.usage.output_tokens == 3


@pytest.mark.parametrize("compact", [True, False])
def test_frames_arriving_together_or_split_anywhere_give_the_same_result(compact):
    frames = _stream(compact)
    whole = b"".join(frames)
    for cut in (1, 17, len(frames[0]), len(frames[0]) + len(frames[1]) - 1, len(whole) - 20):
        relay = PassthroughRelay(client_wants_usage=False)
        out = relay.feed(whole[:cut]) + relay.feed(whole[cut:]) + relay.flush()
        assert out == b"".join(frames[:4]) + frames[5], cut
        assert relay.usage.output_tokens == 3 and relay.finished and relay.frames == 3


def test_usage_on_content_chunks_is_read_even_when_every_frame_looks_ordinary():
    """Some servers put a running usage object on every chunk: those chunks must be decoded."""
    relay = PassthroughRelay(client_wants_usage=False)
    f = _frame(_chunk("hi", usage=USAGE), compact=True)
    assert relay.feed(f) == f
    assert relay.usage is not None and relay.usage.output_tokens == 3


def test_a_finish_in_a_batch_of_ordinary_frames_is_seen():
    relay = PassthroughRelay(client_wants_usage=False)
    two = _frame(_chunk("x"), True) + _frame(_chunk("y"), True)
    assert relay.feed(two) == two and relay.frames == 2 and relay.finish_reason is None
    relay = PassthroughRelay(client_wants_usage=False)
    data = _frame(_chunk("a"), True) + _frame(_chunk("b"), True) + _frame(_chunk(finish="length"), True)
    assert relay.feed(data) == data
    assert relay.finish_reason == "length" and relay.frames == 2
    assert not relay.finished, "only data: [DONE] ends an OpenAI stream"


def test_an_escaped_marker_inside_content_text_is_just_text():
    """A model writing `"finish_reason":null` or `"usage":{` as text: escaped quotes, no match."""
    relay = PassthroughRelay(client_wants_usage=False)
    f = _frame(_chunk('{"finish_reason":null,"usage":{"x":1}}'), compact=True)
    assert relay.feed(f) == f
    assert relay.usage is None and not relay.finished and relay.frames == 1


def test_final_usage_is_the_reported_one_or_one_token_per_content_frame():
    relay = PassthroughRelay(client_wants_usage=False)
    frames = _stream(compact=True)
    relay.feed(b"".join(frames[:3]))  # cut after three content frames
    assert not relay.finished
    assert relay.final_usage(11) == Usage(input_tokens=11, output_tokens=3, estimated=True)
    relay.feed(b"".join(frames[3:]))
    assert relay.finished and relay.final_usage(11) == Usage(input_tokens=7, output_tokens=3)
