"""What a client body may carry, on every dialect's routes, over real sockets to a real
gatehouse and the OpenAI-wire test upstream (which records what reached it): upstream
overrides are refused however they are spelt, escaped or nested; only the fields a dialect
defines are forwarded; numeric fields are checked for sign and range; bodies nested too
deeply are a 400, not a 500."""
from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conftest import ALICE_KEY

MSG = [{"role": "user", "content": "hi"}]
ROUTES = {  # path -> a valid body for the `chat` (or `embed`) model, and the error shape
    "/v1/chat/completions": ({"model": "chat", "messages": MSG}, "openai"),
    "/v1/completions": ({"model": "chat", "prompt": "hi"}, "openai"),
    "/v1/embeddings": ({"model": "embed", "input": "hi"}, "openai"),
    "/v1/messages": ({"model": "chat", "max_tokens": 10, "messages": MSG}, "anthropic"),
    "/v1/messages/count_tokens": ({"model": "chat", "messages": MSG}, "anthropic"),
    "/api/chat": ({"model": "chat", "messages": MSG, "stream": False}, "ollama"),
    "/api/generate": ({"model": "chat", "prompt": "hi", "stream": False}, "ollama"),
    "/api/embed": ({"model": "embed", "input": "hi"}, "ollama"),
}


async def post(url: str, path: str, body: dict | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s, s.post(url + path, data=data, headers=headers) as r:
        return r.status, await r.json(content_type=None)


def message(body: dict, shape: str) -> str:
    """The error message, after checking the body has the dialect's own error shape."""
    if shape == "openai":
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
        return body["error"]["message"]
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        return body["error"]["message"]
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return body["error"]


def upstream_body(recorder) -> dict:
    assert len(recorder.requests) == 1
    return json.loads(recorder.last.body)


# -- overrides: decoded keys, any spelling, any depth ---------------------------------------------

@pytest.mark.parametrize("field", [
    "api_base", "base_url", "api_key", "headers", "extra_headers", "azure_endpoint", "api_version",
    "custom_llm_provider", "vertex_credentials", "aws_region_name", "api_host", "API_BASE", "apiBase",
    "baseURL", "extra_query", "organization", "Api-Key", "extra_body",
])
@pytest.mark.parametrize("path", list(ROUTES))
async def test_override_fields_are_refused_on_every_route(gatehouse, recorder, path, field):
    body, shape = ROUTES[path]
    status, answer = await post(gatehouse.url, path, {**body, field: "http://evil.example"})
    assert status == 400, answer
    assert f"'{field}'" in message(answer, shape)
    if shape == "openai":
        assert answer["error"]["code"] == "forbidden_field" and answer["error"]["param"] == field
    assert recorder.requests == []


@pytest.mark.parametrize("raw,param", [
    (b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"api\\u005fbase":"http://evil"}', "api_base"),
    (b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"\\u0062ase_url":"http://evil"}', "base_url"),
    (b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"metadata":{"api\\u005fkey":"k"}}',
     "metadata.api_key"),
    (b'{"model":"chat","messages":[{"role":"user","content":"hi","h\\u0065aders":{"x":"y"}}]}',
     "messages[0].headers"),
])
async def test_json_escapes_do_not_hide_a_field(gatehouse, recorder, raw, param):
    status, answer = await post(gatehouse.url, "/v1/chat/completions", raw=raw)
    assert status == 400 and answer["error"]["param"] == param and answer["error"]["code"] == "forbidden_field"
    assert recorder.requests == []


@pytest.mark.parametrize("extra,param", [
    ({"input": {"api_base": "http://evil"}}, "input.api_base"),  # a subtree the old check skipped
    ({"metadata": {"schema": {"api_base": "http://evil"}}}, "metadata.schema.api_base"),
    ({"metadata": {"properties": {"api_key": "k"}}}, "metadata.properties.api_key"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}, "base_url": "http://evil"}}}, "response_format.json_schema.base_url"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"},
                                                  "api_base": "http://evil"}}]}, "tools[0].function.api_base"),
])
async def test_nesting_does_not_hide_a_field(gatehouse, recorder, extra, param):
    status, answer = await post(gatehouse.url, "/v1/chat/completions", {**ROUTES["/v1/chat/completions"][0], **extra})
    assert status == 400 and answer["error"]["param"] == param, answer
    assert recorder.requests == []


async def test_schemas_and_tool_arguments_may_use_those_names_as_data(gatehouse, recorder):
    schema = {"type": "object", "properties": {"headers": {"type": "object", "default": {"api_key": ""}},
                                               "base_url": {"type": "string", "enum": ["a"]}}}
    status, answer = await post(gatehouse.url, "/v1/messages", {
        "model": "chat", "max_tokens": 10, "tools": [{"name": "fetch", "input_schema": schema}],
        "messages": [{"role": "user", "content": "get it"},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "fetch",
                                                        "input": {"headers": {"api_key": "k"}, "base_url": "u"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]})
    assert status == 200, answer
    status, answer = await post(gatehouse.url, "/api/chat", {
        "model": "chat", "stream": False, "format": schema, "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"function": {"name": "fetch", "arguments": {"headers": {}}}}]},
            {"role": "tool", "content": "ok", "tool_name": "fetch"}],
        "tools": [{"type": "function", "function": {"name": "fetch", "parameters": schema}}]})
    assert status == 200, answer
    status, answer = await post(gatehouse.url, "/api/chat", {"model": "chat", "messages": MSG, "options": {"api_base": "x"}})
    assert status == 400 and "'options.api_base'" in answer["error"]


async def test_only_fields_the_dialect_defines_are_forwarded(gatehouse, recorder):
    body = {**ROUTES["/v1/chat/completions"][0], "frequency_penalty": 0.5, "min_p": 0.1, "x_custom": {"a": 1},
            "litellm_params": {"model": "other"}}
    status, answer = await post(gatehouse.url, "/v1/chat/completions", body)
    assert status == 200, answer
    got = upstream_body(recorder)  # the pass-through path: the body as sent, less what is not OpenAI's
    assert got["frequency_penalty"] == 0.5 and got["min_p"] == 0.1
    assert "x_custom" not in got and "litellm_params" not in got
    recorder.clear()
    status, _ = await post(gatehouse.url, "/v1/messages", {**ROUTES["/v1/messages"][0], "x_custom": 1, "metadata": {"user_id": "u"}})
    assert status == 200 and "x_custom" not in upstream_body(recorder)  # translated: no extra either


# -- numbers: sign and range on every route ---------------------------------------------------------

@pytest.mark.parametrize("path,extra", [
    ("/v1/completions", {"max_tokens": -100000}),
    ("/v1/completions", {"max_tokens": 0}),
    ("/v1/completions", {"temperature": -1}),
    ("/v1/completions", {"n": -1}),
    ("/v1/chat/completions", {"max_tokens": -5}),
    ("/v1/chat/completions", {"max_completion_tokens": -5}),
    ("/v1/chat/completions", {"temperature": 2.5}),
    ("/v1/chat/completions", {"top_p": 1.5}),
    ("/v1/chat/completions", {"n": 0}),
    ("/v1/chat/completions", {"presence_penalty": -3}),
    ("/v1/chat/completions", {"logit_bias": {"42": 1000}}),
    ("/v1/chat/completions", {"seed": 2**70}),
    ("/v1/chat/completions", {"max_tokens": 2**40}),
    ("/v1/embeddings", {"dimensions": -3}),
    ("/v1/messages", {"max_tokens": -1}),
    ("/v1/messages", {"temperature": 1.5}),
    ("/v1/messages", {"top_k": -2}),
    ("/v1/messages", {"thinking": {"type": "enabled", "budget_tokens": -10}}),
    ("/v1/messages/count_tokens", {"top_p": -0.1}),
    ("/api/chat", {"options": {"num_predict": -5}}),
    ("/api/chat", {"options": {"temperature": -1}}),
    ("/api/generate", {"options": {"num_ctx": 0}}),
    ("/api/generate", {"options": {"top_p": 3}}),
    ("/api/embed", {"dimensions": 0}),
])
async def test_numbers_out_of_range_are_refused_at_the_edge(gatehouse, recorder, path, extra):
    body, shape = ROUTES[path]
    status, answer = await post(gatehouse.url, path, {**body, **extra})
    assert status == 400, answer
    name = next(iter(extra))
    assert name in message(answer, shape)
    assert recorder.requests == []


async def test_negative_max_tokens_never_credits_the_token_allowance(start_gatehouse, openai_upstream, recorder):
    from tests.conftest import base_config

    cfg = base_config(openai_upstream.url)
    cfg["groups"]["dev"]["tokens_per_minute"] = 1000
    gh = start_gatehouse(cfg)
    headers = {"Authorization": f"Bearer {ALICE_KEY}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(gh.url + "/v1/completions", headers=headers,
                          json={"model": "chat", "prompt": "hi", "max_tokens": -1000000}) as r:
            assert r.status == 400
        async with s.post(gh.url + "/v1/chat/completions", headers=headers,
                          json={"model": "chat", "messages": MSG, "max_tokens": 5}) as r:
            assert r.status == 200
            assert int(r.headers["x-ratelimit-remaining-tokens"]) <= 1000


# -- depth ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [65, 1000, 30000])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/api/chat", "/v1/embeddings"])
async def test_deeply_nested_bodies_are_a_400(gatehouse, recorder, path, depth):
    body, shape = ROUTES[path]
    head = json.dumps(body)[:-1]
    raw = (head + ', "metadata": ' + "[" * depth + "]" * depth + "}").encode()
    status, answer = await post(gatehouse.url, path, raw=raw)
    assert status == 400, answer
    assert "nested" in message(answer, shape)
    assert recorder.requests == []


async def test_ordinary_nesting_is_served(gatehouse, recorder):
    deep: dict = {"type": "string"}
    for _ in range(20):
        deep = {"type": "object", "properties": {"x": deep}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": deep}}]
    status, answer = await post(gatehouse.url, "/v1/chat/completions", {**ROUTES["/v1/chat/completions"][0], "tools": tools})
    assert status == 200, answer
