"""Canonical request, message, content part, tool, usage and stream event types.

Every ingress dialect parses into these; every provider translates from them. They carry
the union of what the dialects can express (thinking with signatures, cache_control,
tool errors), so a translation never has to guess. Dialect-specific knobs that have no
canonical meaning travel in `ChatRequest.extra` and reach only a provider of the same
dialect.
"""
from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import Struct, field


class TextPart(Struct, tag="text", omit_defaults=True):
    text: str
    cache_control: dict[str, Any] | None = None


class ImagePart(Struct, tag="image", omit_defaults=True):
    """Either a URL (http(s) or data:) or base64 `data` with its `media_type`."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None

    def as_data_url(self) -> str:
        if self.url:
            return self.url
        return f"data:{self.media_type or 'image/png'};base64,{self.data}"


class ToolCallPart(Struct, tag="tool_call", omit_defaults=True):
    id: str
    name: str
    arguments: str = "{}"  # JSON text, exactly as the model produced it


class ToolResultPart(Struct, tag="tool_result", omit_defaults=True):
    tool_call_id: str
    content: list[TextPart | ImagePart] = field(default_factory=list)
    is_error: bool = False

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class ThinkingPart(Struct, tag="thinking", omit_defaults=True):
    text: str = ""
    signature: str | None = None
    redacted_data: str | None = None  # Anthropic redacted_thinking


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ThinkingPart

Role = Literal["system", "user", "assistant", "tool"]


class Message(Struct, omit_defaults=True):
    role: Role
    content: list[Part] = field(default_factory=list)
    name: str | None = None

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class Tool(Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    cache_control: dict[str, Any] | None = None


class ToolChoice(Struct, omit_defaults=True):
    """auto | none | required (any tool) | tool (the named one)."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None
    parallel: bool | None = None


class ChatRequest(Struct, omit_defaults=True):
    model: str
    messages: list[Message]
    system: list[TextPart] = field(default_factory=list)
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    response_format: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None  # {"budget_tokens": N} / {"effort": "low"}
    seed: int | None = None
    user: str | None = None
    # Fields with no canonical meaning, keyed by the dialect they came in: a provider of the
    # same dialect passes `extra[its dialect]` through, every other provider ignores them.
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def system_text(self) -> str:
        return "\n".join(p.text for p in self.system)


StopReason = Literal["end", "length", "tool_calls", "stop_sequence", "content_filter", "error"]


class Usage(Struct, omit_defaults=True):
    # input_tokens counts every prompt token, cached ones included (OpenAI's convention);
    # cache_read/cache_write say how many of them were read from / written to a prompt cache.
    # (Anthropic's wire `input_tokens` excludes both; wire/anthropic.py converts.)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatResponse(Struct, omit_defaults=True):
    id: str
    model: str
    content: list[Part]
    stop_reason: StopReason = "end"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    created: int = 0


# ---- stream events: what every provider stream is decoded into -----------------------


class StreamStart(Struct, tag="start"):
    id: str
    model: str
    usage: Usage | None = None  # some upstreams report prompt tokens up front


class TextDelta(Struct, tag="text"):
    text: str


class ThinkingDelta(Struct, tag="thinking"):
    text: str = ""
    signature: str | None = None
    redacted_data: str | None = None


class ToolCallStart(Struct, tag="tool_start"):
    index: int  # position among this response's tool calls, 0-based
    id: str
    name: str


class ToolCallDelta(Struct, tag="tool_delta"):
    index: int
    arguments: str  # a fragment of the JSON arguments


class StreamEnd(Struct, tag="end"):
    stop_reason: StopReason
    usage: Usage | None = None
    stop_sequence: str | None = None


class KeepAlive(Struct, tag="keepalive"):
    """No output for a while: encoders that have a heartbeat (Anthropic's `ping`) send it;
    the rest send nothing. Produced by the ingress, never by a provider."""


StreamEvent = StreamStart | TextDelta | ThinkingDelta | ToolCallStart | ToolCallDelta | StreamEnd | KeepAlive


class EmbeddingRequest(Struct, omit_defaults=True):
    model: str
    input: list[str]
    dimensions: int | None = None
    encoding_format: str | None = None
    user: str | None = None


class EmbeddingResponse(Struct):
    model: str
    vectors: list[list[float]]
    usage: Usage


class CompletionRequest(Struct, omit_defaults=True):
    """Legacy text completion, kept for code editors (fill-in-the-middle via `suffix`)."""

    model: str
    prompt: str
    suffix: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False


json_encode = msgspec.json.Encoder().encode
json_decode = msgspec.json.Decoder().decode
