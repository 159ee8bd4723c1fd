"""Google Gemini API (generativelanguage, v1beta and v1) test upstream.

Routes: POST /{version}/models/{model}:generateContent, :streamGenerateContent (`?alt=sse` gives
SSE `data: {...}` events; without it a streamed JSON array, as Google does), :countTokens,
:embedContent, :batchEmbedContents; GET /{version}/models.

Auth: `x-goog-api-key` header or `key` query parameter equal to `test-gemini-key` (missing
-> 403 PERMISSION_DENIED, wrong -> 400 INVALID_ARGUMENT / API_KEY_INVALID). Models must start
with `gemini-`, `gemma-` (chat) or `text-embedding-` / `gemini-embedding-` / `embedding-`
(embeddings); others are 404 NOT_FOUND. Requests are validated like the real API (proto JSON:
camelCase or snake_case field names, unknown fields rejected, roles user/model only, non-empty
parts with one data field each, functionResponse turns right after a functionCall turn with as
many parts, function parameter schemas limited to the OpenAPI subset Gemini accepts).

Behaviour follows conventions.py (finishReason STOP / MAX_TOKENS; stop sequences end with
STOP; THINK adds a `{"text": ..., "thought": true}` part and thoughtsTokenCount; a
responseMimeType of application/json makes the reply `{"echo": <prompt>}`). Errors in Google's
shape `{"error": {"code", "message", "status"}}`: FAIL429 RESOURCE_EXHAUSTED, FAIL500 INTERNAL,
FAIL503 UNAVAILABLE; STREAMERR puts such an error object into the stream.
"""
from __future__ import annotations

import json
import re
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

API_KEY = "test-gemini-key"
CHAT_PREFIXES = ("gemini-", "gemma-")
EMBED_PREFIXES = ("text-embedding-", "gemini-embedding-", "embedding-")
REQUEST_FIELDS = {"model", "contents", "systemInstruction", "tools", "toolConfig", "generationConfig",
                  "safetySettings", "cachedContent", "labels"}
GENERATION_FIELDS = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
                     "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed",
                     "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
                     "thinkingConfig", "responseModalities", "speechConfig", "mediaResolution",
                     "enableEnhancedCivicAnswers", "imageConfig", "_responseJsonSchema"}
PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
             "codeExecutionResult"}
PART_META = {"thought", "thoughtSignature", "videoMetadata", "partMetadata"}
SCHEMA_FIELDS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                 "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                 "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}
STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
          500: "INTERNAL", 503: "UNAVAILABLE"}
MESSAGES = {429: "Resource has been exhausted (e.g. check quota).",
            500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            503: "The model is overloaded. Please try again later."}


class Invalid(Exception):
    pass


def google_error(code: int, message: str, details: list | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message, "status": STATUS.get(code, "INTERNAL")}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=code)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def normalize(obj: Any, keep_keys: bool = False) -> Any:
    """Proto JSON accepts snake_case too: convert keys (but not user data such as args/properties)."""
    if isinstance(obj, list):
        return [normalize(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        new_key = key if keep_keys else camel(key)
        opaque = new_key in ("args", "response", "responseSchema", "responseJsonSchema", "parametersJsonSchema")
        out[new_key] = value if opaque else normalize(value, keep_keys=new_key == "properties")
    return out


def _unknown(where: str, name: str) -> Invalid:
    return Invalid(f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': Cannot find field.')


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key not in SCHEMA_FIELDS:
            raise _unknown(where, key)
        if key == "properties":
            for name, sub in value.items():
                _check_schema(sub, f"{where}.properties[{name}].value")
        elif key == "items":
            _check_schema(value, f"{where}.items")
        elif key == "anyOf":
            for i, sub in enumerate(value):
                _check_schema(sub, f"{where}.any_of[{i}]")


def validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise Invalid("Invalid JSON payload received. Expected an object.")
    for key in body:
        if key not in REQUEST_FIELDS:
            raise _unknown("", key)
    for key in body.get("generationConfig") or {}:
        if key not in GENERATION_FIELDS:
            raise _unknown("generation_config", key)
    declared = []
    for i, tool in enumerate(body.get("tools") or []):
        for j, decl in enumerate(tool.get("functionDeclarations") or []):
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}", decl.get("name") or ""):
                raise Invalid(f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: Invalid function name. "
                              "Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.")
            _check_schema(decl.get("parameters"), f"tools[{i}].function_declarations[{j}].parameters")
            declared.append(decl["name"])
    system = body.get("systemInstruction")
    if system is not None and not (system.get("parts") or []):
        raise Invalid("* GenerateContentRequest.system_instruction.parts: contents.parts must not be empty.")
    contents = body.get("contents")
    if not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    calls_before = 0
    for i, content in enumerate(contents):
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise Invalid("Please use a valid role: user, model.")
        parts = content.get("parts") or []
        if not parts:
            raise Invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
        for j, part in enumerate(parts):
            for key in part:
                if key not in PART_DATA | PART_META:
                    raise _unknown(f"contents[{i}].parts[{j}]", key)
            if len(PART_DATA & set(part)) != 1:
                raise Invalid(f"* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field")
        responses = sum(1 for p in parts if "functionResponse" in p)
        if responses and responses != calls_before:
            raise Invalid("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.")
        for part in parts:
            if "functionResponse" in part and not part["functionResponse"].get("name"):
                raise Invalid(f"* GenerateContentRequest.contents[{i}].parts.function_response.name: Name cannot be empty.")
        calls = sum(1 for p in parts if "functionCall" in p)
        if calls and role != "model":
            raise Invalid("Please ensure that function call turn comes immediately after a user turn or after a function response turn.")
        calls_before = calls


def _part_text(part: dict) -> str:
    if "text" in part and not part.get("thought"):
        return part["text"]
    if "functionResponse" in part:
        response = part["functionResponse"].get("response")
        if isinstance(response, dict) and len(response) == 1 and isinstance(next(iter(response.values())), str):
            return next(iter(response.values()))
        return json.dumps(response, sort_keys=True, separators=(",", ":"))
    return ""


def prompt_of(contents: list[dict]) -> str:
    for content in reversed(contents):
        if content.get("role", "user") == "user":
            parts = content["parts"]
            text = " ".join(p["text"] for p in parts if "text" in p)
            return text or " ".join(_part_text(p) for p in parts)
    return ""


def count_input(body: dict) -> int:
    texts = [p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts", [])]
    texts += [_part_text(p) for c in body["contents"] for p in c["parts"]]
    return sum(words(t) for t in texts)


class GeminiUpstream:
    def __init__(self) -> None:
        self.failures = FailureTracker()

    def _auth(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return google_error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                                     "Please use API Key or other form of API consumer identity to call this API.")
        if key != API_KEY:
            return google_error(400, "API key not valid. Please pass a valid API key.", [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
        return None

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        error = self._auth(request)
        if error:
            return error
        model, _, method = request.match_info["tail"].rpartition(":")
        handlers = {"generateContent": self.generate, "streamGenerateContent": self.generate,
                    "countTokens": self.count_tokens, "embedContent": self.embed,
                    "batchEmbedContents": self.embed}
        if method not in handlers:
            return google_error(404, f"Method {method!r} not found.")
        kind = EMBED_PREFIXES if method in ("embedContent", "batchEmbedContents") else CHAT_PREFIXES
        if not model.startswith(kind):
            return google_error(404, f"models/{model} is not found for API version {request.match_info['version']}, "
                                     f"or is not supported for {method}. Call ListModels to see the list of available models and their supported methods.")
        try:
            body = normalize(json.loads(await request.read()))
        except ValueError:
            return google_error(400, "Invalid JSON payload received. Unexpected token.")
        try:
            return await handlers[method](request, model, method, body)
        except Invalid as exc:
            return google_error(400, str(exc))
        except (AttributeError, TypeError, KeyError) as exc:  # malformed structure, not a server fault
            return google_error(400, f"Invalid JSON payload received. {exc}")

    async def count_tokens(self, request, model, method, body) -> web.Response:
        inner = body.get("generateContentRequest") or {"contents": body.get("contents")}
        validate({k: v for k, v in inner.items() if k != "model"})
        total = count_input(inner)
        return web.json_response({"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]})

    async def embed(self, request, model, method, body) -> web.Response:
        requests = body.get("requests") if method == "batchEmbedContents" else [body]
        if not requests:
            raise Invalid("* BatchEmbedContentsRequest.requests: requests is not specified")
        vectors = []
        for i, item in enumerate(requests):
            if method == "batchEmbedContents" and item.get("model") != f"models/{model}":
                raise Invalid(f"* BatchEmbedContentsRequest.requests[{i}].model: the model of each request must match "
                              f"the batch model models/{model}, got {item.get('model')!r}")
            parts = (item.get("content") or {}).get("parts") or []
            if not parts:
                raise Invalid("* EmbedContentRequest.content: content is not specified")
            text = " ".join(p.get("text", "") for p in parts)
            status = self.failures.status(text)
            if status is not None:
                return google_error(status, MESSAGES.get(status, MESSAGES[500]))
            vectors.append({"values": embedding(text, item.get("outputDimensionality") or 8)})
        return web.json_response({"embeddings": vectors} if method == "batchEmbedContents" else {"embedding": vectors[0]})

    async def generate(self, request, model, method, body) -> web.StreamResponse:
        validate(body)
        prompt = prompt_of(body["contents"])
        status = self.failures.status(prompt)
        if status is not None:
            return google_error(status, MESSAGES.get(status, MESSAGES[500]))
        await pause_if_slow(prompt)
        config = body.get("generationConfig") or {}
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
        names = [d["name"] for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
        allowed = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("allowedFunctionNames")
        reply = make_reply(prompt, tools=[] if mode == "NONE" else (allowed or names),
                           max_tokens=config.get("maxOutputTokens"), stop=config.get("stopSequences"),
                           json_mode=config.get("responseMimeType") == "application/json")
        prompt_tokens = count_input(body)
        thoughts = words(reply.thinking or "")
        usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": reply.output_tokens - thoughts,
                 "totalTokenCount": prompt_tokens + reply.output_tokens,
                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]}
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        finish = "MAX_TOKENS" if reply.stop_reason == "max_tokens" else "STOP"
        response_id = stable_id("", prompt, len(body["contents"]), length=22)
        parts: list[dict] = []
        if reply.thinking:
            parts.append({"text": reply.thinking, "thought": True})
        if reply.text or not reply.tool_calls:
            parts.append({"text": reply.text})
        parts += [{"functionCall": {"name": name, "args": args}} for name, args in reply.tool_calls]

        def chunk(chunk_parts: list[dict], last: bool) -> dict:
            candidate: dict[str, Any] = {"content": {"parts": chunk_parts, "role": "model"}}
            if last:
                candidate["finishReason"] = finish
            candidate["index"] = 0
            chunk_usage = usage if last else {k: usage[k] for k in ("promptTokenCount", "promptTokensDetails")} | {
                "totalTokenCount": prompt_tokens}
            return {"candidates": [candidate], "usageMetadata": chunk_usage, "modelVersion": model, "responseId": response_id}

        if method == "generateContent":
            return web.json_response(chunk(parts, True))
        stream_parts: list[dict] = []
        for part in parts:
            if "text" in part and part["text"]:
                stream_parts += [{**part, "text": p} for p in pieces(part["text"])]
            else:
                stream_parts.append(part)
        sse = request.query.get("alt") == "sse"
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream" if sse else "application/json; charset=UTF-8"})
        await resp.prepare(request)
        for i, part in enumerate(stream_parts):
            data = chunk([part], i == len(stream_parts) - 1)
            await resp.write(_frame(data, sse, first=i == 0))
            if i == 1 and reply.cut_stream:
                abort_connection(request)
                return resp
            if i == 1 and reply.stream_error:
                await resp.write(_frame({"error": {"code": 500, "message": MESSAGES[500], "status": "INTERNAL"}}, sse, first=False))
                return resp
        if not sse:
            await resp.write(b"]")
        return resp

    async def list_models(self, request: web.Request) -> web.Response:
        error = self._auth(request)
        if error:
            return error
        models = [("gemini-2.5-flash", ["generateContent", "countTokens"]),
                  ("gemini-2.0-flash", ["generateContent", "countTokens"]),
                  ("text-embedding-004", ["embedContent"])]
        return web.json_response({"models": [
            {"name": f"models/{name}", "version": "001", "displayName": name, "inputTokenLimit": 1048576,
             "outputTokenLimit": 8192, "supportedGenerationMethods": methods} for name, methods in models]})


def _frame(data: dict, sse: bool, first: bool) -> bytes:
    if sse:
        return f"data: {json.dumps(data)}\r\n\r\n".encode()
    return (("[" if first else "\n,\r\n") + json.dumps(data, indent=2)).encode()


def make_app(recorder) -> web.Application:
    upstream = GeminiUpstream()
    app = web.Application()
    app.router.add_post("/{version:v1beta|v1}/models/{tail}", upstream.dispatch)
    app.router.add_get("/{version:v1beta|v1}/models", upstream.list_models)
    return app
