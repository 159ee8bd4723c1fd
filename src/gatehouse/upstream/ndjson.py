"""Incremental newline-delimited JSON framing (Ollama's native streaming format)."""
from __future__ import annotations

from collections.abc import AsyncIterator


async def iter_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield each complete non-empty line (without its newline) as soon as it arrives."""
    buf = b""
    async for chunk in chunks:
        buf += chunk
        if b"\n" not in chunk:
            continue
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if buf.strip():
        yield buf
