"""A guard-model test server on the OpenAI chat wire, answering like LlamaGuard 3.

The verdict depends on the conversation's text: "hurt" -> `unsafe\\nS1`, "fraud" ->
`unsafe\\nS2`, "both-bad" -> `unsafe\\nS1,S10`, "slow-guard" -> sleeps 3 s, "boom-guard" -> 500,
"garbled" -> an answer in no known format, "half-second-guard" -> sleeps 0.5 s then judges,
anything else -> `safe`. Every request is recorded.
"""
from __future__ import annotations

import asyncio

from aiohttp import web

API_KEY = "test-guard-key"


def verdict(text: str) -> str:
    for word, answer in (("both-bad", "unsafe\nS1,S10"), ("hurt", "unsafe\nS1"), ("fraud", "unsafe\nS2"),
                         ("garbled", "I cannot help with that.")):
        if word in text:
            return answer
    return "safe"


async def chat(request: web.Request) -> web.Response:
    body = await request.json()
    text = "\n".join(m["content"] if isinstance(m["content"], str) else
                     "".join(p.get("text", "") for p in m["content"]) for m in body["messages"])
    if "boom-guard" in text:
        return web.json_response({"error": {"message": "internal", "type": "server_error"}}, status=500)
    if "slow-guard" in text:
        await asyncio.sleep(3)
    if "half-second-guard" in text:
        await asyncio.sleep(0.5)
    return web.json_response({
        "id": "chatcmpl-guard", "object": "chat.completion", "created": 0, "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": verdict(text)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    })


def make_app(recorder) -> web.Application:
    app = web.Application()  # (ServerThread records every request)
    app.router.add_post("/v1/chat/completions", chat)
    return app
