"""OpenAI wire-format test upstream: /v1/chat/completions (JSON and SSE with `data: [DONE]`),
/v1/completions (with `suffix`), /v1/embeddings, /v1/models.

Conventions (shared by every test upstream): the reply is `echo: <last user text>`; `TOOL`
in that text makes it call the first offered tool with {"city": "Paris"} (`TOOL2`: twice,
Paris and Rome); `THINK` adds reasoning_content "thinking about it"; `FAIL500`/`FAIL429`
answer with that error; `SLOW` waits 3 s; `HALFSEC` waits 0.5 s; `CUTSTREAM` aborts a stream after two chunks;
`NOUSAGE` omits usage; `FILTERED` ends the answer with finish_reason content_filter; `DRIP` streams one chunk every 50 ms (for clients that hang up
mid-stream). Usage counts whitespace-separated words. Requires
`Authorization: Bearer test-openai-key`.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time

from aiohttp import web

API_KEY = "test-openai-key"
MODELS = ["up-chat", "up-embed", "up-reasoner"]


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _words(s: str) -> int:
    return len(s.split())


def _err(status: int, message: str, type_: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "param": None, "code": None}}, status=status)


def plan(body: dict) -> dict:
    """What to answer for a chat body: text, tool calls, reasoning, usage."""
    msgs = body.get("messages", [])
    last_user = next((m for m in reversed(msgs) if m.get("role") in ("user", "tool")), {})
    text = _text(last_user.get("content"))
    prompt_words = sum(_words(_text(m.get("content"))) for m in msgs)
    tools = body.get("tools") or []
    out = {"text": f"echo: {text}", "calls": [], "reasoning": None, "finish": "stop", "stop_seq": None}
    if "THINK" in text:
        out["reasoning"] = "thinking about it"
    if tools and last_user.get("role") == "user" and "TOOL" in text:
        name = tools[0]["function"]["name"]
        cities = ["Paris", "Rome"] if "TOOL2" in text else ["Paris"]
        out["calls"] = [{"id": f"call_{i}_{name}", "type": "function",
                         "function": {"name": name, "arguments": json.dumps({"city": c})}}
                        for i, c in enumerate(cities)]
        out["text"] = None
        out["finish"] = "tool_calls"
    stops = body.get("stop") or []
    if isinstance(stops, str):
        stops = [stops]
    if out["text"]:
        for s in stops:
            if s in out["text"]:
                out["text"] = out["text"][: out["text"].index(s)]
                out["finish"] = "stop"
                break
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit and _words(out["text"]) > limit:
            out["text"] = " ".join(out["text"].split()[:limit])
            out["finish"] = "length"
    completion = _words(out["text"] or "") + 5 * len(out["calls"])
    out["usage"] = {"prompt_tokens": prompt_words, "completion_tokens": completion,
                    "total_tokens": prompt_words + completion}
    if "FILTERED" in text:
        out["finish"] = "content_filter"
    out["trigger"] = text
    return out


def _pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    p = plan(body)
    trig = p["trigger"]
    if "FAIL500" in trig:
        return _err(500, "The server had an error while processing your request.", "server_error")
    if "FAIL429" in trig:
        return _err(429, "Rate limit reached for requests", "rate_limit_error")
    if "SLOW" in trig:
        await asyncio.sleep(3)
    if "HALFSEC" in trig:
        await asyncio.sleep(0.5)
    model = body.get("model")
    cid = "chatcmpl-test" + hashlib.md5(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
    created = int(time.time())
    if not body.get("stream"):
        msg = {"role": "assistant", "content": p["text"]}
        if "BADCONTENT" in trig:  # an answer whose content is not a string (a broken upstream)
            msg["content"] = 5
        if p["calls"]:
            msg["tool_calls"] = p["calls"]
        if p["reasoning"]:
            msg["reasoning_content"] = p["reasoning"]
        resp = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": msg, "finish_reason": p["finish"], "logprobs": None}]}
        if "NOUSAGE" not in trig:
            resp["usage"] = p["usage"]
        return web.json_response(resp)
    want_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)

    async def send(delta: dict, finish=None, **extra) -> None:
        chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if want_usage:
            chunk["usage"] = None
        chunk.update(extra)
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    await send({"role": "assistant", "content": ""})
    if p["reasoning"]:
        for piece in _pieces(p["reasoning"]):
            await send({"reasoning_content": piece})
    sent = 0
    for piece in _pieces(p["text"] or ""):
        await send({"content": piece})
        sent += 1
        if "DRIP" in trig:
            await asyncio.sleep(0.05)
        if "CUTSTREAM" in trig and sent == 2:
            request.transport.close()
            return resp
    for i, call in enumerate(p["calls"]):
        await send({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                    "function": {"name": call["function"]["name"], "arguments": ""}}]})
        args = call["function"]["arguments"]
        for j in range(0, len(args), 7):
            await send({"tool_calls": [{"index": i, "function": {"arguments": args[j:j + 7]}}]})
    await send({}, p["finish"])
    if want_usage and "NOUSAGE" not in trig:
        chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [], "usage": p["usage"]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    prompt = body.get("prompt", "")
    suffix = body.get("suffix")
    text = f"<fim {len(prompt)}|{len(suffix)}>" if suffix is not None else f"echo: {prompt}"
    usage = {"prompt_tokens": _words(prompt) + _words(suffix or ""), "completion_tokens": _words(text)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    base = {"id": "cmpl-test", "object": "text_completion", "created": int(time.time()), "model": body.get("model")}
    if not body.get("stream"):
        return web.json_response({**base, "choices": [{"index": 0, "text": text, "finish_reason": "stop",
                                                      "logprobs": None}], "usage": usage})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for piece in _pieces(text):
        chunk = {**base, "choices": [{"index": 0, "text": piece, "finish_reason": None, "logprobs": None}]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    chunk = {**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]}
    await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp


def vector(text: str, dims: int = 8) -> list[float]:
    d = hashlib.sha256(text.encode()).digest()
    return [round((d[i] - 128) / 128, 6) for i in range(dims)]


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    inp = body["input"]
    texts = [inp] if isinstance(inp, str) else inp
    data = [{"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(texts)]
    n = sum(_words(t) for t in texts)
    return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                              "usage": {"prompt_tokens": n, "total_tokens": n}})


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in MODELS]})


def make_app(recorder) -> web.Application:
    @web.middleware
    async def auth(request: web.Request, handler):
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _err(401, "Incorrect API key provided.", "invalid_request_error")
        return await handler(request)

    app = web.Application(middlewares=[auth], client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    return app
