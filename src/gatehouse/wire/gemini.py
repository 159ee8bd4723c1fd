"""Google Gemini API (generateContent, streamGenerateContent, batchEmbedContents) ⇄ canonical types.

Two Gemini rules shape the translation. Function responses are matched to calls by *name*
(not id), so the name is looked up from the assistant turn that made the call. And Gemini 3
models attach a `thoughtSignature` to each function call that must come back with it on
the next turn; no client dialect has a field for it, so it travels inside the tool call id
(`call_<hex>__ts__<signature, base64url>`), which every client echoes back verbatim.
"""
from __future__ import annotations

import uuid
from typing import Any

import msgspec
from msgspec import Struct

from gatehouse.errors import InvalidRequest
from gatehouse.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Part,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
    Usage,
    json_encode,
)
from gatehouse.wire.common import tool_input

# The OpenAPI-3 subset Gemini accepts in function parameter schemas.
SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
    "propertyOrdering", "default", "items", "minimum", "maximum",
})
EFFORT_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_SIGNATURE_MARK = "__ts__"


# ---- tool call ids carrying thought signatures --------------------------------------------------


def call_id(signature: str | None, given: str | None = None) -> str:
    base = given or f"call_{uuid.uuid4().hex[:24]}"
    if not signature:
        return base
    return base + _SIGNATURE_MARK + signature.replace("+", "-").replace("/", "_").rstrip("=")


def signature_of(tool_call_id: str) -> str | None:
    if _SIGNATURE_MARK not in tool_call_id:
        return None
    sig = tool_call_id.split(_SIGNATURE_MARK, 1)[1].replace("-", "+").replace("_", "/")
    return sig + "=" * (-len(sig) % 4)


def _bare_id(tool_call_id: str) -> str:
    return tool_call_id.split(_SIGNATURE_MARK, 1)[0]


# ---- canonical -> generateContent -------------------------------------------------------------


def gemini_schema(schema: Any) -> Any:
    """Reduce a JSON Schema to what Gemini accepts: drop unknown keywords, fold type unions."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [k for k in kind if k != "null"]
        if "null" in kind:
            out["nullable"] = True
        if len(concrete) > 1:
            out["anyOf"] = [{"type": k} for k in concrete]
        kind = concrete[0] if len(concrete) == 1 else None
    if "const" in schema:
        out["enum"] = [schema["const"]]
    for key, value in schema.items():
        if key == "oneOf":
            key = "anyOf"
        if key not in SCHEMA_KEYS or key == "type":
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: gemini_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = gemini_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [gemini_schema(sub) for sub in value]
        elif key == "enum" and isinstance(value, list):
            out[key] = [str(v) for v in value]  # Gemini enums are strings
        else:
            out[key] = value
    if kind:
        out["type"] = kind
    return out


def _declaration(t: Tool) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": t.name}
    if t.description:
        decl["description"] = t.description
    params = gemini_schema(t.parameters)
    # Gemini refuses an OBJECT schema without properties; a tool without parameters has none.
    if params.get("properties") or params.get("type") not in (None, "object"):
        decl["parameters"] = params
    return decl


def _image(p: ImagePart) -> dict[str, Any]:
    if p.data is None:
        raise InvalidRequest("Gemini accepts images only as base64 data (a data: URL), not as links.",
                             param="messages", code="unsupported_image")
    return {"inlineData": {"mimeType": p.media_type or "image/png", "data": p.data}}


def _result(p: ToolResultPart, names: dict[str, str]) -> dict[str, Any]:
    text = p.text()
    response = {"error": text} if p.is_error else {"result": text}
    return {"functionResponse": {"name": names.get(p.tool_call_id) or _bare_id(p.tool_call_id),
                                 "response": response}}


def _contents(req: ChatRequest, system: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names: dict[str, str] = {}  # tool call id -> function name, for the responses
    contents: list[dict[str, Any]] = []
    for m in req.messages:
        if m.role == "system":
            system.extend({"text": p.text} for p in m.content if isinstance(p, TextPart) and p.text)
            continue
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, TextPart):
                if p.text:
                    parts.append({"text": p.text})
            elif isinstance(p, ImagePart):
                parts.append(_image(p))
            elif isinstance(p, ToolCallPart):
                names[p.id] = p.name
                part: dict[str, Any] = {"functionCall": {"name": p.name, "args": tool_input(p.arguments)}}
                signature = signature_of(p.id)
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
            elif isinstance(p, ToolResultPart):
                parts.append(_result(p, names))
                parts.extend(_image(c) for c in p.content if isinstance(c, ImagePart))
        if not parts:
            continue
        role = "model" if m.role == "assistant" else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def generate_body(req: ChatRequest, defaults: dict[str, Any]) -> dict[str, Any]:
    system: list[dict[str, Any]] = [{"text": p.text} for p in req.system if p.text]
    body: dict[str, Any] = {"contents": _contents(req, system)}
    if system:
        body["systemInstruction"] = {"parts": system}
    tc = req.tool_choice
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in req.tools]}]
        if tc is not None:
            mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[tc.mode]
            calling: dict[str, Any] = {"mode": mode}
            if tc.mode == "tool" and tc.name:
                calling["allowedFunctionNames"] = [tc.name]
            body["toolConfig"] = {"functionCallingConfig": calling}
    config: dict[str, Any] = dict(defaults)
    for name, key in (("max_tokens", "maxOutputTokens"), ("temperature", "temperature"), ("top_p", "topP"),
                      ("top_k", "topK"), ("seed", "seed")):
        value = getattr(req, name)
        if value is not None:
            config[key] = value
    if req.stop:
        config["stopSequences"] = req.stop[:5]  # Gemini takes at most five
    fmt = req.response_format or {}
    if fmt.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif fmt.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    budget = _thinking_budget(req.reasoning)
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    if config:
        body["generationConfig"] = config
    return body


def _thinking_budget(reasoning: dict[str, Any] | None) -> int | None:
    if not reasoning:
        return None
    budget = reasoning.get("budget_tokens")
    if isinstance(budget, int) and budget >= 0:
        return budget
    return EFFORT_BUDGETS.get(str(reasoning.get("effort")))


# ---- generateContent response -> canonical --------------------------------------------------------


class GFunctionCall(Struct, omit_defaults=True):
    name: str = ""
    args: dict[str, Any] | None = None
    id: str | None = None


class GPart(Struct, omit_defaults=True):
    text: str | None = None
    thought: bool = False
    thoughtSignature: str | None = None
    functionCall: GFunctionCall | None = None


class GContent(Struct, omit_defaults=True):
    parts: list[GPart] = []
    role: str = "model"


class GCandidate(Struct, omit_defaults=True):
    content: GContent | None = None
    finishReason: str | None = None


class GUsage(Struct, omit_defaults=True):
    promptTokenCount: int = 0
    candidatesTokenCount: int = 0
    thoughtsTokenCount: int = 0
    toolUsePromptTokenCount: int = 0
    cachedContentTokenCount: int = 0

    def canonical(self) -> Usage:
        return Usage(input_tokens=self.promptTokenCount + self.toolUsePromptTokenCount,
                     output_tokens=self.candidatesTokenCount + self.thoughtsTokenCount,
                     cache_read_tokens=self.cachedContentTokenCount, reasoning_tokens=self.thoughtsTokenCount)


class GPromptFeedback(Struct, omit_defaults=True):
    blockReason: str | None = None


class GErrorDetail(Struct, omit_defaults=True):
    reason: str | None = None
    retryDelay: str | None = None  # google.rpc.RetryInfo, on RESOURCE_EXHAUSTED


class GError(Struct, omit_defaults=True):
    code: int = 500
    message: str = ""
    status: str = ""
    details: list[GErrorDetail] = []


class GResponse(Struct, omit_defaults=True):
    candidates: list[GCandidate] = []
    usageMetadata: GUsage | None = None
    promptFeedback: GPromptFeedback | None = None
    responseId: str | None = None
    error: GError | None = None  # only inside a stream


response_decoder = msgspec.json.Decoder(GResponse)

FINISH: dict[str, StopReason] = {
    "STOP": "end", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "MALFORMED_FUNCTION_CALL": "error",
}


def stop_reason(finish: str | None, called_tools: bool, blocked: bool) -> StopReason:
    if blocked:
        return "content_filter"
    stop = FINISH.get(finish or "STOP", "end")
    return "tool_calls" if called_tools and stop == "end" else stop


def part_to_canonical(p: GPart) -> Part | None:
    if p.functionCall is not None:
        fc = p.functionCall
        return ToolCallPart(call_id(p.thoughtSignature, fc.id), fc.name, json_encode(fc.args or {}).decode())
    if p.text is not None:
        return ThinkingPart(p.text, p.thoughtSignature) if p.thought else TextPart(p.text)
    return None


def response_to_canonical(resp: GResponse, request_id: str, model: str) -> ChatResponse:
    candidate = resp.candidates[0] if resp.candidates else GCandidate()
    parts: list[Part] = []
    for p in candidate.content.parts if candidate.content else ():
        part = part_to_canonical(p)
        if part is not None:
            parts.append(part)
    blocked = not resp.candidates and bool(resp.promptFeedback and resp.promptFeedback.blockReason)
    stop = stop_reason(candidate.finishReason, any(isinstance(p, ToolCallPart) for p in parts), blocked)
    usage = resp.usageMetadata.canonical() if resp.usageMetadata else Usage(estimated=True)
    return ChatResponse(resp.responseId or request_id, model, parts, stop, usage=usage)


# ---- embeddings -----------------------------------------------------------------------------------


def model_path(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def embed_body(model: str, texts: list[str], dimensions: int | None) -> dict[str, Any]:
    path = model_path(model)
    requests = []
    for text in texts:
        item: dict[str, Any] = {"model": path, "content": {"parts": [{"text": text}]}}
        if dimensions:
            item["outputDimensionality"] = dimensions
        requests.append(item)
    return {"requests": requests}


class GValues(Struct):
    values: list[float]


class GEmbeddings(Struct):
    embeddings: list[GValues]


embeddings_decoder = msgspec.json.Decoder(GEmbeddings)
