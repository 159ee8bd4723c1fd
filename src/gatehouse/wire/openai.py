"""OpenAI Chat Completions / Completions / Embeddings wire format ⇄ canonical types."""
from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, Struct

from gatehouse.errors import InvalidRequest
from gatehouse.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
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
from gatehouse.wire.common import (
    Count,
    LogitBias,
    NonNegative,
    Penalty,
    Positive,
    Seed,
    Temperature,
    TopK,
    Unit,
    convert,
)
from gatehouse.wire.screen import SCHEMA, BodySpec

# ---- request structs ---------------------------------------------------------------------


class OAImageURL(Struct, omit_defaults=True):
    url: str
    detail: str | None = None


class OAContentPart(Struct, omit_defaults=True):
    type: str
    text: str | None = None
    image_url: OAImageURL | str | None = None


class OAFunctionCall(Struct, omit_defaults=True):
    name: str = ""
    arguments: str = ""


class OAToolCall(Struct, omit_defaults=True):
    id: str
    function: OAFunctionCall
    type: str = "function"


class OAMessage(Struct, omit_defaults=True):
    role: str
    content: str | list[OAContentPart] | None = None
    name: str | None = None
    tool_calls: list[OAToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class OAFunctionDef(Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class OATool(Struct, omit_defaults=True):
    type: str
    function: OAFunctionDef


class OAStreamOptions(Struct, omit_defaults=True):
    include_usage: bool = False


class _Sampling(Struct, omit_defaults=True):
    """Numeric fields the canonical request does not carry: validated here, forwarded as sent."""

    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    min_p: Unit | None = None
    typical_p: Unit | None = None
    repetition_penalty: Positive | None = None
    length_penalty: Annotated[float, Meta(ge=-1e6, le=1e6)] | None = None
    min_tokens: NonNegative | None = None
    best_of: Count | None = None
    truncate_prompt_tokens: Count | None = None


class OAChatRequest(_Sampling, omit_defaults=True, kw_only=True):
    model: str
    messages: list[OAMessage]
    stream: bool = False
    stream_options: OAStreamOptions | None = None
    max_tokens: Count | None = None
    max_completion_tokens: Count | None = None
    temperature: Temperature | None = None
    top_p: Unit | None = None
    top_k: TopK | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    stop: str | list[str] | None = None
    tools: list[OATool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    seed: Seed | None = None
    user: str | None = None


class OACompletionRequest(_Sampling, omit_defaults=True, kw_only=True):
    model: str
    prompt: str | list[str]
    suffix: str | None = None
    stream: bool = False
    stream_options: OAStreamOptions | None = None
    max_tokens: Count | None = None
    temperature: Temperature | None = None
    top_p: Unit | None = None
    top_k: TopK | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    seed: Seed | None = None
    stop: str | list[str] | None = None


class OAEmbeddingRequest(Struct, omit_defaults=True):
    model: str
    input: str | list[Any]
    dimensions: Count | None = None
    encoding_format: str | None = None
    user: str | None = None


# What the canonical chat request carries; every other defined field is forwarded as sent.
CHAT_FIELDS = frozenset(OAChatRequest.__struct_fields__) - frozenset(_Sampling.__struct_fields__)

# The top-level fields each endpoint defines (OpenAI's, and the sampling extensions of the
# OpenAI-compatible servers behind the gateway: vLLM, llama.cpp, TGI); nothing else is forwarded.
_COMPATIBLE_EXTRAS = frozenset(_Sampling.__struct_fields__) | {
    "ignore_eos", "skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output",
    "stop_token_ids", "bad_words", "allowed_token_ids", "guided_json", "guided_regex", "guided_choice",
    "guided_grammar", "guided_decoding_backend", "guided_whitespace_pattern", "structured_outputs",
    "priority", "return_tokens_as_token_ids", "prompt_logprobs", "grammar", "json_schema", "cache_prompt",
    "mirostat", "mirostat_tau", "mirostat_eta", "dynatemp_range", "dynatemp_exponent", "n_probs",
    "repeat_penalty", "repeat_last_n", "tfs_z", "use_beam_search",
}
_SCHEMAS: dict[str, Any] = {"guided_json": SCHEMA, "json_schema": SCHEMA, "structured_outputs": {"json": SCHEMA}}
CHAT_BODY = BodySpec(
    frozenset(OAChatRequest.__struct_fields__) | _COMPATIBLE_EXTRAS | {
        "audio", "function_call", "functions", "logprobs", "metadata", "modalities", "prediction",
        "prompt_cache_key", "safety_identifier", "service_tier", "store", "verbosity", "web_search_options",
        "chat_template", "chat_template_kwargs", "add_generation_prompt", "continue_final_message",
        "documents", "mm_processor_kwargs", "reasoning",
    },
    {"tools": {"*": {"function": {"parameters": SCHEMA}}}, "functions": {"*": {"parameters": SCHEMA}},
     "response_format": {"json_schema": {"schema": SCHEMA}}, **_SCHEMAS},
)
COMPLETION_BODY = BodySpec(
    frozenset(OACompletionRequest.__struct_fields__) | _COMPATIBLE_EXTRAS | {"echo", "user", "response_format"},
    {"response_format": {"json_schema": {"schema": SCHEMA}}, **_SCHEMAS},
)
EMBEDDING_BODY = BodySpec(
    frozenset(OAEmbeddingRequest.__struct_fields__) | {"truncate_prompt_tokens", "priority", "input_type"})


def parse_chat(obj: dict[str, Any]) -> OAChatRequest:
    req = convert(obj, OAChatRequest)
    if not req.messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    return req


def client_wants_usage(req: OAChatRequest | OACompletionRequest) -> bool:
    return bool(req.stream and req.stream_options and req.stream_options.include_usage)


# ---- OpenAI request -> canonical -----------------------------------------------------------

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _parts(content: str | list[OAContentPart] | None, where: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    out: list[Part] = []
    for i, p in enumerate(content):
        if p.type == "text":
            out.append(TextPart(p.text or ""))
        elif p.type == "image_url" and p.image_url is not None:
            img = p.image_url
            url, detail = (img, None) if isinstance(img, str) else (img.url, img.detail)
            out.append(_image_from_url(url, detail))
        else:
            raise InvalidRequest(
                f"Unsupported content part type '{p.type}'.", param=f"{where}.content[{i}].type"
            )
    return out


def _image_from_url(url: str, detail: str | None) -> ImagePart:
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return ImagePart(data=data, media_type=media_type, detail=detail)
    return ImagePart(url=url, detail=detail)


def to_canonical(req: OAChatRequest, extra: dict[str, Any]) -> ChatRequest:
    system: list[TextPart] = []
    messages: list[Message] = []
    for i, m in enumerate(req.messages):
        where = f"messages[{i}]"
        if m.role not in _ROLES:
            raise InvalidRequest(f"Invalid role '{m.role}'.", param=f"{where}.role")
        if m.role in ("system", "developer"):
            system.extend(p for p in _parts(m.content, where) if isinstance(p, TextPart))
        elif m.role in ("tool", "function"):
            if not m.tool_call_id and m.role == "tool":
                raise InvalidRequest("Tool messages need 'tool_call_id'.", param=f"{where}.tool_call_id")
            results: list[TextPart | ImagePart] = [
                p for p in _parts(m.content, where) if isinstance(p, (TextPart, ImagePart))]
            messages.append(
                Message("tool", [ToolResultPart(m.tool_call_id or m.name or "", results)])
            )
        elif m.role == "assistant":
            parts: list[Part] = []
            if m.reasoning_content:
                parts.append(ThinkingPart(m.reasoning_content))
            parts.extend(_parts(m.content, where))
            for tc in m.tool_calls or ():
                parts.append(ToolCallPart(tc.id, tc.function.name, tc.function.arguments or "{}"))
            messages.append(Message("assistant", parts, name=m.name))
        else:
            messages.append(Message("user", _parts(m.content, where), name=m.name))
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or ())
    tools = [
        Tool(t.function.name, t.function.description, t.function.parameters or {"type": "object", "properties": {}})
        for t in req.tools or ()
        if t.type == "function"
    ]
    reasoning = {"effort": req.reasoning_effort} if req.reasoning_effort else None
    return ChatRequest(
        model=req.model,
        messages=messages,
        system=system,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        stop=stop,
        stream=req.stream,
        tools=tools,
        tool_choice=_tool_choice(req.tool_choice, req.parallel_tool_calls),
        response_format=req.response_format,
        reasoning=reasoning,
        seed=req.seed,
        user=req.user,
        extra={"openai": extra} if extra else {},
    )


def _tool_choice(tc: str | dict[str, Any] | None, parallel: bool | None) -> ToolChoice | None:
    if tc is None:
        return ToolChoice(parallel=parallel) if parallel is not None else None
    if isinstance(tc, str):
        if tc not in ("auto", "none", "required"):
            raise InvalidRequest(f"Invalid tool_choice '{tc}'.", param="tool_choice")
        return ToolChoice(tc, parallel=parallel)  # type: ignore[arg-type]
    name = (tc.get("function") or {}).get("name")
    if not name:
        raise InvalidRequest("tool_choice must name a function.", param="tool_choice.function.name")
    return ToolChoice("tool", name, parallel=parallel)


def completion_to_canonical(req: OACompletionRequest) -> CompletionRequest:
    prompt = req.prompt if isinstance(req.prompt, str) else "".join(req.prompt)
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or ())
    return CompletionRequest(
        model=req.model, prompt=prompt, suffix=req.suffix, max_tokens=req.max_tokens,
        temperature=req.temperature, top_p=req.top_p, stop=stop, stream=req.stream,
    )


def embedding_to_canonical(req: OAEmbeddingRequest) -> EmbeddingRequest:
    inp = req.input
    if isinstance(inp, str):
        texts = [inp]
    elif all(isinstance(x, str) for x in inp):
        texts = list(inp)
    else:
        raise InvalidRequest("Token-id input is not supported; send text.", param="input")
    if not texts:
        raise InvalidRequest("'input' must not be empty.", param="input")
    return EmbeddingRequest(req.model, texts, req.dimensions, req.encoding_format, req.user)


# ---- canonical -> OpenAI request (egress) ------------------------------------------------------


def _content_out(parts: list[Part]) -> str | list[dict[str, Any]] | None:
    texts = [p for p in parts if isinstance(p, TextPart)]
    images = [p for p in parts if isinstance(p, ImagePart)]
    if not images:
        return "".join(p.text for p in texts) if texts else None
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            img: dict[str, Any] = {"url": p.as_data_url()}
            if p.detail:
                img["detail"] = p.detail
            out.append({"type": "image_url", "image_url": img})
    return out


def from_canonical(req: ChatRequest, upstream_model: str, *, include_reasoning: bool = True) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = []
    # System turns in mid-conversation (Anthropic's mid-conversation-system beta) join the
    # leading system message: many chat templates refuse a system message anywhere else.
    system = [req.system_text()] if req.system else []
    system.extend(m.text() for m in req.messages if m.role == "system" and m.text())
    if system:
        msgs.append({"role": "system", "content": "\n\n".join(system)})
    for m in req.messages:
        if m.role == "system":
            continue
        if m.role == "tool" or any(isinstance(p, ToolResultPart) for p in m.content):
            # One canonical message may hold several results (Anthropic puts parallel
            # results in one user turn); OpenAI wants one tool message per call.
            rest: list[Part] = []
            for p in m.content:
                if isinstance(p, ToolResultPart):
                    text = p.text()
                    if p.is_error:
                        text = f"Error: {text}" if text else "Error"
                    msgs.append({"role": "tool", "tool_call_id": p.tool_call_id, "content": text})
                    # Tool messages carry text only; images a tool returned follow as user content.
                    rest.extend(c for c in p.content if isinstance(c, ImagePart))
                else:
                    rest.append(p)
            if rest:
                msgs.append({"role": "user", "content": _content_out(rest)})
            continue
        out: dict[str, Any] = {"role": m.role}
        content = _content_out([p for p in m.content if isinstance(p, (TextPart, ImagePart))])
        out["content"] = content if content is not None else ("" if m.role != "assistant" else None)
        if m.role == "assistant":
            calls = [p for p in m.content if isinstance(p, ToolCallPart)]
            if calls:
                out["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            thinking = "".join(p.text for p in m.content if isinstance(p, ThinkingPart))
            if thinking and include_reasoning:
                out["reasoning_content"] = thinking
        if m.name:
            out["name"] = m.name
        msgs.append(out)
    body: dict[str, Any] = {"model": upstream_model, "messages": msgs}
    for name in ("max_tokens", "temperature", "top_p", "top_k", "seed", "user", "response_format"):
        v = getattr(req, name)
        if v is not None:
            body[name] = v
    if req.stop:
        body["stop"] = req.stop
    if req.tools:
        body["tools"] = [
            {"type": "function", "function": _function_def(t)} for t in req.tools
        ]
    tc = req.tool_choice
    if tc is not None:
        if tc.mode == "tool":
            body["tool_choice"] = {"type": "function", "function": {"name": tc.name}}
        elif tc.mode != "auto" or req.tools:
            body["tool_choice"] = tc.mode
        if tc.parallel is not None and req.tools:
            body["parallel_tool_calls"] = tc.parallel
    if req.reasoning and req.reasoning.get("effort"):
        body["reasoning_effort"] = req.reasoning["effort"]
    for k, v in req.extra.get("openai", {}).items():
        body.setdefault(k, v)
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _function_def(t: Tool) -> dict[str, Any]:
    d: dict[str, Any] = {"name": t.name, "parameters": t.parameters}
    if t.description:
        d["description"] = t.description
    return d
