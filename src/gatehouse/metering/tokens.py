"""Token estimates for when an upstream reports none.

The estimate is ~4 characters per token (the usual rule of thumb for English text and
code with BPE tokenizers), at least one token per non-empty text. Every record built from
it is flagged `estimated`.
"""
from __future__ import annotations

from gatehouse.types import ChatRequest, ImagePart, TextPart, ThinkingPart, ToolCallPart, ToolResultPart

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
