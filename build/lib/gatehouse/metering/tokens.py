"""Token estimates for when an upstream reports none.

The estimate is ~4 characters per token (the usual rule of thumb for English text and
code with BPE tokenizers), at least one token per non-empty text; an image counts
IMAGE_TOKENS. Every record built from it is flagged `estimated`. Streams relayed without
translation that end without usage count one output token per content frame (servers send
about one token per frame).
"""
from __future__ import annotations

from typing import Any, Callable

import msgspec

from gatehouse.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)

IMAGE_TOKENS = 768  # a mid-size image for most vision models


def estimate_text(text: str) -> int:
    return (len(text) + 3) // 4 if text else 0


def estimate_request(req: ChatRequest) -> int:
    n = estimate_text(req.system_text())
    for m in req.messages:
        n += 4  # role and separators
        for p in m.content:
            if isinstance(p, TextPart):
                n += estimate_text(p.text)
            elif isinstance(p, ImagePart):
                n += IMAGE_TOKENS
            elif isinstance(p, ToolCallPart):
                n += estimate_text(p.name) + estimate_text(p.arguments)
            elif isinstance(p, ToolResultPart):
                n += estimate_text(p.text()) + IMAGE_TOKENS * sum(isinstance(c, ImagePart) for c in p.content)
            elif isinstance(p, ThinkingPart):
                n += estimate_text(p.text)
    for t in req.tools:
        n += estimate_text(t.name) + estimate_text(t.description or "") + estimate_text(str(t.parameters))
    return n


def usage_or_estimate(usage: Usage | None, prompt_estimate: int, output_estimate: Callable[[], int]) -> Usage:
    """The upstream's usage, or — when it reported none — the prompt's estimate and an
    estimate of the output (computed only then), flagged `estimated`."""
    if usage is not None and not (usage.estimated and usage.input_tokens == 0 and usage.output_tokens == 0):
        return usage
    return Usage(input_tokens=prompt_estimate, output_tokens=output_estimate(), estimated=True)


def estimate_result(result: object) -> int:
    """Output tokens of a canonical result: text, thinking and tool-call arguments."""
    if not isinstance(result, ChatResponse):
        return 0  # embeddings have no output tokens
    n = 0
    for p in result.content:
        if isinstance(p, (TextPart, ThinkingPart)):
            n += estimate_text(p.text)
        elif isinstance(p, ToolCallPart):
            n += estimate_text(p.name) + estimate_text(p.arguments)
    return n


# Keys that hold generated text in the JSON replies of the OpenAI, Anthropic and Ollama APIs.
_OUTPUT_KEYS = frozenset({"content", "text", "arguments", "reasoning_content", "reasoning", "thinking",
                          "response", "input"})


def estimate_json_output(body: bytes) -> int:
    """Output tokens of a relayed (untranslated) JSON reply that came without usage: the
    length of the strings under the keys that hold generated text, whatever the dialect."""
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return estimate_text(body.decode(errors="replace"))
    chars = 0
    stack: list[tuple[Any, bool]] = [(doc, False)]
    while stack:
        node, generated = stack.pop()
        if isinstance(node, dict):
            stack.extend((v, generated or k in _OUTPUT_KEYS) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, generated) for v in node)
        elif generated and isinstance(node, str):
            chars += len(node)
    return (chars + 3) // 4 if chars else 0
