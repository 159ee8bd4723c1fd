"""A scripted OpenAI chat-completions upstream for a Codex CLI task: the first turn asks for a
shell call (`exec_command` writing proof.txt), the turn after the tool's output answers "Done.".
Streams as SSE chunks with usage, as vLLM does."""
from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tests.upstreams.harness import Recorder

COMMAND = "echo gatehouse-ok > proof.txt"


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-codex", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def make_app(recorder: Recorder) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        tool_done = any(m.get("role") == "tool" for m in body["messages"])
        offered = {t["function"]["name"] for t in body.get("tools") or ()}
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        if tool_done or "exec_command" not in offered:
            await resp.write(_chunk(model, {"role": "assistant", "content": "Done."}))
            await resp.write(_chunk(model, {}, "stop"))
        else:
            call = {"index": 0, "id": "call_proof", "type": "function",
                    "function": {"name": "exec_command", "arguments": json.dumps({"cmd": COMMAND})}}
            await resp.write(_chunk(model, {"role": "assistant", "tool_calls": [call]}))
            await resp.write(_chunk(model, {}, "tool_calls"))
        usage = {"id": "chatcmpl-codex", "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": model, "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 5,
                                                          "total_tokens": 55}}
        await resp.write(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app
