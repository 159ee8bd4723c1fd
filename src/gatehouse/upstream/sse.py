"""Incremental Server-Sent Events framing over a byte stream."""
from __future__ import annotations

from collections.abc import AsyncIterator


class SSEEvent:
    __slots__ = ("event", "data")

    def __init__(self, event: str | None, data: bytes):
        self.event = event
        self.data = data


def split_frames(buf: bytes) -> tuple[list[bytes], bytes]:
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    *frames, rest = buf.split(b"\n\n")
    return frames, rest


def parse_frame(frame: bytes) -> SSEEvent | None:
    event: str | None = None
    data: list[bytes] = []
    for line in frame.split(b"\n"):
        if not line or line[0:1] == b":":
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode()
    if not data and event is None:
        return None
    return SSEEvent(event, b"\n".join(data))


async def iter_frames(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Yield lists of complete raw frames (without their blank-line terminator) as they arrive."""
    buf = b""
    async for chunk in chunks:
        buf += chunk
        if b"\n\n" not in buf and b"\r\n\r\n" not in buf:
            continue
        frames, buf = split_frames(buf)
        if frames:
            yield frames
    if buf.strip():
        yield [buf.strip()]


async def iter_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[SSEEvent]:
    async for frames in iter_frames(chunks):
        for frame in frames:
            ev = parse_frame(frame)
            if ev is not None:
                yield ev
