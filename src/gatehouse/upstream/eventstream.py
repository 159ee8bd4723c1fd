"""Incremental AWS event-stream decoding (the binary framing of Bedrock's ConverseStream).

botocore's EventStreamBuffer does the framing and both CRC checks; this adapts it to an async
byte stream. Frames are yielded as soon as their last byte arrives, whatever the chunking.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from botocore.eventstream import EventStreamBuffer, ParserError

from gatehouse.errors import UpstreamError


class EventMessage:
    __slots__ = ("message_type", "event_type", "headers", "payload")

    def __init__(self, headers: dict[str, Any], payload: bytes):
        self.headers = headers
        self.payload = payload
        self.message_type: str = headers.get(":message-type", "event")
        # events name themselves in :event-type, exceptions in :exception-type, errors in :error-code
        self.event_type: str = (headers.get(":event-type") or headers.get(":exception-type")
                                or headers.get(":error-code") or "")


async def iter_messages(chunks: AsyncIterator[bytes], model: str) -> AsyncIterator[EventMessage]:
    buffer = EventStreamBuffer()
    pending = 0
    async for chunk in chunks:
        buffer.add_data(chunk)
        pending += len(chunk)
        try:
            for message in buffer:
                pending -= message.prelude.total_length
                yield EventMessage(message.headers, message.payload)
        except ParserError:  # CRC mismatch or impossible lengths: the stream cannot be trusted
            raise UpstreamError(f"The upstream for model '{model}' sent a corrupt event stream.",
                                code="upstream_malformed") from None
    if pending:
        raise UpstreamError(f"The upstream for model '{model}' ended the stream in the middle of a frame.",
                            code="upstream_disconnected")
