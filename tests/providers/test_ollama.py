"""Provider `ollama` (native /api/chat, NDJSON) end to end: the openai SDK -> gatehouse -> the
Ollama test upstream. What only the native API has - keep_alive and options such as num_ctx -
comes from the provider's config."""
from __future__ import annotations

import json

import openai
import pytest

from gatehouse.config import ConfigError, from_mapping
from tests.support import Gatehouse
from tests.upstreams.conventions import embedding

KEY = "ollama-provider-test-key"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def gh(ollama_upstream, tmp_path_factory):
    cfg = {
        "providers": {"ol": {"type": "ollama", "base_url": ollama_upstream.url, "keep_alive": "30m",
                             "options": {"num_ctx": 8192, "temperature": 0.1}}},
        "models": [
            {"name": "llama", "deployments": [{"provider": "ol", "model": "llama3.2"}]},
            {"name": "qwen", "deployments": [{"provider": "ol", "model": "qwen3:0.6b"}]},
            {"name": "ghost", "deployments": [{"provider": "ol", "model": "ghost-model"}]},
            {"name": "nomic", "embeddings": True, "deployments": [{"provider": "ol", "model": "nomic-embed-text"}]},
        ],
        "groups": {"all": {"models": ["*"]}}, "consumers": {"dev": {"group": "all", "keys": [KEY]}},
    }
    gh = Gatehouse(cfg, tmp_path_factory.mktemp("gh-ollama")).start()
    yield gh
    gh.stop()


@pytest.fixture
def client(gh):
    return openai.OpenAI(base_url=gh.url + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def seen(ollama_upstream):
    ollama_upstream.recorder.clear()
    return ollama_upstream.recorder


def test_chat_with_keep_alive_and_num_ctx_from_config(client, seen):
    resp = client.chat.completions.create(model="llama", temperature=0.7, messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}])
    assert resp.choices[0].message.content == "echo: hello there"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (4, 3)
    body = seen.last.json()
    assert seen.last.path == "/api/chat"
    assert body["keep_alive"] == "30m" and body["stream"] is False
    assert body["options"] == {"num_ctx": 8192, "temperature": 0.7}  # the request's value beats the default
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]


def test_ndjson_stream_with_thinking_and_usage(client, seen):
    chunks = list(client.chat.completions.create(
        model="qwen", reasoning_effort="high", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "THINK a b"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    thinking = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert (text, thinking) == ("echo: THINK a b", "thinking about it")
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 7)
    assert seen.last.json()["think"] is True and seen.last.json()["stream"] is True


def test_tool_calls_and_results_by_tool_name(client, seen):
    first = client.chat.completions.create(model="llama", tools=TOOLS,
                                           messages=[{"role": "user", "content": "TOOL2 weather"}])
    calls = first.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert first.choices[0].finish_reason == "tool_calls"
    history = [{"role": "user", "content": "TOOL2 weather"}, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
               {"role": "tool", "tool_call_id": calls[1].id, "content": "rainy"}]
    second = client.chat.completions.create(model="llama", tools=TOOLS, messages=history)
    assert second.choices[0].message.content == "echo: rainy"  # Ollama answers the last tool message
    sent = seen.last.json()["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert sent[2:] == [{"role": "tool", "content": "sunny", "tool_name": "get_weather"},
                        {"role": "tool", "content": "rainy", "tool_name": "get_weather"}]


def test_streamed_tool_call(client):
    name, args = None, ""
    for c in client.chat.completions.create(model="llama", tools=TOOLS, stream=True,
                                            messages=[{"role": "user", "content": "TOOL now"}]):
        for tc in c.choices[0].delta.tool_calls or [] if c.choices else []:
            name = name or tc.function.name
            args += tc.function.arguments or ""
    assert (name, json.loads(args)) == ("get_weather", {"city": "Paris"})


def test_images_json_format_and_limits(client, seen):
    content = [{"type": "text", "text": "look"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    client.chat.completions.create(model="llama", messages=[{"role": "user", "content": content}])
    assert seen.last.json()["messages"][0] == {"role": "user", "content": "look", "images": ["iVBORw0KGgo="]}
    resp = client.chat.completions.create(model="llama", response_format={"type": "json_object"},
                                          messages=[{"role": "user", "content": "json please"}])
    assert json.loads(resp.choices[0].message.content) == {"echo": "json please"} and seen.last.json()["format"] == "json"
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}}
    client.chat.completions.create(model="llama", response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": schema}}, messages=[{"role": "user", "content": "x"}])
    assert seen.last.json()["format"] == schema
    short = client.chat.completions.create(model="llama", max_tokens=2, stop=["never"],
                                           messages=[{"role": "user", "content": "a b c"}])
    assert (short.choices[0].message.content, short.choices[0].finish_reason) == ("echo: a", "length")
    assert seen.last.json()["options"]["num_predict"] == 2 and seen.last.json()["options"]["stop"] == ["never"]


def test_fill_in_the_middle_through_api_generate(client, seen):
    resp = client.completions.create(model="llama", prompt="def add(a, b):", suffix="return c")
    assert resp.choices[0].text == "echo: def add(a, b):"
    body = seen.last.json()
    assert seen.last.path == "/api/generate" and body["suffix"] == "return c" and body["keep_alive"] == "30m"
    streamed = client.completions.create(model="llama", prompt="x y", suffix="z", stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "echo: x y"


def test_embeddings_through_api_embed(client, seen):
    resp = client.embeddings.create(model="nomic", input=["alpha", "beta"], encoding_format="float")
    assert [d.embedding for d in resp.data] == [embedding("alpha"), embedding("beta")]
    assert resp.usage.prompt_tokens == 2
    assert seen.last.json() == {"model": "nomic-embed-text", "input": ["alpha", "beta"], "keep_alive": "30m",
                                "options": {"num_ctx": 8192, "temperature": 0.1}}


@pytest.mark.parametrize("model,prompt,status", [
    ("llama", "FAIL429", 429), ("llama", "FAIL503", 503), ("llama", "FAIL500", 502), ("ghost", "hi", 404),
])
def test_ollama_errors_map_to_gateway_statuses(client, model, prompt, status):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    assert info.value.status_code == status


def test_mid_stream_error_line_reaches_the_client(client):
    text = ""
    with pytest.raises(openai.APIError, match=r"failed \(in the stream\)") as info:
        for c in client.chat.completions.create(model="llama", stream=True,
                                                messages=[{"role": "user", "content": "one two STREAMERR"}]):
            text += c.choices[0].delta.content or "" if c.choices else ""
    assert text == "echo: one " and "unexpected EOF" not in str(info.value)  # the upstream's text stays out


def test_config_points_v1_users_to_the_openai_type():
    with pytest.raises(ConfigError, match=r"providers\.o\.base_url: .*use type: openai"):
        from_mapping({"providers": {"o": {"type": "ollama", "base_url": "http://h:11434/v1"}}}, {})
    from_mapping({"providers": {"o": {"type": "ollama", "base_url": "http://h:11434"}}}, {})
