"""Cache entries in the client's own wire bytes: what a forwarded (pass-through) miss stores, and
what a hit in the same dialect and stream mode sends back as it is.

A cacheable miss keeps its pass-through: `WireTee` copies the bytes that go to the client (a unary
body as received; a stream's frames as relayed, through the splice or the chunk iterator) and the
entry is made once the answer is complete — status 200, the stream ended with its terminator, no
error frame, no content-filter or refusal finish. Nothing is parsed on the miss.

An entry is `<stamp> w <dialect> <path> <mode> <in> <out> <cached> <estimated> <content type>\\n<body>`
(path: the route's pass-through path, which names the wire format exactly; mode: `u` unary, `s` a
stream, `su` an OpenAI stream that carries its usage chunk). A hit whose call has the same path
and mode is answered with the body as it is (a forwarded Reply: nothing
decoded or rendered); any other hit of a chat route reads the body into the canonical answer then
(`to_canonical`), and relays that as a translated answer in the client's dialect.
"""
from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from gatehouse.gateway.relay import Reply
from gatehouse.policy.cache_replay import Collector
from gatehouse.types import ChatResponse, Usage

if TYPE_CHECKING:
    from gatehouse.gateway.endpoint import Call

WIRE = b"w"
# A finish that is never stored, as the dialects write it in a body or a stream frame.
# (Responses: `incomplete_details.reason`, a failed response or stream.)
_FILTERED = re.compile(rb'"(?:finish_reason|stop_reason|done_reason|reason)"\s*:\s*"(?:content_filter|refusal)"'
                       rb'|"status"\s*:\s*"failed"|"type"\s*:\s*"response\.failed"')


def mode_of(call: Call) -> str:
    """The shape of the client's answer: unary, a stream, an OpenAI stream with its usage chunk."""
    if not call.stream:
        return "u"
    return "su" if call.wants_usage else "s"


class WireTee:
    """The bytes of a forwarded answer on their way to the client (at most `limit` of them)."""

    __slots__ = ("parts", "size", "limit", "tally", "body", "content_type", "dialect", "path", "mode")

    def __init__(self, limit: int, dialect: str, path: str, mode: str, content_type: str) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.tally: Any = None  # a stream's tally (finished, errored)
        self.body: bytes | None = None  # a unary answer
        self.content_type = content_type
        self.dialect = dialect
        self.path = path
        self.mode = mode

    def add(self, data: bytes) -> None:
        if data and self.size <= self.limit:
            self.size += len(data)
            self.parts.append(data)

    def wrap(self, reply: Reply) -> Reply:
        if reply.frames is None:  # unary (or a stream request answered with plain JSON: not stored)
            if self.mode == "u" and reply.status == 200 and reply.body is not None:
                self.body = reply.body
            return reply
        self.tally = reply.tally
        reply.frames = self._frames(reply.frames)
        if reply.splice is not None:
            resp, feed, flush = reply.splice
            reply.splice = (resp, self._feed(feed), self._feed(flush))
        return reply

    async def _frames(self, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        add = self.add
        try:
            async for chunk in frames:
                add(chunk)
                yield chunk
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()

    def _feed(self, fn: Callable[..., bytes]) -> Callable[..., bytes]:
        add = self.add

        def tee(*args: bytes) -> bytes:
            out = fn(*args)
            add(out)
            return out
        return tee

    def entry(self, usage: Usage | None) -> bytes | None:
        """The entry, when the answer is complete and not filtered (the exchange ended with 200)."""
        if self.body is not None:
            body = self.body
        else:
            tally = self.tally
            if tally is None or not tally.finished or getattr(tally, "errored", False) or self.size > self.limit:
                return None
            body = b"".join(self.parts)
        if not body or _FILTERED.search(body) is not None:
            return None
        u = usage or Usage()
        head = (f"{self.dialect} {self.path} {self.mode} {u.input_tokens} {u.output_tokens} "
                f"{u.cache_read_tokens} {1 if u.estimated else 0} {self.content_type}\n")
        return b"w " + head.encode("latin-1") + body


class WireEntry:
    """A stored wire entry, read (`parse`)."""

    __slots__ = ("dialect", "path", "mode", "usage", "content_type", "body", "input_tokens", "output_tokens",
                 "_hit_head")

    def __init__(self, dialect: str, path: str, mode: str, usage: Usage, content_type: str, body: bytes) -> None:
        self.dialect, self.path, self.mode, self.usage = dialect, path, mode, usage
        self.content_type, self.body = content_type, body
        # (immutable, so a memory entry reads it once: policy/cache.py) a unary hit's usage headers
        self.input_tokens, self.output_tokens = str(usage.input_tokens), str(usage.output_tokens)
        self._hit_head: list[tuple[bytes, bytes]] | None = None

    def hit_head(self) -> list[tuple[bytes, bytes]]:
        """The response headers every hit of this entry in its own route and mode carries, encoded
        once (a repeated request's hit: gateway/handle.py): content type and length, the cache
        verdict, and for a unary answer the usage headers at no cost (policy/cache.py `_answer`)."""
        head = self._hit_head
        if head is None:
            head = [(b"content-type", self.content_type.encode("latin-1")),
                    (b"content-length", b"%d" % len(self.body)), (b"x-gatehouse-cache", b"hit")]
            if self.mode == "u":
                head += [(b"x-gatehouse-tokens-input", self.input_tokens.encode()),
                         (b"x-gatehouse-tokens-output", self.output_tokens.encode()), (b"x-gatehouse-cost-usd", b"0")]
            self._hit_head = head
        return head

    @classmethod
    def parse(cls, rest: bytes) -> WireEntry:
        """`rest`: the entry after `<stamp> w `. Raises ValueError when it is not one."""
        head, sep, body = rest.partition(b"\n")
        fields = head.decode("latin-1").split(" ", 7)
        if not sep or len(fields) != 8:
            raise ValueError("not a wire entry")
        dialect, path, mode, i, o, c, est, ctype = fields
        return cls(dialect, path, mode, Usage(input_tokens=int(i), output_tokens=int(o), cache_read_tokens=int(c),
                                        estimated=est == "1"), ctype, body)

    def reply(self) -> Reply:
        """The stored bytes as a forwarded answer (the client's dialect and mode). A stream goes out
        whole, as one body with its length: it is complete, so there is nothing to wait for."""
        r = Reply(200, self.content_type)
        r.body, r.usage = self.body, self.usage
        return r

    async def to_canonical(self, model: str) -> ChatResponse | None:
        """The stored answer as the canonical one (for a hit in another dialect or mode); None when
        it cannot be read."""
        try:
            if self.mode == "u":
                return _read_unary(self.dialect, self.body, model)
            collector = Collector()
            async for ev in _decode_stream(self.dialect, self.body, model):
                collector.see(ev)
            return collector.answer(None if self.usage.estimated else self.usage)
        except Exception:  # (an unreadable entry is a miss; the caller logs it)
            return None


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _read_unary(dialect: str, body: bytes, model: str) -> ChatResponse | None:
    if dialect == "openai":
        from gatehouse.wire import openai_response as oa

        return oa.response_to_canonical(oa.response_decoder.decode(body), model)
    if dialect == "anthropic":
        from gatehouse.wire import anthropic_response as an

        return an.response_to_canonical(an.response_decoder.decode(body), model)
    if dialect == "ollama":
        from gatehouse.wire import ollama as ol

        return ol.response_to_canonical(ol.response_decoder.decode(body), "ollama-cached", model)
    return None


async def _decode_stream(dialect: str, body: bytes, model: str) -> AsyncIterator[Any]:
    chunks = _once(body)
    if dialect == "openai":
        from gatehouse.wire import openai_stream

        async for ev in openai_stream.decode_stream(chunks, model):
            yield ev
    elif dialect == "anthropic":
        from gatehouse.wire import anthropic_stream

        async for ev in anthropic_stream.decode_stream(chunks, model):
            yield ev
    elif dialect == "ollama":
        from gatehouse.wire import ollama_stream

        async for ev in ollama_stream.decode_stream(chunks, "ollama-cached", model):
            yield ev
    else:
        raise ValueError(f"no stream reader for {dialect}")

