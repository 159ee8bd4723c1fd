"""Ollama's native API (/api/chat, /api/generate, /api/embed) ⇄ canonical types, both ways:
the Ollama ingress parses client requests with it, the `ollama` provider builds upstream
requests and parses upstream replies with it.

Ollama differs from the other dialects in a few ways the mapping has to bridge: sampling
parameters live in `options` (num_predict, stop, ...), images are bare base64 without a
media type, tool call arguments are JSON objects rather than text, and tool results are
matched to calls by position and `tool_name` because most clients send no call ids.
"""
from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from gatehouse.errors import InvalidRequest
from gatehouse.types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    ImagePart,
    Message,
    Part,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    Usage,
    json_encode,
)
from gatehouse.wire.common import Count, NonNegative, Seed, Unit, convert, tool_input
from gatehouse.wire.screen import DATA, SCHEMA, BodySpec

# ---- structs (requests both ways, responses from upstream) -----------------------------------


class OLFunction(Struct, omit_defaults=True):
    name: str = ""
    arguments: dict[str, Any] | str | None = None
    index: int | None = None


class OLToolCall(Struct, omit_defaults=True):
    function: OLFunction
    id: str | None = None


class OLMessage(Struct, omit_defaults=True):
    role: str
    content: str | None = None
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[OLToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None  # not Ollama's, but sent by clients written for OpenAI


class OLFunctionDef(Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class OLTool(Struct, omit_defaults=True):
    function: OLFunctionDef
    type: str = "function"


_Scale = Annotated[float, Meta(ge=-1e6, le=1e6)]


class OLOptions(Struct):
    """The numeric `options` Ollama knows, checked for sign and range; others pass as they are."""

    num_predict: Annotated[int, Meta(ge=-2, le=2**31 - 1)] | None = None  # -1: until done, -2: fill context
    num_ctx: Count | None = None
    num_keep: Annotated[int, Meta(ge=-1, le=2**31 - 1)] | None = None
    num_batch: Count | None = None
    num_gpu: Annotated[int, Meta(ge=-1, le=2**31 - 1)] | None = None
    main_gpu: NonNegative | None = None
    num_thread: NonNegative | None = None
    seed: Seed | None = None
    temperature: Annotated[float, Meta(ge=0, le=100)] | None = None
    top_k: NonNegative | None = None
    top_p: Unit | None = None
    min_p: Unit | None = None
    typical_p: Unit | None = None
    repeat_last_n: Annotated[int, Meta(ge=-1, le=2**31 - 1)] | None = None
    repeat_penalty: Annotated[float, Meta(ge=0, le=1e6)] | None = None
    presence_penalty: _Scale | None = None
    frequency_penalty: _Scale | None = None
    mirostat: Annotated[int, Meta(ge=0, le=2)] | None = None
    mirostat_tau: Annotated[float, Meta(ge=0, le=1e6)] | None = None
    mirostat_eta: Annotated[float, Meta(ge=0, le=1e6)] | None = None


class _WithOptions(Struct):
    options: OLOptions


def _check_options(options: dict[str, Any] | None) -> None:
    if options:
        convert({"options": options}, _WithOptions)


class OLChatRequest(Struct, omit_defaults=True):
    model: str
    messages: list[OLMessage] = []
    tools: list[OLTool] | None = None
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    stream: bool | None = None  # Ollama streams unless told not to
    keep_alive: str | int | float | None = None
    think: bool | str | None = None

    def __post_init__(self) -> None:
        _check_options(self.options)


class OLGenerateRequest(Struct, omit_defaults=True):
    model: str
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    images: list[str] | None = None
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    stream: bool | None = None
    raw: bool | None = None
    keep_alive: str | int | float | None = None
    think: bool | str | None = None
    context: list[int] | None = None  # a previous reply's state: meaningless across backends
    template: str | None = None

    def __post_init__(self) -> None:
        _check_options(self.options)


class OLEmbedRequest(Struct, omit_defaults=True):
    model: str
    input: str | list[str] = ""
    truncate: bool | None = None
    dimensions: Count | None = None
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None

    def __post_init__(self) -> None:
        _check_options(self.options)


class OLLegacyEmbedRequest(Struct, omit_defaults=True):
    model: str
    prompt: str = ""
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None

    def __post_init__(self) -> None:
        _check_options(self.options)


class OLResponseMessage(Struct, omit_defaults=True):
    role: str = "assistant"
    content: str = ""
    thinking: str | None = None
    tool_calls: list[OLToolCall] | None = None


class OLResponse(Struct, omit_defaults=True):
    """A /api/chat or /api/generate reply, or one NDJSON line of its stream."""

    model: str = ""
    message: OLResponseMessage | None = None
    response: str | None = None  # /api/generate
    thinking: str | None = None  # /api/generate
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int = 0
    eval_count: int = 0
    error: str | None = None

    def usage(self) -> Usage:
        return Usage(input_tokens=self.prompt_eval_count, output_tokens=self.eval_count)


class OLEmbedResponse(Struct, omit_defaults=True):
    embeddings: list[list[float]] = []
    prompt_eval_count: int = 0


response_decoder = msgspec.json.Decoder(OLResponse)
embed_decoder = msgspec.json.Decoder(OLEmbedResponse)
KNOWN_CHAT_FIELDS = frozenset(OLChatRequest.__struct_fields__)
KNOWN_GENERATE_FIELDS = frozenset(OLGenerateRequest.__struct_fields__)

# The top-level fields of each endpoint (plus `name`, older clients' `model`); nothing else
# is forwarded.
_TOOLS: dict[str, Any] = {"*": {"function": {"parameters": SCHEMA}}}
CHAT_BODY = BodySpec(KNOWN_CHAT_FIELDS | {"name"}, {
    "tools": _TOOLS, "format": SCHEMA, "messages": {"*": {"tool_calls": {"*": {"function": {"arguments": DATA}}}}}})
GENERATE_BODY = BodySpec(KNOWN_GENERATE_FIELDS | {"name"}, {"format": SCHEMA})
EMBED_BODY = BodySpec(frozenset(OLEmbedRequest.__struct_fields__) | {"name"})
LEGACY_EMBED_BODY = BodySpec(frozenset(OLLegacyEmbedRequest.__struct_fields__) | {"name"})
SHOW_BODY = BodySpec({"model", "name", "verbose"})
PULL_BODY = BodySpec({"model", "name", "insecure", "stream"})


# ---- client request -> canonical (ingress) ----------------------------------------------------


def _media_type(data: str) -> str:
    """Ollama images carry no media type; the other upstreams need one, so sniff it."""
    for prefix, media in (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"),
                          ("UklGR", "image/webp")):
        if data.startswith(prefix):
            return media
    return "image/png"


def images_in(images: list[str] | None) -> list[ImagePart]:
    return [ImagePart(data=i, media_type=_media_type(i)) for i in images or ()]


def _options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Ollama `options` -> canonical sampling fields (the rest stays Ollama-only)."""
    o = options or {}
    out: dict[str, Any] = {}
    n = o.get("num_predict")
    if isinstance(n, int) and n > 0:  # -1 (until done) and -2 (fill context) mean no limit
        out["max_tokens"] = n
    for name in ("temperature", "top_p", "top_k", "seed"):
        if o.get(name) is not None:
            out[name] = o[name]
    stop = o.get("stop")
    if stop:
        out["stop"] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
    return out


def _format(fmt: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    return None


def _reasoning(think: bool | str | None) -> dict[str, Any] | None:
    if think is True:
        return {"effort": "medium"}
    if isinstance(think, str) and think:
        return {"effort": think}
    return None


def _extras(obj: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """What only an Ollama upstream understands: keep_alive, options, think, unknown fields."""
    out = {k: v for k, v in obj.items() if k not in known and k not in ("model", "messages", "stream")}
    for name in ("keep_alive", "options", "think"):
        if obj.get(name) is not None:
            out[name] = obj[name]
    return out


def parse_chat(obj: dict[str, Any]) -> OLChatRequest:
    return convert(obj, OLChatRequest)  # (api/ollama.py checked the model, or left it to a group default)


def chat_to_canonical(req: OLChatRequest, obj: dict[str, Any]) -> ChatRequest:
    system: list[TextPart] = []
    messages: list[Message] = []
    pending: list[tuple[str, str]] = []  # (id, name) of the last assistant turn's unanswered calls
    for i, m in enumerate(req.messages):
        text = m.content or ""
        if m.role == "system":
            system.append(TextPart(text))
        elif m.role == "user":
            user_content: list[Part] = [TextPart(text)] if text else []
            messages.append(Message("user", [*user_content, *images_in(m.images)]))
        elif m.role == "assistant":
            parts: list[Part] = [ThinkingPart(m.thinking)] if m.thinking else []
            if text:
                parts.append(TextPart(text))
            pending = []
            for j, tc in enumerate(m.tool_calls or ()):
                call_id = tc.id or f"call_{i}_{j}"
                args = tc.function.arguments
                arguments = args if isinstance(args, str) else json_encode(args or {}).decode()
                parts.append(ToolCallPart(call_id, tc.function.name, arguments))
                pending.append((call_id, tc.function.name))
            messages.append(Message("assistant", parts))
        elif m.role == "tool":
            call_id = m.tool_call_id or _answer(pending, m.tool_name)
            tool_content: list[TextPart | ImagePart] = [TextPart(text), *images_in(m.images)]
            result = ToolResultPart(call_id, tool_content)
            if messages and messages[-1].role == "tool":
                messages[-1].content.append(result)
            else:
                messages.append(Message("tool", [result]))
        else:
            raise InvalidRequest(f"Invalid role '{m.role}'.", param=f"messages[{i}].role")
    tools = [Tool(t.function.name, t.function.description,
                  t.function.parameters or {"type": "object", "properties": {}}) for t in req.tools or ()]
    return ChatRequest(
        model=req.model, messages=messages, system=system, stream=req.stream is not False, tools=tools,
        tool_choice=ToolChoice("auto") if tools else None, response_format=_format(req.format),
        reasoning=_reasoning(req.think), extra={"ollama": _extras(obj, KNOWN_CHAT_FIELDS)},
        **_options(req.options),
    )


def _answer(pending: list[tuple[str, str]], name: str | None) -> str:
    """Pair a tool result with a call: by tool_name when given, else the next in order."""
    for k, (call_id, call_name) in enumerate(pending):
        if name is None or call_name == name:
            del pending[k]
            return call_id
    return f"call_{name or 'unknown'}"


def generate_to_chat(req: OLGenerateRequest, obj: dict[str, Any]) -> ChatRequest:
    content: list[Part] = [*([TextPart(req.prompt)] if req.prompt else []), *images_in(req.images)]
    return ChatRequest(
        model=req.model, messages=[Message("user", content)],
        system=[TextPart(req.system)] if req.system else [], stream=req.stream is not False,
        response_format=_format(req.format), reasoning=_reasoning(req.think),
        extra={"ollama": _extras(obj, KNOWN_GENERATE_FIELDS)}, **_options(req.options),
    )


def generate_to_completion(req: OLGenerateRequest) -> CompletionRequest:
    o = _options(req.options)
    return CompletionRequest(model=req.model, prompt=req.prompt, suffix=req.suffix, max_tokens=o.get("max_tokens"),
                             temperature=o.get("temperature"), top_p=o.get("top_p"), stop=o.get("stop", []),
                             stream=req.stream is not False)


def embed_to_canonical(req: OLEmbedRequest) -> EmbeddingRequest:
    texts = [req.input] if isinstance(req.input, str) else list(req.input)
    if not texts or not all(texts):
        raise InvalidRequest("'input' must be a non-empty string or list of strings.", param="input")
    return EmbeddingRequest(req.model, texts, req.dimensions)


# ---- canonical -> upstream request (egress) ---------------------------------------------------


def _images_out(parts: list[Any]) -> list[str]:
    out = []
    for p in parts:
        if isinstance(p, ImagePart):
            if p.data is None:
                raise InvalidRequest("Ollama accepts images only as base64 data (a data: URL), not as links.",
                                     param="messages", code="unsupported_image")
            out.append(p.data)
    return out


def _message_out(m: Message, names: dict[str, str], out: list[dict[str, Any]]) -> None:
    if m.role == "tool" or any(isinstance(p, ToolResultPart) for p in m.content):
        for p in m.content:
            if isinstance(p, ToolResultPart):
                text = p.text()
                msg: dict[str, Any] = {"role": "tool", "content": f"Error: {text}" if p.is_error else text,
                                       "tool_name": names.get(p.tool_call_id, "")}
                images = _images_out(p.content)
                if images:
                    msg["images"] = images
                out.append(msg)
        rest: list[Part] = [p for p in m.content if not isinstance(p, ToolResultPart)]
        if rest:
            _message_out(Message("user", rest), names, out)
        return
    msg = {"role": m.role, "content": m.text()}
    images = _images_out(m.content)
    if images:
        msg["images"] = images
    if m.role == "assistant":
        thinking = "".join(p.text for p in m.content if isinstance(p, ThinkingPart))
        if thinking:
            msg["thinking"] = thinking
        calls = []
        for p in m.content:
            if isinstance(p, ToolCallPart):
                names[p.id] = p.name
                calls.append({"id": p.id, "function": {"name": p.name, "arguments": tool_input(p.arguments)}})
        if calls:
            msg["tool_calls"] = calls
    out.append(msg)


def sampling_options(req: ChatRequest | CompletionRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if req.max_tokens is not None:
        options["num_predict"] = req.max_tokens
    for name in ("temperature", "top_p", "top_k", "seed"):
        value = getattr(req, name, None)
        if value is not None:
            options[name] = value
    if req.stop:
        options["stop"] = req.stop
    return options


def chat_body(req: ChatRequest, model: str, defaults: dict[str, Any], keep_alive: Any, stream: bool) -> dict[str, Any]:
    """Config defaults < canonical fields < what an Ollama client asked for itself."""
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": req.system_text()})
    names: dict[str, str] = {}
    for m in req.messages:
        _message_out(m, names, messages)
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    tc = req.tool_choice
    if req.tools and not (tc is not None and tc.mode == "none"):
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description or "", "parameters": t.parameters}} for t in req.tools]
    fmt = req.response_format or {}
    if fmt.get("type") == "json_object":
        body["format"] = "json"
    elif fmt.get("type") == "json_schema" and (fmt.get("json_schema") or {}).get("schema"):
        body["format"] = fmt["json_schema"]["schema"]
    if req.reasoning:
        body["think"] = True
    return _with_extras(body, req.extra.get("ollama", {}), sampling_options(req), defaults, keep_alive)


def _with_extras(body: dict[str, Any], extra: dict[str, Any], sampling: dict[str, Any],
                 defaults: dict[str, Any], keep_alive: Any) -> dict[str, Any]:
    options = {**defaults, **sampling, **(extra.get("options") or {})}
    if options:
        body["options"] = options
    for k, v in extra.items():
        if k != "options":
            body[k] = v
    if keep_alive is not None:
        body.setdefault("keep_alive", keep_alive)
    return body


def generate_body(req: CompletionRequest, model: str, defaults: dict[str, Any], keep_alive: Any,
                  stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "prompt": req.prompt, "stream": stream}
    if req.suffix is not None:
        body["suffix"] = req.suffix
    return _with_extras(body, {}, sampling_options(req), defaults, keep_alive)


# ---- upstream reply -> canonical ----------------------------------------------------------------


def tool_call_parts(calls: list[OLToolCall] | None, offset: int = 0) -> list[ToolCallPart]:
    out = []
    for k, tc in enumerate(calls or ()):
        args = tc.function.arguments
        arguments = args if isinstance(args, str) else json_encode(args or {}).decode()
        out.append(ToolCallPart(tc.id or f"call_{uuid.uuid4().hex[:12]}_{offset + k}", tc.function.name, arguments))
    return out


def stop_reason(done_reason: str | None, called_tools: bool) -> StopReason:
    if done_reason == "length":
        return "length"
    return "tool_calls" if called_tools else "end"


def response_to_canonical(resp: OLResponse, response_id: str, model: str) -> ChatResponse:
    parts: list[Part] = []
    msg = resp.message
    thinking = msg.thinking if msg else resp.thinking
    text = msg.content if msg else (resp.response or "")
    if thinking:
        parts.append(ThinkingPart(thinking))
    if text:
        parts.append(TextPart(text))
    calls = tool_call_parts(msg.tool_calls if msg else None)
    parts.extend(calls)
    return ChatResponse(response_id, model, parts, stop_reason(resp.done_reason, bool(calls)), usage=resp.usage())
