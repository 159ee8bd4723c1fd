"""Stream framing: AWS event-stream (with its CRCs) and NDJSON, fed in arbitrary chunkings."""
from __future__ import annotations

import json
import zlib

import pytest

from gatehouse.errors import UpstreamError
from gatehouse.upstream.eventstream import iter_messages
from gatehouse.upstream.ndjson import iter_lines
from tests.upstreams.bedrock_wire import event_frame, exception_frame


async def chunked(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def collect(aiter) -> list:
    return [x async for x in aiter]


FRAMES = (event_frame("messageStart", {"role": "assistant"})
          + event_frame("contentBlockDelta", {"delta": {"text": "hé"}, "contentBlockIndex": 0})
          + exception_frame("throttlingException", {"message": "slow down"}))


@pytest.mark.parametrize("size", [1, 7, 64, len(FRAMES)])
async def test_event_stream_frames_decode_whatever_the_chunking(size):
    messages = await collect(iter_messages(chunked(FRAMES, size), "m"))
    assert [(m.message_type, m.event_type) for m in messages] == [
        ("event", "messageStart"), ("event", "contentBlockDelta"), ("exception", "throttlingException")]
    assert json.loads(messages[1].payload)["delta"]["text"] == "hé"


async def test_event_stream_frame_yielded_as_soon_as_complete():
    first = event_frame("messageStart", {"role": "assistant"})

    async def slow():
        yield first
        raise AssertionError("the decoder must not wait for more bytes before yielding a whole frame")

    gen = iter_messages(slow(), "m")
    assert (await gen.__anext__()).event_type == "messageStart"


@pytest.mark.parametrize("where", ["prelude", "payload"])
async def test_event_stream_crc_mismatch_is_an_upstream_error(where):
    frame = bytearray(event_frame("contentBlockDelta", {"delta": {"text": "x"}}))
    frame[9 if where == "prelude" else len(frame) - 10] ^= 0xFF
    with pytest.raises(UpstreamError, match="corrupt event stream") as info:
        await collect(iter_messages(chunked(bytes(frame), 5), "m"))
    assert info.value.status == 502


async def test_event_stream_truncated_frame_is_an_upstream_error():
    frame = event_frame("messageStop", {"stopReason": "end_turn"})
    with pytest.raises(UpstreamError, match="middle of a frame"):
        await collect(iter_messages(chunked(frame[:-3], 4), "m"))


def test_test_frames_really_carry_crcs():
    frame = event_frame("messageStart", {"role": "assistant"})
    assert int.from_bytes(frame[-4:], "big") == zlib.crc32(frame[:-4])


async def test_ndjson_lines_across_chunks():
    data = b'{"a": 1}\n\n{"b":\n'[:-1] + b' 2}\n{"c": 3}'
    lines = await collect(iter_lines(chunked(data, 3)))
    assert [json.loads(x) for x in lines] == [{"a": 1}, {"b": 2}, {"c": 3}]
