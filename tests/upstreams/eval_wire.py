"""An OpenAI-wire test upstream for evals: answers scripted by keywords in the last user message.

`Rubric:` makes it a judge: {"pass", "score", "reason"} with pass when the graded answer holds
GOOD. JSONPLEASE answers a JSON object; REFUSE a refusal; FILTERED a content-filter finish;
TOOL a call of the first offered tool with {"city": "Paris"}; SLOW waits 0.3 s; FLAKY answers 503
the first time a prompt is seen, then answers. Anything else: `echo: <text>`.
Chat and legacy completions (`suffix` makes a fill-in-the-middle answer).
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from aiohttp import web

from tests.upstreams.harness import Recorder


def _answer(text: str, tools: list[dict[str, Any]], seen: set[str]) -> tuple[str | None, list[dict[str, Any]], str]:
    if "Rubric:" in text:
        graded = text.split("Answer to grade:", 1)[-1]
        good = "GOOD" in graded
        verdict = {"pass": good, "score": 0.9 if good else 0.1, "reason": "has GOOD" if good else "lacks GOOD"}
        return json.dumps(verdict), [], "stop"
    if "JSONPLEASE" in text:
        return json.dumps({"name": "gate", "size": 3}), [], "stop"
    if "REFUSE" in text:
        return "I'm sorry, but I can't help with that.", [], "stop"
    if "FILTERED" in text:
        return "", [], "content_filter"
    if "TOOL" in text and tools:
        call = {"id": "call_1", "type": "function",
                "function": {"name": tools[0]["function"]["name"], "arguments": json.dumps({"city": "Paris"})}}
        return None, [call], "tool_calls"
    return f"echo: {text}", [], "stop"


def make_app(recorder: Recorder) -> web.Application:
    seen: set[str] = set()

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        text = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        if "FLAKY" in text and text not in seen:
            seen.add(text)  # overloaded the first time: the gateway answers 502/503, the eval retries
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=503)
        if "SLOW" in text:
            await asyncio.sleep(0.3)
        content, calls, finish = _answer(text, body.get("tools") or [], seen)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        words = sum(len(str(m["content"]).split()) for m in body["messages"])
        return web.json_response({
            "id": "chatcmpl-eval", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": words, "completion_tokens": 5, "total_tokens": words + 5}})

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        prompt, suffix = body.get("prompt", ""), body.get("suffix")
        text = f"echo: {prompt}" if suffix is None else re.sub(r"\s+", " ", f"return a + b  # between {len(prompt)}")
        return web.json_response({
            "id": "cmpl-eval", "object": "text_completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    return app
