"""Token estimates: for admission (reserving tokens before the upstream answers) and for
when an upstream reports no usage.

The estimate is ~4 characters per token (the usual rule of thumb for English text and
code with BPE tokenizers), at least one token per non-empty text; an image counts
IMAGE_TOKENS. A chat prompt also pays for its chat template: MESSAGE_TOKENS per message
(turn markers, role, separators) and REQUEST_TOKENS per request (begin-of-text and the
assistant turn the model answers in): "hi" is 11 tokens, as Llama 3, Gemma and ChatML
templates bill it. Every record built from an estimate is flagged `estimated`. Streams
relayed without translation that end without usage count one output token per content
frame (servers send about one token per frame).

`Calibration` corrects the admission estimate per deployment from what upstreams report.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
MESSAGE_TOKENS = 5  # <|start|> role <|sep|> ... <|end|> newline, per message
REQUEST_TOKENS = 5  # begin-of-text, and the assistant header the answer starts from
TOOL_TOKENS = 10  # the {"type": "function", "function": {...}} wrapper around each tool


def estimate_text(text: str) -> int:
    return (len(text) + 3) // 4 if text else 0


def estimate_request(req: ChatRequest) -> int:
    system = req.system_text()
    n = REQUEST_TOKENS + (MESSAGE_TOKENS + estimate_text(system) if system else 0)
    for m in req.messages:
        n += MESSAGE_TOKENS
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
        n += TOOL_TOKENS + estimate_text(t.name) + estimate_text(t.description or "") + estimate_text(str(t.parameters))
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


class Calibration:
    """How far the prompt estimate falls short of what each deployment really bills, learnt
    from the usage upstreams report (in memory, per process).

    Per deployment it keeps a decaying maximum of reported / estimated prompt tokens: a higher
    ratio is taken at once, a lower one pulls it down by DECAY of the gap, so it follows a
    high quantile of recent requests rather than their mean. Admission happens before routing,
    so a model's factor is the largest of the deployments it was served by; it is never below
    1 (the estimate stays the floor) nor above MAX_FACTOR (one odd answer cannot lock a
    consumer out)."""

    DECAY = 0.05
    MAX_FACTOR = 8.0

    def __init__(self) -> None:
        self._deployments: dict[str, float] = {}
        self._served_by: dict[str, set[str]] = {}  # model -> deployments seen answering it
        self._models: dict[str, float] = {}

    def factor(self, model: str) -> float:
        return self._models.get(model, 1.0)

    def observe(self, model: str, deployment: str, estimated: int, reported: int) -> None:
        if estimated <= 0 or reported <= 0:
            return
        ratio = min(self.MAX_FACTOR, reported / estimated)
        seen = self._deployments.get(deployment)
        if seen is None or ratio >= seen:
            seen = ratio
        else:
            seen -= (seen - ratio) * self.DECAY
        self._deployments[deployment] = seen
        served_by = self._served_by.setdefault(model, set())
        served_by.add(deployment)
        self._models[model] = max(1.0, max(self._deployments[d] for d in served_by))
