"""Anthropic Messages API test upstream: POST /v1/messages (JSON and SSE), /v1/messages/count_tokens.

Auth: header `x-api-key: test-anthropic-key` or `Authorization: Bearer test-anthropic-key`
(what current anthropic SDKs send; else 401 authentication_error) and an `anthropic-version`
header (else 400). Models must start with "claude" (else 404
not_found_error). Requests are validated the way the real API does (known top-level fields
only, max_tokens, user/assistant roles alternating from a user turn, non-empty text blocks,
every tool_use answered by a tool_result in the next user turn and every tool_result
referring to a tool_use of the previous assistant turn, tool schemas, thinking budget,
temperature 0..1) and answered with 400 invalid_request_error otherwise.

Behaviour follows conventions.py. Errors: FAIL429 -> 429 rate_limit_error (retry-after: 1),
FAIL500 -> 500 api_error, FAIL529 -> 529 overloaded_error; STREAMERR -> `event: error`
(overloaded_error) mid-stream. A system prompt with cache_control reports its words as
cache_creation_input_tokens on first use and cache_read_input_tokens afterwards (those words
are then not part of input_tokens, as with the real API).
"""
from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from .conventions import (
    THINKING_SIGNATURE,
    FailureTracker,
    PromptCache,
    abort_connection,
    chunks,
    make_reply,
    pause_if_slow,
    pieces,
    stable_id,
    words,
)

API_KEY = "test-anthropic-key"
TOP_LEVEL = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
    "container", "mcp_servers", "context_management", "output_format", "inference_geo",
}
COUNT_FIELDS = {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
                "context_management", "output_format"}
BLOCK_TYPES = {
    "user": {"text", "image", "document", "tool_result", "search_result", "container_upload"},
    "assistant": {"text", "tool_use", "thinking", "redacted_thinking", "server_tool_use",
                  "web_search_tool_result"},
}
ERRORS = {
    429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
}
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class Invalid(Exception):
    pass


def error_response(status: int, kind: str, message: str, headers: dict | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message},
            "request_id": stable_id("req_", kind, message)}
    return web.json_response(body, status=status, headers=headers)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


def _all_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out = []
    for block in content:
        if block.get("type") == "text":
            out.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            out.append(_text_of(block.get("content", "")))
    return out


def prompt_of(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        content = message["content"]
        text = _text_of(content)
        if text or isinstance(content, str):
            return text
        return " ".join(_text_of(b.get("content", "")) for b in content if b.get("type") == "tool_result")
    return ""


def system_parts(system: Any) -> tuple[str, str]:
    """Return (cached prefix, full system text)."""
    if system is None:
        return "", ""
    if isinstance(system, str):
        return "", system
    texts, cached = [], ""
    for block in system:
        texts.append(block.get("text", ""))
        if block.get("cache_control"):
            cached = " ".join(texts)
    return cached, " ".join(texts)


def count_input(body: dict) -> int:
    texts = [system_parts(body.get("system"))[1]]
    for message in body["messages"]:
        texts.extend(_all_texts(message["content"]))
    return sum(words(t) for t in texts)


def validate(body: Any, *, counting: bool = False) -> None:
    if not isinstance(body, dict):
        raise Invalid("Request body must be a JSON object")
    allowed = COUNT_FIELDS if counting else TOP_LEVEL
    for key in body:
        if key not in allowed:
            raise Invalid(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str):
        raise Invalid("model: Field required")
    if not counting:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise Invalid("max_tokens: Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise Invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= temperature <= 1:
            raise Invalid("temperature: Input should be less than or equal to 1")
        stops = body.get("stop_sequences")
        if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
            raise Invalid("stop_sequences: Input should be a valid list of strings")
    _validate_system(body.get("system"))
    _validate_tools(body.get("tools"), body.get("tool_choice"))
    thinking = body.get("thinking")
    if thinking is not None and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if not counting and budget >= body["max_tokens"]:
            raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    _validate_messages(body.get("messages"))


def _validate_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise Invalid("system: Input should be a valid string or list")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise Invalid(f"system.{i}: Input tag does not match the expected tag 'text'")
        if not block["text"]:
            raise Invalid("system: text content blocks must be non-empty")


def _validate_tools(tools: Any, tool_choice: Any) -> None:
    names = []
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict):
            raise Invalid(f"tools.{i}: Input should be a valid dictionary")
        if tool.get("type") not in (None, "custom"):
            names.append(tool.get("name"))  # server / client tools such as web_search
            continue
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise Invalid(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise Invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        unknown = set(tool) - {"name", "description", "input_schema", "type", "cache_control",
                               "strict", "input_examples", "defer_loading", "allowed_callers"}
        if unknown:
            raise Invalid(f"tools.{i}.custom.{sorted(unknown)[0]}: Extra inputs are not permitted")
        names.append(name)
    if tool_choice is not None:
        kind = tool_choice.get("type") if isinstance(tool_choice, dict) else None
        if kind not in ("auto", "any", "tool", "none"):
            raise Invalid("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'")
        if kind == "tool" and tool_choice.get("name") not in names:
            raise Invalid(f"Tool '{tool_choice.get('name')}' not found in provided tools")


def _validate_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: Field required" if messages is None else "messages: at least one message is required")
    pending: set[str] = set()
    previous_role = None
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            raise Invalid('messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.')
        if role not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise Invalid('messages: first message must use the "user" role')
        if role == previous_role:
            raise Invalid(f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles in a row')
        previous_role = role
        content = message.get("content")
        if isinstance(content, str):
            blocks = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            blocks = content
        else:
            raise Invalid(f"messages.{i}.content: Input should be a valid string or list")
        if not blocks:
            raise Invalid(f"messages.{i}: all messages must have non-empty content except for the optional final assistant message")
        used: set[str] = set()
        answered: set[str] = set()
        for j, block in enumerate(blocks):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in BLOCK_TYPES[role]:
                raise Invalid(f"messages.{i}.content.{j}.type: block type {kind!r} is not allowed in a {role} message")
            if kind == "text" and not block.get("text"):
                raise Invalid("messages: text content blocks must be non-empty")
            if kind == "tool_use":
                if not isinstance(block.get("input"), dict) or not block.get("id") or not block.get("name"):
                    raise Invalid(f"messages.{i}.content.{j}.tool_use: id, name and an object input are required")
                used.add(block["id"])
            if kind == "tool_result":
                if block.get("tool_use_id") not in pending:
                    raise Invalid(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")
                answered.add(block["tool_use_id"])
            if kind == "image":
                source = block.get("source") or {}
                if source.get("type") == "base64" and source.get("media_type") not in ("image/jpeg", "image/png", "image/gif", "image/webp"):
                    raise Invalid(f"messages.{i}.content.{j}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
        if role == "user" and pending - answered:
            raise Invalid(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: {', '.join(sorted(pending - answered))}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.")
        pending = used
        if role == "assistant" and i == len(messages) - 1 and isinstance(content, list) and content:
            last = content[-1]
            if last.get("type") == "text" and last["text"] != last["text"].rstrip():
                raise Invalid("messages: final assistant content cannot end with trailing whitespace")


class AnthropicUpstream:
    def __init__(self) -> None:
        self.failures = FailureTracker()
        self.cache = PromptCache()

    async def _parse(self, request: web.Request, *, counting: bool = False):
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if request.headers.get("x-api-key") != API_KEY and bearer != API_KEY:
            return None, error_response(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return None, error_response(400, "invalid_request_error", "anthropic-version: header is required")
        try:
            body = json.loads(await request.read())
            validate(body, counting=counting)
        except ValueError:
            return None, error_response(400, "invalid_request_error", "There was an error parsing the body of your request")
        except Invalid as exc:
            return None, error_response(400, "invalid_request_error", str(exc))
        except (AttributeError, TypeError, KeyError) as exc:  # malformed structure, not a server fault
            return None, error_response(400, "invalid_request_error", f"Input should be a valid request: {exc}")
        if not body["model"].startswith("claude"):
            return None, error_response(404, "not_found_error", f"model: {body['model']}")
        return body, None

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._parse(request, counting=True)
        return error or web.json_response({"input_tokens": count_input(body)})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._parse(request)
        if error:
            return error
        prompt = prompt_of(body["messages"])
        status = self.failures.status(prompt)
        if status is not None:
            kind = ERRORS.get(status, "api_error")
            headers = {"retry-after": "1"} if status == 429 else None
            message = {429: "Number of request tokens has exceeded your per-minute rate limit",
                       529: "Overloaded"}.get(status, "Internal server error")
            return error_response(status, kind, message, headers)
        await pause_if_slow(prompt)
        choice = (body.get("tool_choice") or {}).get("type")
        names = [t.get("name") for t in body.get("tools") or []]
        if choice == "tool":
            names = [body["tool_choice"]["name"]]
        reply = make_reply(prompt, tools=[] if choice == "none" else names,
                           max_tokens=body["max_tokens"], stop=body.get("stop_sequences"))
        cached, _ = system_parts(body.get("system"))
        created, read = self.cache.use(cached)
        usage = {"input_tokens": count_input(body) - created - read,
                 "cache_creation_input_tokens": created, "cache_read_input_tokens": read,
                 "output_tokens": reply.output_tokens, "service_tier": "standard"}
        message_id = stable_id("msg_01", prompt, len(body["messages"]))
        blocks = content_blocks(reply, message_id)
        if not body.get("stream"):
            return web.json_response({
                "id": message_id, "type": "message", "role": "assistant", "model": body["model"],
                "content": blocks, "stop_reason": reply.stop_reason,
                "stop_sequence": reply.stop_sequence, "usage": usage,
            }, headers={"request-id": stable_id("req_", message_id)})
        return await self._stream(request, body, reply, blocks, usage, message_id)

    async def _stream(self, request, body, reply, blocks, usage, message_id) -> web.StreamResponse:
        resp = web.StreamResponse(headers={
            "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
            "request-id": stable_id("req_", message_id)})
        await resp.prepare(request)

        async def send(event: str, data: dict) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        await send("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": body["model"],
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1}}})
        sent = 0
        for index, block in enumerate(blocks):
            await send("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": _empty(block)})
            if index == 0:
                await send("ping", {"type": "ping"})
            for delta in _deltas(block):
                await send("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                sent += 1
                if sent == 2 and reply.cut_stream:
                    abort_connection(request)
                    return resp
                if sent == 2 and reply.stream_error:
                    await send("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    return resp
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
        await send("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
                                     "usage": {"output_tokens": reply.output_tokens}})
        await send("message_stop", {"type": "message_stop"})
        return resp


def content_blocks(reply, message_id: str) -> list[dict]:
    blocks: list[dict] = []
    if reply.thinking:
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": THINKING_SIGNATURE})
    if reply.text or not reply.tool_calls:
        blocks.append({"type": "text", "text": reply.text})
    for i, (name, args) in enumerate(reply.tool_calls):
        blocks.append({"type": "tool_use", "id": stable_id("toolu_01", message_id, i, length=22),
                       "name": name, "input": args})
    return blocks


def _empty(block: dict) -> dict:
    if block["type"] == "thinking":
        return {"type": "thinking", "thinking": ""}
    if block["type"] == "tool_use":
        return {**block, "input": {}}
    return {"type": "text", "text": ""}


def _deltas(block: dict) -> list[dict]:
    if block["type"] == "thinking":
        return [{"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"])] + [
            {"type": "signature_delta", "signature": block["signature"]}]
    if block["type"] == "tool_use":
        return [{"type": "input_json_delta", "partial_json": p} for p in ["", *chunks(json.dumps(block["input"]))]]
    return [{"type": "text_delta", "text": p} for p in pieces(block["text"])]


def make_app(recorder) -> web.Application:
    upstream = AnthropicUpstream()
    app = web.Application()
    app.router.add_post("/v1/messages", upstream.messages)
    app.router.add_post("/v1/messages/count_tokens", upstream.count_tokens)
    return app
