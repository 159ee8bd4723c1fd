"""AWS Bedrock Runtime wire format (Converse, InvokeModel embeddings) ⇄ canonical types.
Bedrock's error types are mapped onto the gateway's errors in wire/errors_bedrock.py.

Converse is strict where the dialects are lenient: roles must alternate starting with a
user turn, text blocks must not be blank, every toolResult must answer a toolUse of the
previous turn, and toolConfig must be present whenever tool blocks appear. The request
builder below normalises canonical requests into that shape instead of letting Bedrock
reject them.
"""
from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from gatehouse.config import GuardrailConfig
from gatehouse.errors import InvalidRequest
from gatehouse.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
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
from gatehouse.wire.anthropic import EFFORT_BUDGETS  # Claude's thinking budgets, the same on Bedrock
from gatehouse.wire.common import tool_input

IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}


# ---- canonical -> Converse -------------------------------------------------------------------


def _image(p: ImagePart) -> dict[str, Any]:
    if p.data is None:
        raise InvalidRequest("Bedrock accepts images only as base64 data (a data: URL), not as links.",
                             param="messages", code="unsupported_image")
    fmt = IMAGE_FORMATS.get((p.media_type or "image/png").lower())
    if fmt is None:
        raise InvalidRequest(f"Bedrock does not accept images of type '{p.media_type}' (png, jpeg, gif, webp).",
                             param="messages", code="unsupported_image")
    return {"image": {"format": fmt, "source": {"bytes": p.data}}}


def _result(p: ToolResultPart) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for c in p.content:
        if isinstance(c, TextPart):
            content.append({"text": c.text})
        else:
            content.append(_image(c))
    result: dict[str, Any] = {"toolUseId": p.tool_call_id, "content": content or [{"text": ""}]}
    if p.is_error:
        result["status"] = "error"
    return {"toolResult": result}


def _blocks(m: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, TextPart):
            if p.text.strip():  # Converse rejects blank text blocks
                out.append({"text": p.text})
            if p.cache_control:
                out.append({"cachePoint": {"type": "default"}})
        elif isinstance(p, ImagePart):
            out.append(_image(p))
        elif isinstance(p, ToolCallPart):
            out.append({"toolUse": {"toolUseId": p.id, "name": p.name, "input": tool_input(p.arguments)}})
        elif isinstance(p, ToolResultPart):
            out.append(_result(p))
        elif isinstance(p, ThinkingPart) and m.role == "assistant":
            # Only signed reasoning can be replayed; unsigned text (from another dialect) cannot.
            if p.redacted_data:
                out.append({"reasoningContent": {"redactedContent": p.redacted_data}})
            elif p.signature:
                out.append({"reasoningContent": {"reasoningText": {"text": p.text, "signature": p.signature}}})
    return out


def _messages(req: ChatRequest, system: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Canonical messages -> alternating Converse turns (tool results become user turns)."""
    turns: list[dict[str, Any]] = []
    for m in req.messages:
        if m.role == "system":
            system.extend({"text": p.text} for p in m.content if isinstance(p, TextPart) and p.text.strip())
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # results first in a user turn, as Claude requires
        if turn["role"] == "user" and len(turn["content"]) > 1:
            turn["content"].sort(key=lambda b: "toolResult" not in b)
    return turns


def _tool_spec(t: Tool) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {"name": t.name, "inputSchema": {"json": t.parameters}}
    if t.description:
        spec["description"] = t.description
    out: list[dict[str, Any]] = [{"toolSpec": spec}]
    if t.cache_control:
        out.append({"cachePoint": {"type": "default"}})
    return out


def _tool_config(req: ChatRequest, turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    used = [b["toolUse"]["name"] for t in turns for b in t["content"] if "toolUse" in b]
    has_tool_blocks = bool(used) or any("toolResult" in b for t in turns for b in t["content"])
    tc = req.tool_choice
    tools = req.tools
    if tools and tc is not None and tc.mode == "none" and not has_tool_blocks:
        return None  # Converse has no "none": not offering the tools is the equivalent
    if not tools:
        if not has_tool_blocks:
            return None
        # A history with tool calls but no tool list (clients drop it on the last turn):
        # Converse still wants toolConfig, so declare the tools that were used.
        tools = [Tool(name) for name in dict.fromkeys(used)] or [Tool("tool")]
    config: dict[str, Any] = {"tools": [s for t in tools for s in _tool_spec(t)]}
    if tc is not None and req.tools:
        if tc.mode == "required":
            config["toolChoice"] = {"any": {}}
        elif tc.mode == "tool" and tc.name:
            config["toolChoice"] = {"tool": {"name": tc.name}}
        elif tc.mode == "auto":
            config["toolChoice"] = {"auto": {}}
    return config


def is_anthropic(model_id: str) -> bool:
    return "anthropic." in model_id


def converse_body(req: ChatRequest, model_id: str, defaults: dict[str, Any],
                  guardrail: GuardrailConfig | None, stream: bool) -> dict[str, Any]:
    system: list[dict[str, Any]] = []
    for p in req.system:
        if p.text.strip():
            system.append({"text": p.text})
        if p.cache_control:
            system.append({"cachePoint": {"type": "default"}})
    turns = _messages(req, system)
    body: dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = system
    inference: dict[str, Any] = {}
    if req.max_tokens is not None:
        inference["maxTokens"] = req.max_tokens
    if req.temperature is not None:
        inference["temperature"] = req.temperature
    if req.top_p is not None:
        inference["topP"] = req.top_p
    if req.stop:
        inference["stopSequences"] = req.stop
    if inference:
        body["inferenceConfig"] = inference
    tool_config = _tool_config(req, turns)
    if tool_config:
        body["toolConfig"] = tool_config
    extra = dict(defaults)
    if is_anthropic(model_id):  # knobs Converse has no field for, in Claude's own names
        if req.top_k is not None:
            extra["top_k"] = req.top_k
        budget = _thinking_budget(req.reasoning)
        if budget:
            extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if extra:
        body["additionalModelRequestFields"] = extra
    if guardrail is not None:
        g: dict[str, Any] = {"guardrailIdentifier": guardrail.identifier, "guardrailVersion": guardrail.version}
        if guardrail.trace:
            g["trace"] = guardrail.trace
        if stream and guardrail.stream_processing_mode:
            g["streamProcessingMode"] = guardrail.stream_processing_mode
        body["guardrailConfig"] = g
    return body


def _thinking_budget(reasoning: dict[str, Any] | None) -> int | None:
    if not reasoning:
        return None
    budget = reasoning.get("budget_tokens")
    if isinstance(budget, int) and budget > 0:
        return budget
    return EFFORT_BUDGETS.get(str(reasoning.get("effort")))


# ---- Converse response -> canonical ----------------------------------------------------------


class BRReasoningText(Struct, omit_defaults=True):
    text: str = ""
    signature: str | None = None


class BRReasoning(Struct, omit_defaults=True):
    reasoningText: BRReasoningText | None = None
    redactedContent: str | None = None


class BRToolUse(Struct, omit_defaults=True):
    toolUseId: str = ""
    name: str = ""
    input: Any = None


class BRBlock(Struct, omit_defaults=True):
    text: str | None = None
    toolUse: BRToolUse | None = None
    reasoningContent: BRReasoning | None = None


class BRMessage(Struct, omit_defaults=True):
    role: str = "assistant"
    content: list[BRBlock] = []


class BROutput(Struct, omit_defaults=True):
    message: BRMessage | None = None


class BRUsage(Struct, omit_defaults=True):
    inputTokens: int = 0
    outputTokens: int = 0
    cacheReadInputTokens: int = 0
    cacheWriteInputTokens: int = 0

    def canonical(self) -> Usage:
        # Bedrock counts cached prompt tokens apart; canonical input includes them (OpenAI style).
        return Usage(input_tokens=self.inputTokens + self.cacheReadInputTokens + self.cacheWriteInputTokens,
                     output_tokens=self.outputTokens, cache_read_tokens=self.cacheReadInputTokens,
                     cache_write_tokens=self.cacheWriteInputTokens)


class BRResponse(Struct, omit_defaults=True):
    output: BROutput | None = None
    stopReason: str = "end_turn"
    usage: BRUsage | None = None


response_decoder = msgspec.json.Decoder(BRResponse)

STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end", "tool_use": "tool_calls", "max_tokens": "length", "stop_sequence": "stop_sequence",
    "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
    "model_context_window_exceeded": "length",
}


def response_to_canonical(resp: BRResponse, response_id: str, model: str) -> ChatResponse:
    parts: list[Part] = []
    message = resp.output.message if resp.output and resp.output.message else BRMessage()
    for b in message.content:
        if b.reasoningContent is not None:
            r = b.reasoningContent
            if r.reasoningText is not None:
                parts.append(ThinkingPart(r.reasoningText.text, r.reasoningText.signature))
            elif r.redactedContent:
                parts.append(ThinkingPart(redacted_data=r.redactedContent))
        elif b.toolUse is not None:
            u = b.toolUse
            parts.append(ToolCallPart(u.toolUseId, u.name, json_encode(u.input or {}).decode()))
        elif b.text is not None:
            parts.append(TextPart(b.text))
    return ChatResponse(response_id, model, parts, STOP_REASONS.get(resp.stopReason, "end"),
                        usage=resp.usage.canonical() if resp.usage else Usage(estimated=True))


# ---- InvokeModel embeddings (Titan, Cohere) ----------------------------------------------------

COHERE_BATCH = 96  # Cohere embed on Bedrock takes at most 96 texts per call


def embedding_family(model_id: str) -> str | None:
    if "amazon.titan-embed" in model_id:
        return "titan"
    if "cohere.embed" in model_id:
        return "cohere"
    return None


def titan_body(text: str, dimensions: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"inputText": text}
    if dimensions:
        body["dimensions"] = dimensions
    return body


def cohere_body(texts: list[str], dimensions: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"texts": texts, "input_type": "search_document"}
    if dimensions:
        body["output_dimension"] = dimensions  # Cohere Embed v4
    return body


class TitanEmbedding(Struct):
    embedding: list[float]
    inputTextTokenCount: int = 0


class CohereByType(Struct):
    floats: list[list[float]] = msgspec.field(name="float")


class CohereEmbeddings(Struct):
    embeddings: list[list[float]] | CohereByType


titan_decoder = msgspec.json.Decoder(TitanEmbedding)
cohere_decoder = msgspec.json.Decoder(CohereEmbeddings)


def cohere_vectors(resp: CohereEmbeddings) -> list[list[float]]:
    return resp.embeddings.floats if isinstance(resp.embeddings, CohereByType) else resp.embeddings
