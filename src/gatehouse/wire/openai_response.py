"""OpenAI responses ⇄ canonical responses: parsing upstream replies (egress) and rendering
canonical replies as OpenAI JSON (ingress)."""
from __future__ import annotations

import time
from typing import Any

import msgspec
from msgspec import Struct

from gatehouse.types import (
    ChatResponse,
    Part,
    StopReason,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
)
from gatehouse.wire.openai import OAToolCall

# ---- OpenAI response -> canonical ---------------------------------------------------------------


class OAPromptDetails(Struct, omit_defaults=True):
    cached_tokens: int | None = 0


class OACompletionDetails(Struct, omit_defaults=True):
    reasoning_tokens: int | None = 0


class OAUsage(Struct, omit_defaults=True):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    total_tokens: int | None = 0
    prompt_tokens_details: OAPromptDetails | None = None
    completion_tokens_details: OACompletionDetails | None = None

    def canonical(self) -> Usage:
        return Usage(
            input_tokens=self.prompt_tokens or 0,
            output_tokens=self.completion_tokens or 0,
            cache_read_tokens=(self.prompt_tokens_details.cached_tokens or 0)
            if self.prompt_tokens_details else 0,
            reasoning_tokens=(self.completion_tokens_details.reasoning_tokens or 0)
            if self.completion_tokens_details else 0,
        )


class OARespMessage(Struct, omit_defaults=True):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[OAToolCall] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # some servers (Ollama, OpenRouter) use this name


class OAChoice(Struct, omit_defaults=True):
    index: int = 0
    message: OARespMessage | None = None
    text: str | None = None  # completions
    finish_reason: str | None = None
    stop_reason: str | int | None = None  # vLLM: the stop string (or token id) that matched


def stop_from_finish(finish: str | None, matched: str | int | None) -> tuple[StopReason, str | None]:
    """OpenAI's `stop` covers both a natural end and a stop sequence; vLLM's `stop_reason`
    names the sequence, which Anthropic clients get back as `stop_sequence`."""
    if finish == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    return FINISH_TO_STOP.get(finish, "end"), None


class OAResponse(Struct, omit_defaults=True):
    id: str = ""
    model: str = ""
    created: int = 0
    choices: list[OAChoice] = []
    usage: OAUsage | None = None


class OAUsageOnly(Struct):
    usage: OAUsage | None = None
    error: Any = None  # an error body sent with a 2xx status: never relayed


class _FinishChoice(Struct):
    finish_reason: str | None = None


class OAUsageFinish(OAUsageOnly):
    """OAUsageOnly and the choices' finish reasons, in the same pass (a traced attempt's)."""

    choices: list[_FinishChoice] = []

    def finish(self) -> tuple[str, ...]:
        return tuple(c.finish_reason for c in self.choices if c.finish_reason)


class _TextMessage(Struct):
    content: str | None = None


class _TextChoice(Struct):
    message: _TextMessage | None = None
    text: str | None = None


class OAUsageTexts(OAUsageOnly):
    """OAUsageOnly, and the answer's text as the output guardrails read it (api/openai.py
    `answer_texts`): one pass over a forwarded answer a guardrail checks (CallContext.answer_texts)."""

    choices: list[_TextChoice] = []

    def texts(self) -> list[str]:
        if not self.choices:
            return []
        c = self.choices[0]
        text = c.message.content if c.message is not None else c.text
        return [text] if text else []


FINISH_TO_STOP: dict[str | None, StopReason] = {
    "stop": "end", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
    "content_filter": "content_filter", None: "end",
}
STOP_TO_FINISH: dict[str, str] = {
    "end": "stop", "length": "length", "tool_calls": "tool_calls", "stop_sequence": "stop",
    "content_filter": "content_filter", "error": "stop",
}

response_decoder = msgspec.json.Decoder(OAResponse)
usage_only_decoder = msgspec.json.Decoder(OAUsageOnly)
usage_finish_decoder = msgspec.json.Decoder(OAUsageFinish)
usage_texts_decoder = msgspec.json.Decoder(OAUsageTexts)


def response_to_canonical(resp: OAResponse, fallback_model: str) -> ChatResponse:
    choice = resp.choices[0] if resp.choices else OAChoice(message=OARespMessage())
    msg = choice.message or OARespMessage(content=choice.text)
    parts: list[Part] = []
    reasoning = msg.reasoning_content or msg.reasoning
    if reasoning:
        parts.append(ThinkingPart(reasoning))
    if msg.content:
        parts.append(TextPart(msg.content))
    for tc in msg.tool_calls or ():
        parts.append(ToolCallPart(tc.id, tc.function.name, tc.function.arguments or "{}"))
    stop, stop_sequence = stop_from_finish(choice.finish_reason, choice.stop_reason)
    if msg.tool_calls and stop == "end":
        stop = "tool_calls"
    return ChatResponse(
        id=resp.id or "chatcmpl-gatehouse",
        model=resp.model or fallback_model,
        content=parts,
        stop_reason=stop,
        stop_sequence=stop_sequence,
        usage=resp.usage.canonical() if resp.usage else Usage(estimated=True),
        created=resp.created or int(time.time()),
    )


# ---- canonical -> OpenAI response (ingress rendering) -------------------------------------------


def usage_out(u: Usage) -> dict[str, Any]:
    d: dict[str, Any] = {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    }
    if u.cache_read_tokens:
        d["prompt_tokens_details"] = {"cached_tokens": u.cache_read_tokens}
    if u.reasoning_tokens:
        d["completion_tokens_details"] = {"reasoning_tokens": u.reasoning_tokens}
    return d


def render_response(resp: ChatResponse, model: str) -> dict[str, Any]:
    text = "".join(p.text for p in resp.content if isinstance(p, TextPart))
    calls = [p for p in resp.content if isinstance(p, ToolCallPart)]
    thinking = "".join(p.text for p in resp.content if isinstance(p, ThinkingPart))
    message: dict[str, Any] = {"role": "assistant", "content": text if (text or not calls) else None}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    if thinking:
        message["reasoning_content"] = thinking
    return {
        "id": resp.id if resp.id.startswith("chatcmpl") else f"chatcmpl-{resp.id}",
        "object": "chat.completion",
        "created": resp.created or int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": STOP_TO_FINISH[resp.stop_reason],
            "logprobs": None,
        }],
        "usage": usage_out(resp.usage),
    }


def render_completion(resp: ChatResponse, model: str) -> dict[str, Any]:
    text = "".join(p.text for p in resp.content if isinstance(p, TextPart))
    return {
        "id": resp.id if resp.id.startswith("cmpl") else f"cmpl-{resp.id}",
        "object": "text_completion",
        "created": resp.created or int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": STOP_TO_FINISH[resp.stop_reason], "logprobs": None}],
        "usage": usage_out(resp.usage),
    }


def render_embeddings(vectors: list[list[float]], model: str, usage: Usage,
                      encoding_format: str | None = None) -> dict[str, Any]:
    if encoding_format == "base64":  # what the openai SDK asks for by default: float32 LE
        import array
        import base64

        encoded: list[Any] = [base64.b64encode(array.array("f", v).tobytes()).decode() for v in vectors]
    else:
        encoded = vectors
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(encoded)],
        "model": model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }
