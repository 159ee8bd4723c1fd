"""Provider `echo`: a built-in deterministic model for trying the gateway without a backend.

It answers `echo: <last user text>`, streams it word by word, reports usage (estimated
from text length), calls a tool only when `tool_choice` forces one, and embeds text into a
small deterministic vector. Useful for smoke tests, demos and the benchmark.
"""
from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator

from gatehouse.metering.tokens import estimate_request, estimate_text
from gatehouse.providers.base import CallContext, Provider
from gatehouse.types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Part,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
)

_WORDS = re.compile(r"\S+\s*|\s+")


def _reply_text(req: ChatRequest) -> str:
    for m in reversed(req.messages):
        if m.role == "user" or m.role == "tool":
            text = m.text() or " ".join(p.text() for p in m.content if isinstance(p, ToolResultPart))
            return f"echo: {text}"
    return "echo:"


def _apply_limits(text: str, stop: list[str], max_tokens: int | None) -> tuple[str, str, str | None]:
    for s in stop:
        if s and s in text:
            return text[: text.index(s)], "stop_sequence", s
    if max_tokens is not None and estimate_text(text) > max_tokens:
        return text[: max_tokens * 4], "length", None
    return text, "end", None


class EchoProvider(Provider):
    type_name = "echo"

    def _respond(self, req: ChatRequest, call: CallContext) -> ChatResponse:
        tc = req.tool_choice
        if req.tools and tc is not None and tc.mode in ("required", "tool"):
            tool = next((t for t in req.tools if t.name == tc.name), req.tools[0])
            content: list[Part] = [ToolCallPart(f"call_{uuid.uuid4().hex[:12]}", tool.name, "{}")]
            stop, seq, out = "tool_calls", None, 8
        else:
            text, stop, seq = _apply_limits(_reply_text(req), req.stop, req.max_tokens)
            content, out = [TextPart(text)], estimate_text(text)
        usage = Usage(input_tokens=estimate_request(req), output_tokens=out)
        return ChatResponse(f"echo-{uuid.uuid4().hex[:16]}", call.public_model, content, stop,  # type: ignore[arg-type]
                            seq, usage, int(time.time()))

    async def chat(self, req: ChatRequest, call: CallContext) -> ChatResponse:
        return self._respond(req, call)

    async def chat_stream(self, req: ChatRequest, call: CallContext) -> AsyncIterator[StreamEvent]:
        resp = self._respond(req, call)
        yield StreamStart(resp.id, resp.model)
        for i, part in enumerate(resp.content):
            if isinstance(part, TextPart):
                for word in _WORDS.findall(part.text):
                    yield TextDelta(word)
            elif isinstance(part, ToolCallPart):
                yield ToolCallStart(i, part.id, part.name)
                yield ToolCallDelta(i, part.arguments)
        yield StreamEnd(resp.stop_reason, resp.usage, resp.stop_sequence)

    def _completion(self, req: CompletionRequest, call: CallContext) -> ChatResponse:
        text = f"echo: {req.prompt[-200:]}"
        if req.suffix is not None:
            text = f"echo: <fill between {len(req.prompt)} and {len(req.suffix)} chars>"
        text, stop, seq = _apply_limits(text, req.stop, req.max_tokens)
        usage = Usage(input_tokens=estimate_text(req.prompt) + estimate_text(req.suffix or ""),
                      output_tokens=estimate_text(text))
        return ChatResponse(f"cmpl-{uuid.uuid4().hex[:16]}", call.public_model, [TextPart(text)],
                            stop, seq, usage, int(time.time()))  # type: ignore[arg-type]

    async def complete(self, req: CompletionRequest, call: CallContext) -> ChatResponse:
        return self._completion(req, call)

    async def complete_stream(self, req: CompletionRequest, call: CallContext) -> AsyncIterator[StreamEvent]:
        resp = self._completion(req, call)
        yield StreamStart(resp.id, resp.model)
        first = resp.content[0]
        for word in _WORDS.findall(first.text if isinstance(first, TextPart) else ""):
            yield TextDelta(word)
        yield StreamEnd(resp.stop_reason, resp.usage, resp.stop_sequence)

    async def embed(self, req: EmbeddingRequest, call: CallContext) -> EmbeddingResponse:
        dims = req.dimensions or 16
        vectors = []
        for text in req.input:
            digest = hashlib.sha256(text.encode()).digest()
            vectors.append([(digest[i % 32] - 128) / 128.0 for i in range(dims)])
        usage = Usage(input_tokens=sum(estimate_text(t) for t in req.input))
        return EmbeddingResponse(call.public_model, vectors, usage)
