"""A test upstream that speaks the OpenAI Responses API itself (POST /v1/responses, JSON and
SSE) besides everything openai_wire serves: for `responses_api: true` deployments.

It answers `echo: <last user text>` (message items or a string input), with a `reasoning` item
carrying `encrypted_content` "enc-<n>" where n counts the reasoning items it was sent back (so a
test sees them arrive untouched), the model id it was asked for in every response object, and
usage with cached and reasoning token details. `CUTSTREAM` closes a stream after
response.created. Requires `Authorization: Bearer test-openai-key`.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.upstreams import openai_wire


def _last_user_text(inp: Any) -> str:
    if isinstance(inp, str):
        return inp
    for item in reversed(inp):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _response(body: dict[str, Any], status: str, output: list[dict[str, Any]], usage: bool) -> dict[str, Any]:
    return {"id": "resp_upstream_1", "object": "response", "created_at": 1, "status": status, "model": body["model"],
            "output": output, "error": None, "incomplete_details": None, "store": body.get("store", True),
            "usage": {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 7,
                      "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 18} if usage else None}


async def responses(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    text = f"echo: {_last_user_text(body.get('input', ''))}"
    sent_back = sum(1 for i in body.get("input", []) if isinstance(i, dict) and i.get("type") == "reasoning") \
        if isinstance(body.get("input"), list) else 0
    output = [{"type": "reasoning", "id": "rs_up", "summary": [], "encrypted_content": f"enc-{sent_back}"},
              {"type": "message", "id": "msg_up", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    if not body.get("stream"):
        return web.json_response(_response(body, "completed", output, True))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    seq = 0

    async def send(kind: str, data: dict[str, Any]) -> None:
        nonlocal seq
        await resp.write(f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': seq, **data})}\n\n"
                         .encode())
        seq += 1

    await send("response.created", {"response": _response(body, "in_progress", [], False)})
    if "CUTSTREAM" in text:
        request.transport.close()
        return resp
    await send("response.output_item.added", {"output_index": 1, "item": {**output[1], "content": []}})
    for word in text.split(" "):
        await send("response.output_text.delta", {"item_id": "msg_up", "output_index": 1, "content_index": 0,
                                                  "delta": word + " "})
    await send("response.output_item.done", {"output_index": 1, "item": output[1]})
    await send("response.completed", {"response": _response(body, "completed", output, True)})
    await resp.write_eof()
    return resp


def make_app(recorder: Any) -> web.Application:
    app = openai_wire.make_app(recorder)
    app.router.add_post("/v1/responses", responses)
    return app
