"""The inbound Ollama API, driven by the official `ollama` Python client with a gateway key,
over an OpenAI-wire upstream (translated), an Ollama-wire upstream (passed through), and the
Bedrock and Gemini test upstreams."""
from __future__ import annotations

import json

import aiohttp
import ollama
import pytest

from tests.conftest import ALICE_KEY, BOB_KEY
from tests.provider_fixtures import (
    BEDROCK_ENV_KEYS,
    CLAUDE,
    start_aws_isolated,
)
from tests.upstreams import gemini_wire, openai_wire
from tests.upstreams.conventions import embedding

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


@pytest.fixture(scope="module")
def gh(openai_upstream, ollama_upstream, bedrock_upstream, gemini_upstream, tmp_path_factory):
    cfg = {
        "providers": {
            "oa": {"type": "openai", "base_url": openai_upstream.url + "/v1", "api_key": openai_wire.API_KEY},
            "ol": {"type": "ollama", "base_url": ollama_upstream.url, "keep_alive": "10m", "options": {"num_ctx": 4096}},
            "br": {"type": "bedrock", "region": "us-west-2", "endpoint_url": bedrock_upstream.url},
            "gem": {"type": "gemini", "api_key": gemini_wire.API_KEY, "base_url": gemini_upstream.url + "/v1beta"},
        },
        "models": [
            {"name": "chat", "deployments": [{"provider": "oa", "model": "up-chat"}]},
            {"name": "embed", "embeddings": True, "deployments": [{"provider": "oa", "model": "up-embed"}]},
            {"name": "llama3.2", "deployments": [{"provider": "ol", "model": "llama3.2:latest"}]},
            {"name": "qwen3", "deployments": [{"provider": "ol", "model": "qwen3:0.6b"}]},
            {"name": "nomic", "embeddings": True, "deployments": [{"provider": "ol", "model": "nomic-embed-text"}]},
            {"name": "claude", "deployments": [{"provider": "br", "model": CLAUDE}]},
            {"name": "flash", "deployments": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
            {"name": "restricted", "deployments": [{"provider": "oa", "model": "up-chat"}]},
        ],
        "groups": {"dev": {"models": ["chat", "embed", "llama3.2", "qwen3", "nomic", "claude", "flash"]},
                   "open": {"models": ["*"]}},
        "consumers": {"alice": {"group": "dev", "keys": [ALICE_KEY]}, "bob": {"group": "open", "keys": [BOB_KEY]}},
    }
    gh = start_aws_isolated(cfg, tmp_path_factory.mktemp("gh-ollama-api"), BEDROCK_ENV_KEYS)
    yield gh
    gh.stop()


@pytest.fixture
def client(gh):
    return ollama.Client(host=gh.url, headers={"Authorization": f"Bearer {ALICE_KEY}"})


@pytest.fixture
def aclient(gh):
    return ollama.AsyncClient(host=gh.url, headers={"Authorization": f"Bearer {ALICE_KEY}"})


@pytest.fixture
def upstreams(openai_upstream, ollama_upstream, bedrock_upstream, gemini_upstream):
    for srv in (openai_upstream, ollama_upstream, bedrock_upstream, gemini_upstream):
        srv.recorder.clear()
    return {"openai": openai_upstream.recorder, "ollama": ollama_upstream.recorder,
            "bedrock": bedrock_upstream.recorder, "gemini": gemini_upstream.recorder}


# ---- translated: every backend from the Ollama dialect -------------------------------------


@pytest.mark.parametrize("model", ["chat", "claude", "flash", "llama3.2"])
def test_chat_from_every_backend(client, model):
    resp = client.chat(model=model, messages=[{"role": "system", "content": "be brief"},
                                              {"role": "user", "content": "hello there"}])
    assert resp.message.role == "assistant" and resp.message.content == "echo: hello there"
    assert resp.done and resp.done_reason == "stop"
    assert (resp.prompt_eval_count, resp.eval_count) == (4, 3)
    assert resp.total_duration > 0 and resp.eval_duration > 0


@pytest.mark.parametrize("model", ["chat", "claude", "flash", "llama3.2"])
def test_streamed_chat_from_every_backend(client, model):
    parts = list(client.chat(model=model, messages=[{"role": "user", "content": "one two three"}], stream=True))
    assert "".join(p.message.content for p in parts) == "echo: one two three"
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    assert parts[-1].eval_count == 4 and parts[-1].done_reason == "stop"


def test_translated_request_reaches_an_openai_upstream_in_its_own_format(client, upstreams):
    client.chat(model="chat", messages=[{"role": "user", "content": "x"}],
                options={"temperature": 0.3, "num_predict": 50, "stop": ["zz"], "num_ctx": 2048}, keep_alive="1h")
    sent = upstreams["openai"].last.json()
    assert upstreams["openai"].last.path == "/v1/chat/completions"
    assert (sent["model"], sent["temperature"], sent["max_tokens"], sent["stop"]) == ("up-chat", 0.3, 50, ["zz"])
    assert "options" not in sent and "keep_alive" not in sent  # Ollama-only knobs stay Ollama-only


@pytest.mark.parametrize("model,upstream", [("chat", "openai"), ("claude", "bedrock"), ("flash", "gemini")])
def test_tool_round_trip_pairs_results_by_tool_name(client, upstreams, model, upstream):
    messages = [{"role": "user", "content": "TOOL2 weather"}]
    first = client.chat(model=model, messages=messages, tools=TOOLS)
    calls = first.message.tool_calls
    assert [c.function.arguments for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    messages += [first.message, {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
                 {"role": "tool", "content": "rainy", "tool_name": "get_weather"}]
    second = client.chat(model=model, messages=messages, tools=TOOLS)
    assert second.message.content in ("echo: sunny rainy", "echo: rainy")  # OpenAI-wire answers the last tool message
    assert upstreams[upstream].requests  # Bedrock and Gemini validate the pairing; a mismatch would be a 400


def test_streamed_tool_call_arrives_whole(client):
    parts = list(client.chat(model="claude", messages=[{"role": "user", "content": "TOOL now"}], tools=TOOLS, stream=True))
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert [(c.function.name, c.function.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]


def test_thinking_images_and_json_format(client, upstreams):
    resp = client.chat(model="claude", think=True, messages=[{"role": "user", "content": "THINK hard"}])
    assert resp.message.thinking == "thinking about it" and resp.message.content == "echo: THINK hard"
    client.chat(model="claude", messages=[{"role": "user", "content": "look", "images": [PNG]}])
    block = upstreams["bedrock"].last.json()["messages"][0]["content"][1]
    assert block["image"]["format"] == "png"  # Ollama images carry no type: sniffed for Bedrock
    resp = client.chat(model="flash", format="json", messages=[{"role": "user", "content": "as json"}])
    assert json.loads(resp.message.content) == {"echo": "as json"}


def test_generate_translated_and_fill_in_the_middle(client, upstreams):
    resp = client.generate(model="chat", prompt="why is the sky blue", system="short answers")
    assert resp.response == "echo: why is the sky blue" and resp.done
    sent = upstreams["openai"].last.json()
    assert sent["messages"][0] == {"role": "system", "content": "short answers"}
    parts = list(client.generate(model="flash", prompt="a b", stream=True))
    assert "".join(p.response for p in parts) == "echo: a b" and parts[-1].done
    fim = client.generate(model="chat", prompt="def add(a, b):", suffix="\nprint(add(1, 2))")
    assert fim.response == "<fim 14|17>" and upstreams["openai"].last.path == "/v1/completions"
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="claude", prompt="x", suffix="y")
    assert info.value.status_code == 400
    assert client.generate(model="claude", prompt="").done_reason == "load"


def test_embed_translated_and_legacy_embeddings(client, upstreams):
    resp = client.embed(model="embed", input=["alpha", "beta"])
    assert len(resp.embeddings) == 2 and len(resp.embeddings[0]) == 8
    assert upstreams["openai"].last.path == "/v1/embeddings"
    assert len(client.embeddings(model="embed", prompt="alpha").embedding) == 8
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model="chat-nope", input="x")
    assert info.value.status_code == 404


# ---- passed through: the deployment is itself Ollama ---------------------------------------


def test_chat_passes_through_to_an_ollama_upstream(client, upstreams):
    resp = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}],
                       options={"temperature": 0.2, "num_ctx": 1024})
    assert resp.message.content == "echo: hi"
    sent = upstreams["ollama"].last.json()
    assert sent["model"] == "llama3.2:latest"  # only the model is swapped...
    assert sent["options"] == {"num_ctx": 1024, "temperature": 0.2}  # ...the client's options win
    assert sent["keep_alive"] == "10m" and sent["stream"] is False  # the provider's default filled in
    client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], keep_alive="1h")
    assert upstreams["ollama"].last.json()["keep_alive"] == "1h"


async def test_streamed_pass_through_is_ndjson(gh, upstreams):
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "THINK go"}], "think": True}
    async with aiohttp.ClientSession() as s:
        async with s.post(gh.url + "/api/chat", json=body, headers={"Authorization": f"Bearer {ALICE_KEY}"}) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in (await r.read()).splitlines()]
    assert "".join(x["message"].get("thinking", "") for x in lines) == "thinking about it"
    assert "".join(x["message"]["content"] for x in lines) == "echo: THINK go"
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 6
    assert upstreams["ollama"].last.json()["model"] == "qwen3:0.6b"


async def test_translated_stream_is_ndjson_by_default(gh):
    body = {"model": "claude", "messages": [{"role": "user", "content": "a b"}]}  # no "stream": Ollama streams
    async with aiohttp.ClientSession() as s:
        async with s.post(gh.url + "/api/chat", json=body, headers={"Authorization": f"Bearer {ALICE_KEY}"}) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/x-ndjson"
            lines = [json.loads(line) for line in (await r.read()).splitlines()]
    assert [x["done"] for x in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(x["message"]["content"] for x in lines) == "echo: a b"
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["eval_count"] == 3


def test_generate_and_embed_pass_through(client, upstreams):
    resp = client.generate(model="llama3.2", prompt="why")
    assert resp.response == "echo: why" and resp.context  # Ollama's own reply, context included
    assert upstreams["ollama"].last.path == "/api/generate"
    vectors = client.embed(model="nomic", input=["alpha"]).embeddings
    assert vectors == [embedding("alpha")]
    assert upstreams["ollama"].last.json()["options"] == {"num_ctx": 4096}


# ---- models, version, errors ------------------------------------------------------------------------


def test_tags_lists_only_the_callers_models(client, gh):
    names = {m.model for m in client.list().models}
    assert names == {"chat", "embed", "llama3.2", "qwen3", "nomic", "claude", "flash"}
    bob = ollama.Client(host=gh.url, headers={"Authorization": f"Bearer {BOB_KEY}"})
    assert "restricted" in {m.model for m in bob.list().models}


def test_show_passes_through_or_describes(client):
    native = client.show("llama3.2")
    assert native.details.family == "llama" and "tools" in native.capabilities
    assert client.show("embed").capabilities == ["embedding"]
    assert client.show("chat").capabilities == ["completion", "tools", "insert"]
    with pytest.raises(ollama.ResponseError) as info:
        client.show("restricted")
    assert info.value.status_code == 403


async def test_version_needs_no_key(gh):
    async with aiohttp.ClientSession() as s:
        async with s.get(gh.url + "/api/version") as r:
            assert r.status == 200 and "version" in await r.json()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}])
async def test_errors_are_ollama_shaped(gh, headers):
    async with aiohttp.ClientSession() as s:
        async with s.post(gh.url + "/api/chat", json={"model": "chat", "messages": []}, headers=headers) as r:
            assert r.status == 401
            body = await r.json()
    assert set(body) == {"error"} and "wrong-key" not in body["error"]
    async with aiohttp.ClientSession() as s:
        async with s.post(gh.url + "/api/chat", data=b'{"model": ', headers={
                "Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json"}) as r:
            assert r.status == 400 and set(await r.json()) == {"error"}
        async with s.get(gh.url + "/api/tags") as r:
            assert r.status == 401


def test_upstream_failures_keep_their_status(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="claude", messages=[{"role": "user", "content": "FAIL429"}])
    assert info.value.status_code == 429 and "throttling" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404


@pytest.mark.parametrize("model", ["claude", "flash", "llama3.2"])
def test_mid_stream_failure_raises_in_the_client(client, model):
    text = ""
    with pytest.raises(ollama.ResponseError):
        for part in client.chat(model=model, messages=[{"role": "user", "content": "one two STREAMERR"}], stream=True):
            text += part.message.content
    assert text == "echo: one "


async def test_async_client_concurrent_streams_across_backends(aclient):
    import asyncio

    async def one(model: str, i: int) -> str:
        stream = await aclient.chat(model=model, messages=[{"role": "user", "content": f"n{i} x"}], stream=True)
        return "".join([p.message.content async for p in stream])

    jobs = [one(m, i) for i, m in enumerate(["chat", "claude", "flash", "llama3.2"] * 3)]
    assert await asyncio.gather(*jobs) == [f"echo: n{i} x" for i in range(12)]
