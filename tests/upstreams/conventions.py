"""Deterministic behaviour shared by every wire-format test upstream.

The reply to a chat request is ``"echo: " + <prompt>`` where the prompt is the text of the
last user turn (multimodal: its text parts joined with one space, as openai_wire does; a turn
holding only tool results: the text of those results). Magic words in the prompt change that:

  TOOL         tools offered -> call the first offered tool with {"city": "Paris"}
  TOOL2        tools offered -> call it twice: {"city": "Paris"} and {"city": "Rome"}
  THINK        the reply begins with a reasoning block "thinking about it"
  FAILnnn      provider-shaped error with HTTP status nnn (each server maps the codes it knows;
               all know 429 and 500)
  FAILnnnONCE  the same, but only the first time this server sees this exact prompt
  SLOW         sleep 3 s before answering
  CUTSTREAM    streaming: a couple of content events, then the TCP connection is aborted
  STREAMERR    streaming: a couple of content events, then the provider's in-stream error

A stop sequence found in the reply truncates it there (stop reason stop_sequence); a max
token limit truncates it to that many words (stop reason max_tokens).

Usage: input tokens = whitespace-separated words of the system prompt and of all message
texts (tool-result text included); output tokens = words of the reply + words of the
thinking text + 5 per tool call. Embeddings: unit vectors of length 8 (or the requested
dimension) derived from sha256 of the input text.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

THINKING_TEXT = "thinking about it"
THINKING_SIGNATURE = "sig-123"
TOOL_ARGS = ({"city": "Paris"}, {"city": "Rome"})
TOOL_CALL_TOKENS = 5
SLOW_SECONDS = 3.0
_FAIL = re.compile(r"FAIL(\d{3})(ONCE)?")


def words(text: str) -> int:
    return len(text.split())


def pieces(text: str) -> list[str]:
    """Word-sized deltas whose concatenation is exactly `text`."""
    parts = re.findall(r"\s*\S+\s*", text)
    return parts or ([text] if text else [])


def chunks(text: str, n: int = 3) -> list[str]:
    """Split a string (e.g. tool-call JSON) into `n` roughly equal consecutive pieces."""
    size = max(1, math.ceil(len(text) / n))
    return [text[i : i + size] for i in range(0, len(text), size)]


def embedding(text: str, dims: int = 8) -> list[float]:
    values = []
    for i in range(dims):
        digest = hashlib.sha256(f"{i}:{text}".encode()).digest()
        values.append(int.from_bytes(digest[:8], "big") / 2**64 * 2 - 1)
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def stable_id(prefix: str, *seed: object, length: int = 24) -> str:
    return prefix + hashlib.sha256(repr(seed).encode()).hexdigest()[:length]


@dataclass
class Reply:
    text: str = ""
    thinking: str | None = None
    tool_calls: list[tuple[str, dict]] = field(default_factory=list)
    stop_reason: str = "end_turn"  # end_turn | max_tokens | stop_sequence | tool_use
    stop_sequence: str | None = None
    output_tokens: int = 0
    cut_stream: bool = False
    stream_error: bool = False


def make_reply(
    prompt: str,
    *,
    tools: Sequence[str] = (),
    max_tokens: int | None = None,
    stop: Sequence[str] | None = (),
    think: bool = True,
    json_mode: bool = False,
) -> Reply:
    """Decide the deterministic reply. `tools`: names of tools the model may call now."""
    reply = Reply(cut_stream="CUTSTREAM" in prompt, stream_error="STREAMERR" in prompt)
    if think and "THINK" in prompt:
        reply.thinking = THINKING_TEXT
    if tools and "TOOL" in prompt:
        count = 2 if "TOOL2" in prompt else 1
        reply.tool_calls = [(tools[0], dict(TOOL_ARGS[i])) for i in range(count)]
        reply.stop_reason = "tool_use"
    else:
        text = json.dumps({"echo": prompt}) if json_mode else "echo: " + prompt
        hits = [(text.find(s), s) for s in stop or () if s and s in text]
        if hits:
            index, seq = min(hits)
            text, reply.stop_reason, reply.stop_sequence = text[:index], "stop_sequence", seq
        parts = pieces(text)
        if max_tokens is not None and len(parts) > max_tokens:
            text, reply.stop_reason, reply.stop_sequence = "".join(parts[:max_tokens]).rstrip(), "max_tokens", None
        reply.text = text
    reply.output_tokens = (
        words(reply.text) + words(reply.thinking or "") + TOOL_CALL_TOKENS * len(reply.tool_calls)
    )
    return reply


class FailureTracker:
    """Answers whether a prompt asks for an injected error (FAILnnn / FAILnnnONCE)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def status(self, prompt: str) -> int | None:
        match = _FAIL.search(prompt)
        if not match:
            return None
        if match.group(2):
            if prompt in self._seen:
                return None
            self._seen.add(prompt)
        return int(match.group(1))


class PromptCache:
    """Remembers cached prefixes so the first use writes the cache and later uses read it."""

    def __init__(self) -> None:
        self._prefixes: set[str] = set()

    def use(self, prefix: str) -> tuple[int, int]:
        """Return (cache_creation_tokens, cache_read_tokens) for a cached prefix."""
        if not prefix:
            return 0, 0
        key = hashlib.sha256(prefix.encode()).hexdigest()
        if key in self._prefixes:
            return 0, words(prefix)
        self._prefixes.add(key)
        return words(prefix), 0


async def pause_if_slow(prompt: str) -> None:
    if "SLOW" in prompt:
        await asyncio.sleep(SLOW_SECONDS)


def abort_connection(request: web.Request) -> None:
    """Drop the TCP connection mid-body so the client sees an unterminated response."""
    transport = request.transport
    if transport is not None:
        transport.abort()
