"""A raw-socket upstream for cut and truncated streams: the faults an HTTP framework would not
let a test server commit. It speaks just enough HTTP/1.1 (one request per connection, every
response `Connection: close`) and the three stream dialects:

  POST /v1/chat/completions  OpenAI SSE      POST /v1/messages  Anthropic SSE
  POST /api/chat             Ollama NDJSON

Magic words in the request body choose the behaviour:

  EARLYCLOSE  a close-delimited body (no Content-Length, no chunked framing): a few content
              frames, then the socket is closed cleanly before the dialect's terminator
  RESET       chunked body: DELTAS content frames, then the connection is reset (RST)
  DRIP        chunked body: DELTAS content frames 20 ms apart, then one every 20 ms for a
              minute (for clients that hang up and for shutdown)
  MIDFRAME    with EARLYCLOSE: half of a fourth frame before the close
  UPERROR     with EARLYCLOSE, OpenAI: the upstream's own error frame before the close
  HANG        no answer at all; the connection's close is recorded (`closed`) with the time
  (none)      a whole, well-terminated stream or JSON answer

Every content frame carries DELTA_TEXT % i. Anthropic's message_start reports
ANTHROPIC_INPUT input tokens and the placeholder output count of 1, as the real API does.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from typing import Self

from tests.upstreams.harness import free_port

DELTAS = 20
DELTA_TEXT = " word%02d"  # 7 characters
ANTHROPIC_INPUT = 25


def delta_chars(n: int) -> int:
    return sum(len(DELTA_TEXT % i) for i in range(n))


def _openai(i: int) -> bytes:
    chunk = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "raw",
             "choices": [{"index": 0, "delta": {"content": DELTA_TEXT % i}, "finish_reason": None}]}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def _anthropic(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _anthropic_delta(i: int) -> bytes:
    return _anthropic("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": DELTA_TEXT % i}})


_ANTHROPIC_HEAD = _anthropic("message_start", {"type": "message_start", "message": {
    "id": "msg_raw", "type": "message", "role": "assistant", "model": "claude-raw", "content": [],
    "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": ANTHROPIC_INPUT, "output_tokens": 1}}}) + _anthropic(
    "content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})


def _ollama(i: int) -> bytes:
    return json.dumps({"model": "raw", "created_at": "2026-12-01T00:00:00Z",
                       "message": {"role": "assistant", "content": DELTA_TEXT % i}, "done": False}).encode() + b"\n"


def _frames(path: str, i: int) -> bytes:
    if path.endswith("/messages"):
        return _anthropic_delta(i)
    if path.startswith("/api/"):
        return _ollama(i)
    return _openai(i)


def _head(path: str) -> bytes:
    return _ANTHROPIC_HEAD if path.endswith("/messages") else b""


def _tail(path: str, n: int) -> bytes:
    if path.endswith("/messages"):
        return (_anthropic("content_block_stop", {"type": "content_block_stop", "index": 0})
                + _anthropic("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                                   "stop_sequence": None},
                                               "usage": {"output_tokens": n}})
                + _anthropic("message_stop", {"type": "message_stop"}))
    if path.startswith("/api/"):
        return json.dumps({"model": "raw", "message": {"role": "assistant", "content": ""}, "done": True,
                           "done_reason": "stop", "prompt_eval_count": 3, "eval_count": n}).encode() + b"\n"
    finish = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "raw",
              "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "raw", "choices": [],
             "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}}
    return b"data: " + json.dumps(finish).encode() + b"\n\ndata: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n"


def _ctype(path: str) -> bytes:
    return b"application/x-ndjson" if path.startswith("/api/") else b"text/event-stream"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class RawUpstream:
    """Serves on 127.0.0.1:<free port> in a background thread until stop()."""

    def __init__(self) -> None:
        self.port = free_port()
        self.closed: dict[str, float] = {}  # HANG requests' x-request-id -> when the gateway closed
        self.arrived: dict[str, float] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        rid = headers.get("x-request-id", "")
        try:
            await self._answer(path, body, rid, reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, path: str, body: bytes, rid: str, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        self.arrived[rid] = time.monotonic()
        stream = json.loads(body).get("stream", path.startswith("/api/"))
        if b"HANG" in body:
            await reader.read()  # until the gateway closes the connection
            self.closed[rid] = time.monotonic()
            return
        if not stream:
            answer = json.dumps({"id": "chatcmpl-raw", "object": "chat.completion", "created": 1, "model": "raw",
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                              "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                         b"connection: close\r\n\r\n%b" % (len(answer), answer))
            await writer.drain()
            return
        ctype = _ctype(path)
        if b"EARLYCLOSE" in body:  # close-delimited: the transport cannot tell a cut from the end
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: %b\r\nconnection: close\r\n\r\n" % ctype)
            writer.write(_head(path) + b"".join(_frames(path, i) for i in range(3)))
            if b"MIDFRAME" in body:  # the last frame cut in the middle of its JSON
                writer.write(_frames(path, 3)[:30])
            if b"UPERROR" in body and path.endswith("/completions"):
                writer.write(b'data: {"error":{"message":"model crashed","type":"server_error"}}\n\n')
            await writer.drain()
            await asyncio.sleep(0.05)
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: %b\r\ntransfer-encoding: chunked\r\n"
                     b"connection: close\r\n\r\n" % ctype)
        head = _head(path)
        if head:
            writer.write(_chunk(head))
        drip = b"DRIP" in body
        for i in range(DELTAS):
            writer.write(_chunk(_frames(path, i)))
            await writer.drain()
            if drip:
                await asyncio.sleep(0.02)
        if b"RESET" in body:
            await asyncio.sleep(0.05)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if drip:
            for i in range(DELTAS, DELTAS + 3000):
                writer.write(_chunk(_frames(path, i)))
                await writer.drain()
                await asyncio.sleep(0.02)
        writer.write(_chunk(_tail(path, DELTAS)) + b"0\r\n\r\n")
        await writer.drain()
