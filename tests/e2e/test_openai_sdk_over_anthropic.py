"""The official openai SDK against gatehouse over the Anthropic-wire test upstream: the
reverse translation (OpenAI chat completions -> Anthropic Messages and back), streamed and
not, with tools, reasoning and errors."""
from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.anthropic_setup import anthropic_config
from tests.conftest import ALICE_KEY
from tests.support import Gatehouse

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def gh(openai_upstream, anthropic_upstream, tmp_path_factory) -> Iterator[Gatehouse]:
    g = Gatehouse(anthropic_config(openai_upstream.url, anthropic_upstream.url), tmp_path_factory.mktemp("gh")).start()
    yield g
    g.stop()


@pytest.fixture
def client(gh) -> openai.OpenAI:
    return openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)


@pytest.fixture
def sent(anthropic_upstream):
    anthropic_upstream.recorder.clear()
    return anthropic_upstream.recorder


def test_non_stream(client, sent):
    resp = client.chat.completions.create(
        model="claude", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}])
    assert resp.choices[0].message.content == "echo: hello world"
    assert resp.choices[0].finish_reason == "stop" and resp.model == "claude"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (4, 3)
    got = sent.last
    assert got.path == "/v1/messages"
    assert got.json() == {"model": "claude-up", "max_tokens": 4096,
                          "system": [{"type": "text", "text": "be brief"}],
                          "messages": [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]}
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["x-api-key"] == "test-anthropic-key" and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers


def test_stream_with_usage(client):
    stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "one two three"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.prompt_tokens == 3 and chunks[-1].usage.completion_tokens == 4


def test_tools_round_trip(client, sent):
    messages: list[dict] = [{"role": "user", "content": "TOOL2 weather in Paris and Rome"}]
    resp = client.chat.completions.create(model="claude", messages=messages, tools=TOOLS, tool_choice="required",
                                          parallel_tool_calls=True)
    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    assert [json.loads(c.function.arguments) for c in msg.tool_calls] == [{"city": "Paris"}, {"city": "Rome"}]
    first = sent.last.json()
    assert first["tools"] == [{"name": "get_weather", "description": "weather",
                               "input_schema": TOOLS[0]["function"]["parameters"]}]
    assert first["tool_choice"] == {"type": "any"}
    messages.append(msg.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": c.id, "content": f"{i} sunny"} for i, c in enumerate(msg.tool_calls)]
    final = client.chat.completions.create(model="claude", messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "echo: 0 sunny 1 sunny"
    turns = sent.last.json()["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in turns[2]["content"]] == [c.id for c in msg.tool_calls]


def test_streamed_tool_call(client):
    stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "TOOL now"}],
                                            tools=TOOLS, stream=True)
    name, args, finish = None, "", None
    for c in stream:
        if not c.choices:
            continue
        for tc in c.choices[0].delta.tool_calls or []:
            name = name or tc.function.name
            args += tc.function.arguments or ""
        finish = c.choices[0].finish_reason or finish
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"} and finish == "tool_calls"


def test_reasoning_effort_becomes_thinking_and_comes_back(client, sent):
    resp = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "THINK about it"}],
                                          reasoning_effort="low", max_completion_tokens=500)
    assert resp.choices[0].message.content == "echo: THINK about it"
    assert resp.choices[0].message.model_extra["reasoning_content"] == "thinking about it"
    assert sent.last.json()["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "THINK x"}], stream=True)
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in stream if c.choices)
    assert reasoning == "thinking about it"


def test_stop_and_length(client):
    resp = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hello world"}],
                                          stop=["world"])
    assert resp.choices[0].message.content.rstrip() == "echo: hello" and resp.choices[0].finish_reason == "stop"
    resp = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "a b c d"}], max_tokens=2)
    assert resp.choices[0].finish_reason == "length"


def test_errors(client):
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "FAIL429"}])
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], temperature=1.5)
    # Anthropic's own text stays out (docs/errors.md); its documented error type is named.
    assert "rejected the request" in info.value.message and "invalid_request_error" in info.value.message
    stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "a b STREAMERR"}],
                                            stream=True)
    with pytest.raises(openai.APIError):
        list(stream)
