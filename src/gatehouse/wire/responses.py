"""OpenAI Responses API requests (POST /v1/responses) -> the canonical ChatRequest.

Codex CLI, the AI SDK, OpenCode and the openai SDK's `client.responses` send these. Items map
onto canonical messages: `message` (developer and system roles become the system prompt),
`function_call` / `custom_tool_call` onto the assistant's tool calls, their `*_output` items
onto tool results. Encrypted `reasoning` items only mean something to OpenAI and are dropped.
Tools: `function` as is, `custom` (free-form text input, e.g. Codex's apply_patch) as a
function with one string argument `input`, `namespace` groups flattened. Hosted tools
(web_search, file_search, ...) are dropped or refused by `responses.hosted_tools`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Literal

import msgspec

from gatehouse.errors import InvalidRequest
from gatehouse.types import (
    ChatRequest,
    ImagePart,
    Message,
    Part,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from gatehouse.wire.common import Count, Temperature, Unit, convert
from gatehouse.wire.screen import SCHEMA, BodySpec, Shape

HOSTED_TOOLS = frozenset({"web_search", "web_search_preview", "file_search", "code_interpreter", "computer_use_preview",
                          "computer_use", "image_generation", "mcp", "local_shell", "shell", "apply_patch"})
CUSTOM_INPUT = "input"  # the one string argument a custom (free-form) tool is given as a function


class ResponsesRequest(msgspec.Struct, omit_defaults=True):
    model: str
    input: str | list[dict[str, Any]] = ""
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: Count | None = None
    temperature: Temperature | None = None
    top_p: Unit | None = None
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    user: str | None = None
    # Accepted and not acted on: they steer OpenAI's own storage, caching and logging.
    metadata: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    include: list[str] | None = None
    client_metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    truncation: str | None = None
    safety_identifier: str | None = None


_TOOL_SHAPE: Shape = {"parameters": SCHEMA, "tools": {"*": {"parameters": SCHEMA}}}  # namespace groups nest functions
RESPONSES_BODY = BodySpec(ResponsesRequest.__struct_fields__, {
    "tools": {"*": _TOOL_SHAPE}, "text": {"format": {"schema": SCHEMA}}})


class Translated(msgspec.Struct):
    request: ChatRequest
    custom_tools: frozenset[str]  # function names that stand for custom (free-form) tools
    dropped_tools: list[str]


def parse_request(obj: dict[str, Any]) -> ResponsesRequest:
    return convert(obj, ResponsesRequest)


# ---- stored form of input items --------------------------------------------------------------

_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "custom_tool_call": "ctc",
              "custom_tool_call_output": "ctco", "reasoning": "rs"}
MAX_ITEM_ID = 255  # longer client ids are replaced when the items are stored


def references(items: str | list[dict[str, Any]]) -> list[str]:
    """The ids of the `item_reference` items of an input (empty for most requests)."""
    if isinstance(items, str):
        return []
    return [str(i.get("id", "")) for i in items if isinstance(i, dict) and i.get("type") == "item_reference"]


def item_list(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An input as the items OpenAI lists for it: typed, every one with an id, message content as parts."""
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest("Each input item must be an object.", param=f"input[{i}]")
        item = {**item, "type": item.get("type", "message")}
        content = item.get("content")
        if item["type"] == "message" and isinstance(content, str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": content}] if content else []
        rid = item.get("id")
        if not isinstance(rid, str) or not rid or len(rid) > MAX_ITEM_ID:
            item["id"] = f"{_ID_PREFIX.get(str(item['type']), 'item')}_{os.urandom(12).hex()}"
        out.append(item)
    return out


# ---- input items -------------------------------------------------------------------------------

def _content_parts(content: Any, where: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("Message content must be a string or a list of parts.", param=where)
    parts: list[Part] = []
    for i, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("input_text", "output_text", "text", "summary_text", "refusal"):
            text = p.get("text", p.get("refusal", ""))
            if text:
                parts.append(TextPart(str(text)))
        elif kind == "input_image":
            url = p.get("image_url")
            if not isinstance(url, str) or not url:
                raise InvalidRequest("input_image needs an 'image_url' (a URL or data: URL); file ids are not "
                                     "supported.", param=f"{where}[{i}].image_url")
            if url.startswith("data:") and ";base64," in url:
                head, data = url.split(";base64,", 1)
                parts.append(ImagePart(data=data, media_type=head[5:] or "image/png", detail=p.get("detail")))
            else:
                parts.append(ImagePart(url=url, detail=p.get("detail")))
        elif kind == "input_file":
            raise InvalidRequest("input_file parts are not supported through the gateway; send the text.",
                                 param=f"{where}[{i}]")
        else:
            raise InvalidRequest(f"Unknown content part type '{str(kind)[:40]}'.", param=f"{where}[{i}].type")
    return parts


def _output_text(output: Any) -> list[TextPart | ImagePart]:
    if isinstance(output, str):
        return [TextPart(output)]
    if isinstance(output, list):
        return [p for p in _content_parts(output, "output") if isinstance(p, (TextPart, ImagePart))]
    return [TextPart(json.dumps(output))]


def _assistant(messages: list[Message]) -> Message:
    """The assistant message tool calls attach to: the last one if it is the assistant's."""
    if not messages or messages[-1].role != "assistant":
        messages.append(Message("assistant", []))
    return messages[-1]


def _tool_result(messages: list[Message], result: ToolResultPart) -> None:
    if messages and messages[-1].role == "tool":
        messages[-1].content.append(result)
    else:
        messages.append(Message("tool", [result]))


def _items(items: list[dict[str, Any]], system: list[TextPart]) -> list[Message]:
    messages: list[Message] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest("Each input item must be an object.", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            parts = _content_parts(item.get("content", ""), f"{where}.content")
            if role in ("system", "developer"):
                system.extend(p for p in parts if isinstance(p, TextPart))
            elif role == "assistant":
                _assistant(messages).content.extend(parts)
            elif role == "user":
                messages.append(Message("user", parts))
            else:
                raise InvalidRequest(f"Unknown role '{str(role)[:20]}'.", param=f"{where}.role")
        elif kind == "function_call":
            _assistant(messages).content.append(
                ToolCallPart(str(item.get("call_id") or item.get("id") or ""), str(item.get("name", "")),
                             str(item.get("arguments") or "{}")))
        elif kind == "custom_tool_call":
            args = json.dumps({CUSTOM_INPUT: str(item.get("input", ""))})
            _assistant(messages).content.append(
                ToolCallPart(str(item.get("call_id") or item.get("id") or ""), str(item.get("name", "")), args))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            _tool_result(messages, ToolResultPart(str(item.get("call_id", "")), _output_text(item.get("output", ""))))
        elif kind == "reasoning":
            continue  # encrypted or summarised reasoning: only OpenAI can use it
        elif kind == "item_reference":  # resolved against the stored items before translation
            raise InvalidRequest("Unresolved item_reference.", param=f"{where}.id")
        else:
            raise InvalidRequest(f"Unknown input item type '{str(kind)[:40]}'.", param=f"{where}.type")
    return messages


# ---- tools -------------------------------------------------------------------------------------

def _tools(tools: list[dict[str, Any]], hosted: Literal["drop", "refuse"]) -> tuple[list[Tool], set[str], list[str]]:
    out: list[Tool] = []
    custom: set[str] = set()
    dropped: list[str] = []
    stack = list(tools)
    while stack:
        t = stack.pop(0)
        kind = t.get("type")
        if kind == "function":
            out.append(Tool(str(t.get("name", "")), t.get("description"),
                            t.get("parameters") or {"type": "object", "properties": {}}))
        elif kind == "custom":
            name = str(t.get("name", ""))
            fmt = t.get("format") or {}
            hint = f" Format: {fmt.get('syntax', '')} grammar." if fmt.get("type") == "grammar" else ""
            out.append(Tool(name, (t.get("description") or "") + hint, {
                "type": "object", "required": [CUSTOM_INPUT],
                "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's whole free-form input."}}}))
            custom.add(name)
        elif kind == "namespace":
            stack[:0] = [x for x in t.get("tools", []) if isinstance(x, dict)]
        elif kind in HOSTED_TOOLS:
            if hosted == "refuse":
                raise InvalidRequest(f"The hosted tool '{kind}' runs only on OpenAI's servers and is not available "
                                     "through this gateway.", param="tools", code="unsupported_tool")
            dropped.append(str(kind))
        else:
            raise InvalidRequest(f"Unknown tool type '{str(kind)[:40]}'.", param="tools")
    return out, custom, dropped


def _tool_choice(choice: str | dict[str, Any] | None, parallel: bool | None) -> ToolChoice | None:
    if choice is None:
        return ToolChoice(parallel=parallel) if parallel is not None else None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequest(f"Unknown tool_choice '{choice[:20]}'.", param="tool_choice")
        return ToolChoice(choice, parallel=parallel)  # type: ignore[arg-type]
    if choice.get("type") in ("function", "custom") and choice.get("name"):
        return ToolChoice("tool", str(choice["name"]), parallel)
    if choice.get("type") == "allowed_tools":
        return ToolChoice("required" if choice.get("mode") == "required" else "auto", parallel=parallel)
    raise InvalidRequest("tool_choice must be auto, none, required or {type: function, name}.", param="tool_choice")


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        return {"type": "json_schema", "json_schema": {
            "name": fmt.get("name", "response"), "schema": fmt.get("schema", {}), "strict": bool(fmt.get("strict"))}}
    raise InvalidRequest(f"Unknown text.format type '{str(fmt['type'])[:30]}'.", param="text.format.type")


def to_canonical(req: ResponsesRequest, hosted: Literal["drop", "refuse"] = "drop") -> Translated:
    system: list[TextPart] = [TextPart(req.instructions)] if req.instructions else []
    items = [{"type": "message", "role": "user", "content": req.input}] if isinstance(req.input, str) else req.input
    messages = _items(items, system)
    tools, custom, dropped = _tools(req.tools or [], hosted)
    reasoning = {"effort": req.reasoning["effort"]} if req.reasoning and req.reasoning.get("effort") else None
    chat = ChatRequest(
        model=req.model, messages=messages, system=system, max_tokens=req.max_output_tokens,
        temperature=req.temperature, top_p=req.top_p, stream=req.stream, tools=tools,
        tool_choice=_tool_choice(req.tool_choice, req.parallel_tool_calls) if tools else None,
        response_format=_response_format(req.text), reasoning=reasoning, user=req.user)
    return Translated(chat, frozenset(custom), dropped)
