"""Native Ollama API test upstream (plus its OpenAI-compatible model list).

Routes: POST /api/chat and /api/generate (NDJSON stream by default, one JSON object with
`"stream": false`), POST /api/embed, /api/embeddings (legacy), /api/show; GET /api/tags,
/api/ps, /api/version, /v1/models and `/` ("Ollama is running"). No authentication, as Ollama.

Known models are those of /api/tags: llama3.2:latest (completion, tools), qwen3:0.6b
(completion, tools, thinking) and nomic-embed-text:latest (embedding); a name without a tag
means `:latest`. Others get 404 `{"error": "model 'x' not found"}`; asking a model for a
capability it lacks gets 400 like Ollama ("... does not support thinking/tools/chat"), and so
does a message whose content is not a string (OpenAI-style content arrays).

Behaviour follows conventions.py, except that THINK yields `message.thinking` only when the
request has `think` set (true or a level). options.num_predict limits the reply
(done_reason "length"), options.stop truncates it (done_reason "stop"); `format` ("json" or a
schema) makes the reply `{"echo": <prompt>}`. Errors are `{"error": "..."}`: FAIL429 429,
FAIL500 500, FAIL503 503 ("server busy"); STREAMERR sends an `{"error": ...}` line mid-stream.
`keep_alive` and `options` are not interpreted; the recorder keeps the request body so tests
can check they were passed through.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web

from .conventions import (
    FailureTracker,
    abort_connection,
    embedding,
    make_reply,
    pause_if_slow,
    pieces,
    stable_id,
    words,
)

VERSION = "0.12.6"
MODIFIED_AT = "2025-06-01T12:00:00.000000000Z"
MODELS = {
    "llama3.2:latest": {"size": 2019393189, "family": "llama", "parameter_size": "3.2B",
                        "quantization_level": "Q4_K_M", "capabilities": ["completion", "tools"]},
    "qwen3:0.6b": {"size": 522653767, "family": "qwen3", "parameter_size": "751.63M",
                   "quantization_level": "Q4_K_M", "capabilities": ["completion", "tools", "thinking"]},
    "nomic-embed-text:latest": {"size": 274302450, "family": "nomic-bert", "parameter_size": "137M",
                                "quantization_level": "F16", "capabilities": ["embedding"]},
}
FAILURES = {429: "too many requests, please slow down",
            500: "llama runner process has terminated: exit status 2",
            503: "server busy, please try again.  maximum pending requests exceeded"}
NDJSON = "application/x-ndjson"


def details(name: str) -> dict:
    info = MODELS[name]
    return {"parent_model": "", "format": "gguf", "family": info["family"], "families": [info["family"]],
            "parameter_size": info["parameter_size"], "quantization_level": info["quantization_level"]}


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def resolve(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    full = name if ":" in name else f"{name}:latest"
    return full if full in MODELS else None


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timings(prompt_tokens: int, output_tokens: int) -> dict:
    return {"total_duration": 1_000_000 * (10 + prompt_tokens + output_tokens), "load_duration": 2_000_000,
            "prompt_eval_count": prompt_tokens, "prompt_eval_duration": 1_000_000 * prompt_tokens,
            "eval_count": output_tokens, "eval_duration": 1_000_000 * output_tokens}


class OllamaUpstream:
    def __init__(self) -> None:
        self.failures = FailureTracker()

    async def _body(self, request: web.Request) -> tuple[dict | None, web.Response | None]:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError as exc:
            return None, error(400, f"invalid character in request body: {exc}")
        if not isinstance(body, dict):
            return None, error(400, "json: cannot unmarshal array into Go value of type api.ChatRequest")
        name = body.get("model") or body.get("name")
        if not name:
            return None, error(400, "model is required")
        if resolve(name) is None:
            return None, error(404, f"model '{name}' not found")
        return body, None

    def _check(self, body: dict, needs: list[str]) -> web.Response | None:
        capabilities = MODELS[resolve(body["model"])]["capabilities"]
        for need in needs:
            if need not in capabilities:
                return error(400, f'"{body["model"]}" does not support {need}')
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, err = await self._body(request)
        if err:
            return err
        messages = body.get("messages") or []
        if "completion" not in MODELS[resolve(body["model"])]["capabilities"]:
            return error(400, f'"{body["model"]}" does not support chat')
        err = self._check(body, ["tools"] * bool(body.get("tools")) + ["thinking"] * bool(body.get("think")))
        if err:
            return err
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
                return error(400, f"invalid message: {message!r}")
            if not isinstance(message.get("content", ""), str):  # OpenAI-style content arrays are a 400
                kind = type(message["content"]).__name__.replace("list", "array").replace("dict", "object")
                return error(400, f"json: cannot unmarshal {kind} into Go struct field Message.messages.content of type string")
        last = next((m for m in reversed(messages) if m.get("role") in ("user", "tool")), None)
        prompt = (last or {}).get("content") or ""
        prompt_tokens = sum(words(m.get("content") or "") for m in messages)
        names = [t.get("function", {}).get("name") for t in body.get("tools") or []]
        return await self._answer(request, body, prompt, prompt_tokens, names, chat=True)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body, err = await self._body(request)
        if err:
            return err
        if "completion" not in MODELS[resolve(body["model"])]["capabilities"]:
            return error(400, f'"{body["model"]}" does not support generate')
        err = self._check(body, ["thinking"] * bool(body.get("think")))
        if err:
            return err
        prompt = body.get("prompt") or ""
        if not prompt and not body.get("images"):  # an empty prompt only loads the model
            return web.json_response({"model": body["model"], "created_at": now(), "response": "",
                                      "done": True, "done_reason": "load"})
        prompt_tokens = sum(words(body.get(k) or "") for k in ("system", "prompt", "suffix"))
        return await self._answer(request, body, prompt, prompt_tokens, [], chat=False)

    async def _answer(self, request, body, prompt, prompt_tokens, tool_names, chat: bool) -> web.StreamResponse:
        status = self.failures.status(prompt)
        if status is not None:
            return error(status, FAILURES.get(status, FAILURES[500]))
        await pause_if_slow(prompt)
        options = body.get("options") or {}
        stop = options.get("stop")
        reply = make_reply(prompt, tools=tool_names, max_tokens=options.get("num_predict"),
                           stop=[stop] if isinstance(stop, str) else stop, think=bool(body.get("think")),
                           json_mode=bool(body.get("format")))
        done = {"done": True, "done_reason": "length" if reply.stop_reason == "max_tokens" else "stop",
                **timings(prompt_tokens, reply.output_tokens)}
        if not chat:
            done["context"] = list(range(1, prompt_tokens + reply.output_tokens + 1))
        tool_calls = [{"id": stable_id("call_", prompt, i, length=8),
                       "function": {"index": i, "name": name, "arguments": args}}
                      for i, (name, args) in enumerate(reply.tool_calls)]
        model = body["model"]

        def obj(content: str = "", thinking: str | None = None, calls: list | None = None, final: bool = False) -> dict:
            out: dict[str, Any] = {"model": model, "created_at": now()}
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": content}
                if thinking:
                    message["thinking"] = thinking
                if calls:
                    message["tool_calls"] = calls
                out["message"] = message
            else:
                out["response"] = content
                if thinking:
                    out["thinking"] = thinking
            return {**out, **done} if final else {**out, "done": False}

        if body.get("stream") is False:
            return web.json_response(obj(reply.text, reply.thinking, tool_calls, final=True))
        lines = [obj(thinking=p) for p in pieces(reply.thinking or "")]
        lines += [obj(content=p) for p in pieces(reply.text)]
        if tool_calls:
            lines.append(obj(calls=tool_calls))
        resp = web.StreamResponse(headers={"Content-Type": NDJSON})
        await resp.prepare(request)
        for i, line in enumerate(lines):
            await resp.write(json.dumps(line).encode() + b"\n")
            if i == 1 and reply.cut_stream:
                abort_connection(request)
                return resp
            if i == 1 and reply.stream_error:
                await resp.write(json.dumps({"error": "an error was encountered while running the model: unexpected EOF"}).encode() + b"\n")
                return resp
        await resp.write(json.dumps(obj(final=True)).encode() + b"\n")
        return resp

    async def embed(self, request: web.Request) -> web.Response:
        body, err = await self._body(request)
        if err:
            return err
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            return error(400, "invalid input type")
        for text in inputs:
            status = self.failures.status(text)
            if status is not None:
                return error(status, FAILURES.get(status, FAILURES[500]))
        count = sum(words(t) for t in inputs)
        return web.json_response({"model": body["model"],
                                  "embeddings": [embedding(t, body.get("dimensions") or 8) for t in inputs],
                                  "total_duration": 1_000_000 * (5 + count), "load_duration": 1_000_000,
                                  "prompt_eval_count": count})

    async def embeddings(self, request: web.Request) -> web.Response:
        body, err = await self._body(request)
        return err or web.json_response({"embedding": embedding(body.get("prompt") or "")})

    async def show(self, request: web.Request) -> web.Response:
        body, err = await self._body(request)
        if err:
            return err
        name = resolve(body.get("model") or body.get("name"))
        info = MODELS[name]
        return web.json_response({
            "license": "test license", "modelfile": f"FROM {name}\n",
            "parameters": 'stop                           "<|eot_id|>"',
            "template": "{{ .Prompt }}", "details": details(name),
            "model_info": {"general.architecture": info["family"], "general.parameter_count": 3212749888,
                           f"{info['family']}.context_length": 131072},
            "capabilities": info["capabilities"], "modified_at": MODIFIED_AT,
        })

    async def tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [
            {"name": name, "model": name, "modified_at": MODIFIED_AT, "size": info["size"],
             "digest": stable_id("", name, length=64), "details": details(name)}
            for name, info in MODELS.items()]})

    async def ps(self, request: web.Request) -> web.Response:
        return web.json_response({"models": []})

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def openai_models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": name, "object": "model", "created": 1748779200, "owned_by": "library"} for name in MODELS]})

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")


def make_app(recorder) -> web.Application:
    upstream = OllamaUpstream()
    app = web.Application()
    app.router.add_post("/api/chat", upstream.chat)
    app.router.add_post("/api/generate", upstream.generate)
    app.router.add_post("/api/embed", upstream.embed)
    app.router.add_post("/api/embeddings", upstream.embeddings)
    app.router.add_post("/api/show", upstream.show)
    app.router.add_get("/api/tags", upstream.tags)
    app.router.add_get("/api/ps", upstream.ps)
    app.router.add_get("/api/version", upstream.version)
    app.router.add_get("/v1/models", upstream.openai_models)
    app.router.add_get("/", upstream.root)
    return app
