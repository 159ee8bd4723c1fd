"""A misbehaving upstream that speaks every provider's wire format and leaks in its errors.

It answers on the paths of all five provider types: OpenAI `/v1/chat/completions`, Anthropic
`/v1/messages`, Ollama `/api/chat`, Bedrock `/model/{id}/converse[-stream]` and Gemini
`/v1beta/models/{model}:(stream)generateContent`. What it does is chosen by a mode named in the
configured model id (so in the path or the body): `fail-400`, `fail-401`, `fail-429`, `fail-500`
answer with that status and the dialect's error body (Bedrock: `x-amzn-ErrorType`; Gemini:
google.rpc status; 429s carry `Retry-After: 17`, Gemini's also RetryInfo `17s`); `midstream`
starts a normal stream (one text delta) and then sends the dialect's in-stream error;
`redirect` answers 302 with the leaking text in a JSON body; `error-200` sends the dialect's
error body (as for 500) with status 200.

Every error text echoes what a careless server would: the credential it received
(Authorization, x-api-key, x-goog-api-key), its own URL, an internal host and IP, and a Python
traceback. Error codes outside each dialect's documented set carry an IP too. Tests assert that
none of it reaches the gateway's client (`leaks()` lists the strings to look for).
"""
from __future__ import annotations

import json
import re

from aiohttp import web

from .bedrock_wire import event_frame, exception_frame

INTERNAL_HOST = "inference-7.gpu.internal"
INTERNAL_IP = "10.20.30.40"
CODE_IP = "10.9.8.7"
RETRY_AFTER = "17"
TRACEBACK = ('Traceback (most recent call last):\n  File "/srv/hostile/server.py", line 42, in handle\n'
             '    check(secret_locals)\nValueError: bad request')
_MODE = re.compile(r"(fail-\d{3}|midstream|redirect|error-200)")

OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
                500: "server_error"}
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
                   500: "api_error"}
BEDROCK_TYPES = {400: "ValidationException", 401: "UnrecognizedClientException", 429: "ThrottlingException",
                 500: "InternalServerException"}
GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


def leaks(port: int, credentials: list[str]) -> list[str]:
    """Strings that must never appear in what the gateway answers."""
    return [*credentials, f"127.0.0.1:{port}", INTERNAL_HOST, INTERNAL_IP, CODE_IP, "Traceback",
            "/srv/hostile", "secret_locals", "ValueError"]


def leak_text(request: web.Request) -> str:
    creds = " ".join(v for h in ("Authorization", "x-api-key", "x-goog-api-key") if (v := request.headers.get(h)))
    return (f"Request with credentials '{creds}' failed at {request.url} "
            f"(backend {INTERNAL_HOST} at {INTERNAL_IP}:8000)\n{TRACEBACK}")


def _dialect(path: str) -> str:
    if path.startswith("/v1/chat/completions"):
        return "openai"
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/api/"):
        return "ollama"
    if path.startswith("/model/"):
        return "bedrock"
    return "gemini"


def error_response(dialect: str, status: int, text: str) -> web.Response:
    headers = {"Retry-After": RETRY_AFTER} if status == 429 else {}
    body: dict
    if dialect == "openai":
        body = {"error": {"message": text, "type": OPENAI_TYPES[status], "param": None,
                          "code": f"internal-ref {CODE_IP}"}}
    elif dialect == "anthropic":
        body = {"type": "error", "error": {"type": ANTHROPIC_TYPES[status], "message": text}}
    elif dialect == "ollama":
        body = {"error": text}
    elif dialect == "bedrock":
        headers["x-amzn-ErrorType"] = f"{BEDROCK_TYPES[status]}:http://{INTERNAL_HOST}/"
        body = {"message": text}
    else:
        details: list[dict] = [{"@type": "type.googleapis.com/google.rpc.DebugInfo", "detail": text}]
        if status == 429:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{RETRY_AFTER}s"})
        body = {"error": {"code": status, "message": text, "status": GEMINI_STATUS[status], "details": details}}
    return web.json_response(body, status=status, headers=headers)


async def _midstream(request: web.Request, dialect: str, model: str, text: str) -> web.StreamResponse:
    ctype = {"ollama": "application/x-ndjson", "bedrock": "application/vnd.amazon.eventstream"}.get(
        dialect, "text/event-stream")
    resp = web.StreamResponse(headers={"Content-Type": ctype})
    await resp.prepare(request)
    if dialect == "openai":
        chunk = {"id": "chatcmpl-h", "object": "chat.completion.chunk", "created": 1, "model": model,
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]}
        error = {"error": {"message": text, "type": "server_error", "code": f"internal-ref {CODE_IP}"}}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\ndata: " + json.dumps(error).encode() + b"\n\n")
    elif dialect == "anthropic":
        start = {"type": "message_start", "message": {
            "id": "msg_h", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}
        frames = [("message_start", start),
                  ("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}}),
                  ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": "hi"}}),
                  ("error", {"type": "error", "error": {"type": "overloaded_error", "message": text}})]
        await resp.write(b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in frames))
    elif dialect == "ollama":
        line = {"model": model, "created_at": "2026-12-01T00:00:00Z",
                "message": {"role": "assistant", "content": "hi"}, "done": False}
        await resp.write(json.dumps(line).encode() + b"\n" + json.dumps({"error": text}).encode() + b"\n")
    elif dialect == "bedrock":
        await resp.write(event_frame("messageStart", {"role": "assistant"})
                         + event_frame("contentBlockDelta", {"delta": {"text": "hi"}, "contentBlockIndex": 0})
                         + exception_frame("modelStreamErrorException", {"message": text}))
    else:
        chunk = {"candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}, "index": 0}]}
        error = {"error": {"code": 500, "message": text, "status": "INTERNAL"}}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\ndata: " + json.dumps(error).encode()
                         + b"\r\n\r\n")
    await resp.write_eof()
    return resp


async def handle(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    dialect = _dialect(request.path)
    found = _MODE.search(request.path) or _MODE.search(raw.decode(errors="replace"))
    if found is None:
        return web.json_response({"error": "no mode in the model id"}, status=404)
    mode = found.group(1)
    text = leak_text(request)
    if mode == "redirect":  # a proxy's login page or a moved endpoint: not an answer
        return web.json_response({"detail": text}, status=302, headers={"Location": f"http://{INTERNAL_HOST}/login"})
    if mode == "error-200":  # the dialect's error body with a success status
        response = error_response(dialect, 500, text)
        response.set_status(200)
        return response
    if mode == "midstream":
        model = (json.loads(raw).get("model") if raw.startswith(b"{") else None) or "hostile"
        return await _midstream(request, dialect, model, text)
    return error_response(dialect, int(mode[5:]), text)


def make_app(recorder) -> web.Application:
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    return app
