"""Anthropic Messages API wire format: requests, in both directions of the mapping.

Ingress (api/anthropic.py): `parse_request` -> `to_canonical`.
Egress (providers/anthropic.py): canonical -> Anthropic body with `from_canonical`.
Responses live in wire/anthropic_response.py, streams in wire/anthropic_stream.py.

Fields without a canonical meaning (metadata, thinking, context_management, output_config,
service_tier, top-level cache_control, ...) travel in `ChatRequest.extra["anthropic"]`: an
Anthropic upstream gets them back, an OpenAI-compatible one never sees them.
"""
from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from gatehouse.errors import InvalidRequest
from gatehouse.types import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from gatehouse.wire.common import Count, NonNegative, Unit, convert
from gatehouse.wire.screen import DATA, SCHEMA, BodySpec

# ---- request structs -------------------------------------------------------------------------


class ASource(Struct, omit_defaults=True):
    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    content: str | list[ABlock] | None = None  # document source of type "content"


class ABlock(Struct, omit_defaults=True):
    """Every content block type in one struct: unknown types still parse and are judged later."""

    type: str
    text: str | None = None
    source: ASource | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    tool_use_id: str | None = None
    content: str | list[ABlock] | None = None
    is_error: bool | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    cache_control: dict[str, Any] | None = None
    title: str | None = None
    context: str | None = None


class AMessage(Struct, omit_defaults=True):
    role: str
    content: str | list[ABlock]


class ATool(Struct, omit_defaults=True):
    name: str
    type: str | None = None  # None/"custom": a client tool; anything else is a server tool
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None


class AToolChoice(Struct, omit_defaults=True):
    type: str
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class AThinking(Struct, omit_defaults=True):
    type: str
    budget_tokens: Count | None = None


class ARequest(Struct, omit_defaults=True):
    model: str
    messages: list[AMessage]
    max_tokens: Count | None = None
    system: str | list[ABlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: Unit | None = None
    top_p: Unit | None = None
    top_k: NonNegative | None = None
    tools: list[ATool] | None = None
    tool_choice: AToolChoice | None = None
    thinking: AThinking | None = None


# Fields the canonical request carries; every other top-level field goes to extra["anthropic"].
# `thinking` is both: mapped to canonical `reasoning` and kept verbatim for Anthropic upstreams.
CANONICAL_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "tools", "tool_choice",
})
# The top-level fields of the Messages API (and count_tokens); nothing else is forwarded.
_BLOCKS: dict[str, Any] = {"*": {"input": DATA, "content": {"*": {"input": DATA}}}}
BODY = BodySpec(
    frozenset(ARequest.__struct_fields__) | {
        "metadata", "service_tier", "container", "context_management", "mcp_servers", "output_format",
        "output_config", "cache_control", "inference_geo",
    },
    {"tools": {"*": {"input_schema": SCHEMA}}, "messages": {"*": {"content": _BLOCKS}},
     "output_format": {"schema": SCHEMA}, "output_config": {"format": {"schema": SCHEMA}}},
)
_ROLES = ("user", "assistant", "system")  # "system" turns: the mid-conversation-system beta
_TOOL_CHOICES = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
CLIENT_TOOL_TYPES = (None, "custom")


def extra_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields an Anthropic upstream should get back verbatim."""
    return {k: v for k, v in obj.items() if k not in CANONICAL_FIELDS}


def parse_request(obj: dict[str, Any], *, counting: bool = False) -> ARequest:
    """Validate a Messages (or count_tokens) body; errors name the offending param."""
    req = convert(obj, ARequest)
    if not req.messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    if not counting:
        if req.max_tokens is None:
            raise InvalidRequest("'max_tokens' is required.", param="max_tokens")
        if req.max_tokens < 1:
            raise InvalidRequest("'max_tokens' must be at least 1.", param="max_tokens")
    for i, m in enumerate(req.messages):
        if m.role not in _ROLES:
            raise InvalidRequest(f"Invalid role '{m.role}': use 'user' or 'assistant'.",
                                 param=f"messages[{i}].role")
    if req.tool_choice is not None:
        tc = req.tool_choice
        if tc.type not in _TOOL_CHOICES:
            raise InvalidRequest(f"Invalid tool_choice type '{tc.type}': use auto, any, tool or none.",
                                 param="tool_choice.type")
        if tc.type == "tool" and not tc.name:
            raise InvalidRequest("tool_choice of type 'tool' needs a 'name'.", param="tool_choice.name")
    if req.thinking is not None and req.thinking.type == "enabled" and not req.thinking.budget_tokens:
        raise InvalidRequest("thinking of type 'enabled' needs 'budget_tokens'.", param="thinking.budget_tokens")
    return req


# ---- Anthropic request -> canonical ------------------------------------------------------------


def _document_text(b: ABlock, where: str) -> str:
    """Documents become text for upstreams that have no document type (plain text sources only)."""
    src = b.source
    if src is None:
        raise InvalidRequest("A document block needs a 'source'.", param=f"{where}.source")
    if src.type == "text" and src.data is not None:
        body = src.data
    elif src.type == "content":
        inner = src.content
        body = inner if isinstance(inner, str) else "\n".join(x.text or "" for x in inner or () if x.type == "text")
    else:
        raise InvalidRequest(
            f"Document source type '{src.type}' can only be sent to Anthropic models; "
            "send the document as text (source type 'text').", param=f"{where}.source.type")
    # Self-delimiting, since OpenAI-compatible servers glue adjacent text parts together.
    title = f' title="{b.title}"' if b.title else ""
    context = f"<context>{b.context}</context>\n" if b.context else ""
    return f"<document{title}>\n{context}{body}\n</document>\n"


def _image(b: ABlock, where: str) -> ImagePart:
    src = b.source
    if src is not None and src.type == "base64" and src.data:
        return ImagePart(data=src.data, media_type=src.media_type or "image/png")
    if src is not None and src.type == "url" and src.url:
        return ImagePart(url=src.url)
    raise InvalidRequest("Image blocks need a base64 or url source.", param=f"{where}.source")


def _result_content(content: str | list[ABlock] | None, where: str) -> list[TextPart | ImagePart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    out: list[TextPart | ImagePart] = []
    for k, c in enumerate(content):
        here = f"{where}.content[{k}]"
        if c.type == "text":
            out.append(TextPart(c.text or ""))
        elif c.type == "image":
            out.append(_image(c, here))
        elif c.type == "document":
            out.append(TextPart(_document_text(c, here)))
        elif c.type == "search_result":
            out.append(TextPart("\n".join(x.text or "" for x in c.content or () if not isinstance(x, str))))
        else:
            raise InvalidRequest(f"Unsupported tool_result content type '{c.type}'.", param=f"{here}.type")
    return out


def _blocks(content: str | list[ABlock], role: str, where: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    parts: list[Part] = []
    for j, b in enumerate(content):
        here = f"{where}.content[{j}]"
        t = b.type
        if t == "text":
            parts.append(TextPart(b.text or "", b.cache_control))
        elif t == "image":
            parts.append(_image(b, here))
        elif t == "document":
            parts.append(TextPart(_document_text(b, here), b.cache_control))
        elif t == "tool_use" and role == "assistant":
            if not b.id or not b.name:
                raise InvalidRequest("tool_use blocks need 'id' and 'name'.", param=here)
            parts.append(ToolCallPart(b.id, b.name, json_text(b.input)))
        elif t == "tool_result" and role == "user":
            if not b.tool_use_id:
                raise InvalidRequest("tool_result blocks need 'tool_use_id'.", param=f"{here}.tool_use_id")
            parts.append(ToolResultPart(b.tool_use_id, _result_content(b.content, here), bool(b.is_error)))
        elif t == "thinking" and role == "assistant":
            parts.append(ThinkingPart(b.thinking or "", b.signature or None))
        elif t == "redacted_thinking" and role == "assistant":
            parts.append(ThinkingPart(redacted_data=b.data or ""))
        else:
            raise InvalidRequest(f"Content block type '{t}' is not supported in a {role} message "
                                 "for this model.", param=f"{here}.type")
    return parts


def json_text(value: Any) -> str:
    return msgspec.json.encode(value if value is not None else {}).decode()


def _system(system: str | list[ABlock] | None) -> list[TextPart]:
    if system is None:
        return []
    if isinstance(system, str):
        return [TextPart(system)] if system else []
    out = []
    for i, b in enumerate(system):
        if b.type != "text":
            raise InvalidRequest("System blocks must be text.", param=f"system[{i}].type")
        out.append(TextPart(b.text or "", b.cache_control))
    return out


def _tools(tools: list[ATool] | None) -> list[Tool]:
    out = []
    for i, t in enumerate(tools or ()):
        if t.type not in CLIENT_TOOL_TYPES:
            raise InvalidRequest(f"Tool type '{t.type}' is a server tool only Anthropic models run.",
                                 param=f"tools[{i}].type")
        schema = t.input_schema if t.input_schema is not None else {"type": "object", "properties": {}}
        out.append(Tool(t.name, t.description, schema, t.cache_control))
    return out


def _tool_choice(tc: AToolChoice | None) -> ToolChoice | None:
    if tc is None:
        return None
    parallel = None if tc.disable_parallel_tool_use is None else not tc.disable_parallel_tool_use
    return ToolChoice(_TOOL_CHOICES[tc.type], tc.name if tc.type == "tool" else None, parallel)  # type: ignore[arg-type]


def to_canonical(req: ARequest, extra: dict[str, Any]) -> ChatRequest:
    messages = [
        Message(m.role, _blocks(m.content, m.role, f"messages[{i}]"))  # type: ignore[arg-type]
        for i, m in enumerate(req.messages)
    ]
    reasoning = None
    if req.thinking is not None and req.thinking.type == "enabled":
        reasoning = {"budget_tokens": req.thinking.budget_tokens}
    elif req.thinking is not None and req.thinking.type == "adaptive":
        reasoning = {"adaptive": True}
    return ChatRequest(
        model=req.model,
        messages=messages,
        system=_system(req.system),
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        stop=list(req.stop_sequences or ()),
        stream=req.stream,
        tools=_tools(req.tools),
        tool_choice=_tool_choice(req.tool_choice),
        reasoning=reasoning,
        extra={"anthropic": extra} if extra else {},
    )


# ---- canonical -> Anthropic request (egress) -----------------------------------------------------

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often omit it
# OpenAI `reasoning_effort` -> an extended-thinking budget (Anthropic's minimum is 1024).
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}


def _text_block(p: TextPart) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "text", "text": p.text}
    if p.cache_control:
        d["cache_control"] = p.cache_control
    return d


def _image_block(p: ImagePart) -> dict[str, Any]:
    if p.data is not None:
        return {"type": "image",
                "source": {"type": "base64", "media_type": p.media_type or "image/png", "data": p.data}}
    url = p.url or ""
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(arguments or "{}")
    except (msgspec.DecodeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _block_out(p: Part) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        return _text_block(p) if p.text else None  # Anthropic refuses empty text blocks
    if isinstance(p, ImagePart):
        return _image_block(p)
    if isinstance(p, ToolCallPart):
        return {"type": "tool_use", "id": p.id, "name": p.name, "input": tool_input(p.arguments)}
    if isinstance(p, ToolResultPart):
        d: dict[str, Any] = {"type": "tool_result", "tool_use_id": p.tool_call_id}
        content = [_text_block(c) if isinstance(c, TextPart) else _image_block(c) for c in p.content
                   if not (isinstance(c, TextPart) and not c.text)]
        if content:
            d["content"] = content
        if p.is_error:
            d["is_error"] = True
        return d
    if isinstance(p, ThinkingPart):
        if p.redacted_data is not None:
            return {"type": "redacted_thinking", "data": p.redacted_data}
        if p.signature:  # unsigned reasoning (from another model) cannot be replayed to Claude
            return {"type": "thinking", "thinking": p.text, "signature": p.signature}
    return None


def _messages_out(req: ChatRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Canonical messages -> (extra system blocks, Anthropic turns). Tool results join the
    user turn; consecutive turns of one role merge, as Anthropic wants them alternating."""
    system_extra: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for m in req.messages:
        if m.role == "system":
            system_extra.extend(_text_block(p) for p in m.content if isinstance(p, TextPart) and p.text)
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = [b for b in (_block_out(p) for p in m.content) if b is not None]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for t in turns:  # tool results must lead their user turn
        if t["role"] == "user":
            t["content"].sort(key=lambda b: b["type"] != "tool_result")
    return system_extra, turns


def from_canonical(req: ChatRequest, upstream_model: str) -> dict[str, Any]:
    extra = req.extra.get("anthropic", {})
    system_extra, messages = _messages_out(req)
    body: dict[str, Any] = {"model": upstream_model, "messages": messages,
                            "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS}
    system = [_text_block(p) for p in req.system if p.text] + system_extra
    if system:
        body["system"] = system
    for name in ("temperature", "top_p", "top_k"):
        v = getattr(req, name)
        if v is not None:
            body[name] = v
    if req.stop:
        body["stop_sequences"] = req.stop
    if req.tools:
        body["tools"] = [_tool_out(t) for t in req.tools]
        tc = req.tool_choice
        if tc is not None:
            kinds = {"auto": "auto", "none": "none", "required": "any", "tool": "tool"}
            choice: dict[str, Any] = {"type": kinds[tc.mode]}
            if tc.mode == "tool":
                choice["name"] = tc.name
            if tc.parallel is False and tc.mode != "none":
                choice["disable_parallel_tool_use"] = True
            body["tool_choice"] = choice
    if "thinking" not in extra and req.reasoning:
        _thinking_from_reasoning(body, req.reasoning)
    if req.user and "metadata" not in extra:
        body["metadata"] = {"user_id": req.user}
    for k, v in extra.items():
        body.setdefault(k, v)
    if req.stream:
        body["stream"] = True
    return body


def _thinking_from_reasoning(body: dict[str, Any], reasoning: dict[str, Any]) -> None:
    budget = reasoning.get("budget_tokens") or EFFORT_BUDGETS.get(str(reasoning.get("effort")))
    if not budget:
        return
    if body["max_tokens"] <= budget:  # OpenAI counts reasoning inside max tokens; so does Anthropic
        body["max_tokens"] = budget + DEFAULT_MAX_TOKENS
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body.pop("temperature", None)  # extended thinking accepts only the default temperature
    body.pop("top_k", None)


def _tool_out(t: Tool) -> dict[str, Any]:
    d: dict[str, Any] = {"name": t.name, "input_schema": t.parameters}
    if t.description:
        d["description"] = t.description
    if t.cache_control:
        d["cache_control"] = t.cache_control
    return d
