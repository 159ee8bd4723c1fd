"""Responses API requests -> canonical chat requests, from the captured requests of Codex CLI,
OpenCode and the AI SDK, and from hand-made items for every item and tool type."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gatehouse.errors import InvalidRequest
from gatehouse.types import ImagePart, TextPart, ToolCallPart, ToolResultPart
from gatehouse.wire.responses import parse_request, to_canonical

CAPTURES = Path(__file__).resolve().parent / "captures"  # real clients' requests, keys redacted


def captured(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((CAPTURES / name).read_text())["body"]
    return body


def test_codex_turn_with_developer_messages_namespace_tools_and_a_tool_round_trip() -> None:
    body = captured("codex-0.171.0-request-2.json")
    out = to_canonical(parse_request(body))
    chat = out.request
    assert chat.system and "\n".join(p.text for p in chat.system)  # developer messages became the system prompt
    assert [m.role for m in chat.messages] == ["user", "user", "assistant", "tool"]
    call = chat.messages[2].content[0]
    assert isinstance(call, ToolCallPart) and call.name == "exec_command" and call.id == "call_mock_1"
    result = chat.messages[3].content[0]
    assert isinstance(result, ToolResultPart) and result.tool_call_id == "call_mock_1"
    names = {t.name for t in chat.tools}
    assert {"exec_command", "close_agent"} <= names  # the namespace group is flattened
    assert out.dropped_tools == ["web_search"]
    assert chat.stream and chat.tool_choice is not None and chat.tool_choice.parallel is True


@pytest.mark.parametrize("name", ["opencode-1.18.33-ai-sdk-openai-request-1.json",
                                  "opencode-1.18.33-ai-sdk-openai-request-2.json",
                                  "opencode-1.18.33-ai-sdk-openai-request-3.json",
                                  "ai-sdk-openai-4.0.118-request-1.json", "ai-sdk-openai-4.0.118-request-2.json",
                                  "ai-sdk-openai-4.0.118-request-3.json", "codex-0.171.0-request-1.json"])
def test_every_captured_request_translates(name: str) -> None:
    body = captured(name)
    chat = to_canonical(parse_request(body)).request
    assert chat.messages and chat.messages[0].role == "user"
    if body.get("max_output_tokens"):
        assert chat.max_tokens == body["max_output_tokens"]


def test_items_parts_custom_tools_and_formats() -> None:
    body = {
        "model": "m", "instructions": "be brief", "max_output_tokens": 50,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                         {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
            {"type": "reasoning", "id": "rs_1", "encrypted_content": "opaque"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "patching"}]},
            {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "done"},
        ],
        "tools": [{"type": "custom", "name": "apply_patch", "description": "patch files",
                   "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}}],
        "tool_choice": {"type": "function", "name": "apply_patch"},
        "text": {"format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "high", "summary": "auto"},
    }
    out = to_canonical(parse_request(body))
    chat = out.request
    assert chat.system == [TextPart("be brief")] and chat.max_tokens == 50
    assert isinstance(chat.messages[0].content[1], ImagePart) and chat.messages[0].content[1].media_type == "image/png"
    assistant = chat.messages[1]
    assert assistant.role == "assistant" and isinstance(assistant.content[1], ToolCallPart)
    assert json.loads(assistant.content[1].arguments) == {"input": "*** Begin Patch"}
    assert out.custom_tools == frozenset({"apply_patch"})
    assert chat.tools[0].parameters["required"] == ["input"] and "lark" in (chat.tools[0].description or "")
    assert chat.tool_choice is not None and chat.tool_choice.mode == "tool"
    assert chat.response_format == {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"},
                                                                           "strict": True}}
    assert chat.reasoning == {"effort": "high"}


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].id"),  # unresolved
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[0]"),
    ({"model": "m", "input": [{"type": "mystery"}]}, "input[0].type"),
    ({"model": "m", "input": "hi", "max_output_tokens": -1}, "max_output_tokens"),
    ({"model": "m", "input": "hi", "tools": [{"type": "teleport"}]}, "tools"),
])
def test_unsupported_input_is_a_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        to_canonical(parse_request(body))
    assert info.value.param == param


def test_hosted_tools_can_be_refused_by_config() -> None:
    body = {"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}
    with pytest.raises(InvalidRequest, match="web_search"):
        to_canonical(parse_request(body), "refuse")
    assert to_canonical(parse_request(body), "drop").dropped_tools == ["web_search"]


def test_item_list_is_the_stored_form_of_an_input() -> None:
    from gatehouse.wire.responses import item_list, references

    assert references("hi") == [] and references([{"type": "item_reference", "id": "msg_1"}, {"role": "user"}]) == [
        "msg_1"]
    (only,) = item_list("hi")
    assert only["type"] == "message" and only["role"] == "user" and only["id"].startswith("msg_")
    assert only["content"] == [{"type": "input_text", "text": "hi"}]
    given = [{"role": "assistant", "content": "ok"}, {"type": "function_call_output", "call_id": "c", "output": "x",
                                                      "id": "fco_kept"}, {"type": "message", "role": "user",
                                                                          "content": "y", "id": "m" * 300}]
    items = item_list(given)
    assert items[0]["content"] == [{"type": "output_text", "text": "ok"}] and items[1]["id"] == "fco_kept"
    assert items[2]["id"].startswith("msg_") and len(items[2]["id"]) < 40  # too long to keep: replaced
    assert given[0] == {"role": "assistant", "content": "ok"}  # the request's own items are not changed
