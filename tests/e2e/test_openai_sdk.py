"""The official openai SDK against a running gatehouse over the OpenAI-wire test upstream."""
from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.conftest import ALICE_KEY, BOB_KEY


@pytest.fixture
def client(gatehouse):
    return openai.OpenAI(base_url=gatehouse.url + "/v1", api_key=ALICE_KEY, max_retries=0)


@pytest.fixture
def aclient(gatehouse):
    return openai.AsyncOpenAI(base_url=gatehouse.url + "/v1", api_key=ALICE_KEY, max_retries=0)


def test_chat_non_stream_maps_model_and_authenticates_upstream(client, recorder):
    resp = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello world"}])
    assert resp.choices[0].message.content == "echo: hello world"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == 2 and resp.usage.completion_tokens == 3
    seen = recorder.last
    assert seen.json()["model"] == "up-chat"  # public name mapped to the deployment's model
    assert seen.headers["Authorization"] == "Bearer test-openai-key"
    assert "x-request-id" in {k.lower() for k in seen.headers}


def test_chat_stream_relays_chunks_and_hides_usage_chunk(client, recorder):
    stream = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "one two three four"}], stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four"
    assert all(c.choices for c in chunks), "client did not ask for usage, so no usage-only chunk"
    assert chunks[-1].choices[0].finish_reason == "stop"
    sent = recorder.last.json()
    assert sent["stream_options"] == {"include_usage": True}, "usage is always requested upstream"


def test_chat_stream_with_include_usage_gets_usage_chunk(client):
    stream = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "a b"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].choices == []


def test_tools_and_parallel_calls_pass_through(client, recorder):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    resp = client.chat.completions.create(model="chat", tools=tools,
                                          messages=[{"role": "user", "content": "TOOL2 weather"}])
    calls = resp.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "Rome"]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert recorder.last.json()["tools"] == tools


def test_streamed_tool_call_arguments_reassemble(client):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    stream = client.chat.completions.create(model="chat", tools=tools, stream=True,
                                            messages=[{"role": "user", "content": "TOOL now"}])
    args = ""
    name = None
    for c in stream:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            name = name or tc.function.name
            args += tc.function.arguments or ""
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"}


def test_images_and_json_mode_pass_through(client, recorder):
    content = [{"type": "text", "text": "describe"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    resp = client.chat.completions.create(model="chat", response_format={"type": "json_object"},
                                          messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == "echo: describe"
    sent = recorder.last.json()
    assert sent["messages"][0]["content"] == content
    assert sent["response_format"] == {"type": "json_object"}


def test_vendor_extras_reach_an_openai_compatible_upstream(client, recorder):
    client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}],
                                   extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}})
    sent = recorder.last.json()
    assert sent["top_k"] == 20 and sent["chat_template_kwargs"] == {"enable_thinking": False}


def test_completions_with_suffix_fill_in_the_middle(client, recorder):
    resp = client.completions.create(model="chat", prompt="def add(a, b):\n    ", suffix="\n\nprint(add(1, 2))")
    assert resp.choices[0].text == "<fim 19|18>"
    assert recorder.last.json()["suffix"] == "\n\nprint(add(1, 2))"
    stream = client.completions.create(model="chat", prompt="abc", suffix="xyz", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "<fim 3|3>"


def test_embeddings(client):
    resp = client.embeddings.create(model="embed", input=["alpha", "beta gamma"])
    assert len(resp.data) == 2 and len(resp.data[0].embedding) == 8
    assert resp.usage.prompt_tokens == 3


def test_models_list_shows_only_allowed(client, gatehouse):
    ids = {m.id for m in client.models.list()}
    assert ids == {"chat", "embed", "echo"}  # alice's group does not include "restricted"
    bob = openai.OpenAI(base_url=gatehouse.url + "/v1", api_key=BOB_KEY, max_retries=0)
    assert "restricted" in {m.id for m in bob.models.list()}
    assert client.models.retrieve("chat").id == "chat"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("restricted")


def test_echo_model_streams_and_reports_usage(client):
    resp = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "ping"}])
    assert resp.choices[0].message.content == "echo: ping" and resp.usage.total_tokens > 0
    stream = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "ping pong"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: ping pong"
    assert chunks[-1].usage.completion_tokens > 0


async def test_async_client_concurrent_streams(aclient):
    async def one(i: int) -> str:
        stream = await aclient.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": f"n{i} x"}], stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert results == [f"echo: n{i} x" for i in range(20)]
    resp = await aclient.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert resp.choices[0].message.content == "echo: hi"
