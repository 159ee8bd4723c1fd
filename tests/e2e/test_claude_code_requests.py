"""Claude-Code-shaped traffic, replayed with the anthropic SDK.

The shape below is what Claude Code 2.1 sends (captured against a recording server): the
beta Messages route (`?beta=true`) with seven `anthropic-beta` flags, system blocks with
cache_control, 25 tools whose schemas carry `$schema`, a user turn of several text blocks,
a mid-conversation `system` turn, `thinking: {type: adaptive}`, `context_management`,
`output_config`, `metadata.user_id`, `max_tokens` 32000 and `stream: true`; the texts here
are stand-ins. Over an OpenAI-wire upstream every Anthropic-only part must vanish cleanly;
over an Anthropic-wire upstream it must pass through untouched.

Set GATEHOUSE_CLAUDE_CODE_BIN to a Claude Code binary to also run the real thing.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.anthropic_setup import CLAUDE_MAIN_ID, anthropic_config
from tests.conftest import ALICE_KEY
from tests.support import Gatehouse

BETAS = ["claude-code-20250219", "interleaved-thinking-2025-05-14", "context-management-2025-06-27",
         "prompt-caching-scope-2026-01-05", "mid-conversation-system-2026-04-07", "effort-2025-11-24",
         "fine-grained-tool-streaming-2025-05-14"]
TOOL_NAMES = ["Agent", "Bash", "CronCreate", "CronDelete", "CronList", "Edit", "EnterWorktree", "ExitWorktree",
              "Glob", "Grep", "NotebookEdit", "Read", "ScheduleWakeup", "SendMessage", "Skill", "TaskCreate",
              "TaskGet", "TaskList", "TaskOutput", "TaskStop", "TaskUpdate", "WebFetch", "WebSearch", "Workflow", "Write"]
SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"


def tool(name: str) -> dict[str, Any]:
    return {"name": name, "description": f"{name} tool.\n\n- Usage notes for {name}.",
            "input_schema": {"$schema": SCHEMA_URL, "type": "object", "additionalProperties": False,
                             "properties": {"city": {"description": "argument", "type": "string"}},
                             "required": ["city"] if name == "Bash" else []}}


def claude_code_body(prompt: str) -> dict[str, Any]:
    return {
        "model": CLAUDE_MAIN_ID,
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are an agent for software tasks.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "\nLong instructions about tools and tone.\n", "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [tool(n) for n in TOOL_NAMES],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nToday's date is 2026-01-01.\n</system-reminder>\n\n"},
                {"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": "Available agent types for the Agent tool:\n- Explore: search"},
        ],
        "metadata": {"user_id": json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": "s-1"})},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }


HEADERS = {"x-app": "cli", "User-Agent": "claude-cli/2.1.0 (external, sdk-cli)", "X-Claude-Code-Session-Id": "s-1",
           "anthropic-dangerous-direct-browser-access": "true"}


@pytest.fixture(scope="module")
def gh(openai_upstream, anthropic_upstream, tmp_path_factory) -> Iterator[Gatehouse]:
    g = Gatehouse(anthropic_config(openai_upstream.url, anthropic_upstream.url), tmp_path_factory.mktemp("gh")).start()
    yield g
    g.stop()


@pytest.fixture
def client(gh) -> anthropic.Anthropic:
    # Claude Code authenticates with ANTHROPIC_AUTH_TOKEN, i.e. `Authorization: Bearer`.
    return anthropic.Anthropic(base_url=gh.url, auth_token=ALICE_KEY, api_key=None, max_retries=0,
                               default_headers=HEADERS)


def stream_beta(client: anthropic.Anthropic, body: dict[str, Any]):
    with client.beta.messages.stream(**body, betas=BETAS) as stream:
        events = list(stream)
        return events, stream.get_final_message()


def test_claude_code_turns_over_an_openai_upstream(client, openai_upstream):
    openai_upstream.recorder.clear()
    body = claude_code_body("fix the TOOL bug")
    events, first = stream_beta(client, body)
    assert first.stop_reason == "tool_use" and first.model == "chat"
    call = first.content[-1]
    assert call.type == "tool_use" and call.name == "Agent" and call.input == {"city": "Paris"}
    assert events[0].type == "message_start" and events[-1].type == "message_stop"

    sent = openai_upstream.recorder.last
    assert sent.query == {} and sent.path == "/v1/chat/completions"
    up = sent.json()
    assert set(up) == {"model", "messages", "max_tokens", "tools", "stream", "stream_options"}, \
        "metadata, thinking, context_management and output_config stay behind"
    assert up["model"] == "up-chat" and up["max_tokens"] == 32000
    assert [m["role"] for m in up["messages"]] == ["system", "user"], "the system turn joins the system message"
    assert up["messages"][0]["content"].endswith("Available agent types for the Agent tool:\n- Explore: search")
    assert up["messages"][1]["content"].endswith("fix the TOOL bug")
    assert [t["function"]["name"] for t in up["tools"]] == TOOL_NAMES
    assert up["tools"][1]["function"]["parameters"] == tool("Bash")["input_schema"]
    assert "cache_control" not in sent.body.decode()
    assert not any(h.lower().startswith(("anthropic", "x-claude", "x-app")) for h in sent.headers)

    # Next turn, as Claude Code sends it: the whole history plus the (failed) tool's result.
    body["messages"] = body["messages"][:1] + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "is_error": True,
                                      "content": [{"type": "text", "text": "InputValidationError: prompt missing"}]},
                                     {"type": "text", "text": "<system-reminder>note</system-reminder>"}]}]
    events, final = stream_beta(client, body)
    assert final.stop_reason == "end_turn"
    assert final.content[-1].text == "echo: <system-reminder>note</system-reminder>"
    msgs = openai_upstream.recorder.last.json()["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "user"]
    assert msgs[2]["tool_calls"][0]["id"] == call.id and msgs[3]["tool_call_id"] == call.id
    assert msgs[3]["content"] == "Error: InputValidationError: prompt missing"


def test_claude_code_thinking_history_over_an_openai_upstream(client, openai_upstream):
    body = claude_code_body("THINK first")
    _, first = stream_beta(client, body)
    assert [b.type for b in first.content] == ["thinking", "text"]
    body["messages"] = body["messages"][:1] + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": "and now?"}]
    _, second = stream_beta(client, body)
    assert second.content[-1].text == "echo: and now?"
    assistant = openai_upstream.recorder.last.json()["messages"][2]
    assert assistant["reasoning_content"] == "thinking about it"


def test_claude_code_request_passes_through_to_an_anthropic_upstream(client, anthropic_upstream):
    anthropic_upstream.recorder.clear()
    body = claude_code_body("hello there")
    # The test upstream implements the public API without the newest betas' fields.
    del body["output_config"]
    body["messages"] = body["messages"][:1]
    body["model"] = "claude"
    _, final = stream_beta(client, body)
    assert final.content[-1].text.startswith("echo: <system-reminder>") and final.content[-1].text.endswith("hello there")
    got = anthropic_upstream.recorder.last
    assert got.json() == {**copy.deepcopy(body), "model": "claude-up", "stream": True}
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["anthropic-beta"] == ",".join(BETAS)
    assert ALICE_KEY not in json.dumps(headers) and "x-claude-code-session-id" not in headers


@pytest.mark.skipif(not os.environ.get("GATEHOUSE_CLAUDE_CODE_BIN"), reason="set GATEHOUSE_CLAUDE_CODE_BIN to run Claude Code")
@pytest.mark.parametrize("extra_args", [["--model", "echo"], []])  # [] = Claude Code's own model ids via aliases
def test_real_claude_code(gh, tmp_path, extra_args):
    env = {**os.environ, "HOME": str(tmp_path), "ANTHROPIC_BASE_URL": gh.url, "ANTHROPIC_AUTH_TOKEN": ALICE_KEY,
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    env.pop("ANTHROPIC_API_KEY", None)
    done = subprocess.run([os.environ["GATEHOUSE_CLAUDE_CODE_BIN"], "-p", "hello gateway", *extra_args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().startswith("echo:") and "hello gateway" in done.stdout
