"""Every error the OpenAI surface can return: status, body shape, and that nothing reached the
upstream when it should not have. Raw HTTP (aiohttp) so we control every byte sent."""
from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conftest import ALICE_KEY, BOB_KEY, base_config
from tests.upstreams.harness import free_port

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


async def post(url: str, body, headers: dict | None = None, raw: bytes | None = None):
    hdrs = {"Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json", **(headers or {})}
    data = raw if raw is not None else json.dumps(body).encode()
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/v1/chat/completions", data=data, headers=hdrs) as r:
            return r.status, await r.json(content_type=None), r.headers


def assert_openai_error(body: dict, type_: str | None = None) -> dict:
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    if type_:
        assert err["type"] == type_
    return err


@pytest.mark.parametrize("headers", [
    {"Authorization": ""},  # missing
    {"Authorization": "Bearer not-a-real-key"},  # unknown
    {"Authorization": "Basic abc"},  # wrong scheme
])
async def test_401_same_body_for_missing_and_unknown_keys(gatehouse, recorder, headers):
    status, body, hdrs = await post(gatehouse.url, CHAT, headers)
    assert status == 401
    err = assert_openai_error(body, "authentication_error")
    assert err["code"] == "invalid_api_key"
    assert "not-a-real-key" not in json.dumps(body)
    assert hdrs["x-request-id"]
    assert recorder.requests == []


async def test_401_body_identical_for_missing_unknown_and_revoked(gatehouse, recorder):
    bodies = []
    for h in ({"Authorization": ""}, {"Authorization": "Bearer nope"}, {"x-api-key": "nope", "Authorization": ""}):
        _, body, _ = await post(gatehouse.url, CHAT, h)
        bodies.append(body)
    assert bodies[0] == bodies[1] == bodies[2]


async def test_400_malformed_json(gatehouse, recorder):
    status, body, _ = await post(gatehouse.url, None, raw=b'{"model": "chat", "messages": [')
    assert status == 400
    assert assert_openai_error(body, "invalid_request_error")["code"] == "invalid_json"
    assert recorder.requests == []


@pytest.mark.parametrize("payload,param", [
    ({"model": "chat"}, "messages"),
    ({"model": "chat", "messages": "hi"}, "messages"),
    ({"model": "chat", "messages": [{"role": 5, "content": "x"}]}, "messages[0].role"),
    ({"model": "chat", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "chat", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "chat", "messages": []}, "messages"),
])
async def test_400_bad_field_names_the_param(gatehouse, recorder, payload, param):
    status, body, _ = await post(gatehouse.url, payload)
    assert status == 400
    err = assert_openai_error(body, "invalid_request_error")
    assert err["param"] == param
    assert recorder.requests == []


@pytest.mark.parametrize("payload,param", [
    ({**CHAT, "api_base": "http://evil.example"}, "api_base"),
    ({**CHAT, "base_url": "http://evil.example"}, "base_url"),
    ({**CHAT, "api_key": "sk-mine"}, "api_key"),
    ({**CHAT, "headers": {"Authorization": "x"}}, "headers"),
    ({**CHAT, "metadata": {"litellm": {"api_base": "http://evil"}}}, "metadata.litellm.api_base"),
    ({**CHAT, "messages": [{"role": "user", "content": "x", "api_key": "k"}]}, "messages[0].api_key"),
])
async def test_400_client_cannot_choose_the_upstream(gatehouse, recorder, payload, param):
    status, body, _ = await post(gatehouse.url, payload)
    assert status == 400
    err = assert_openai_error(body)
    assert err["param"] == param and err["code"] == "forbidden_field"
    assert recorder.requests == []


async def test_tool_schema_may_have_a_headers_parameter(gatehouse, recorder):
    tools = [{"type": "function", "function": {"name": "http", "parameters": {
        "type": "object", "properties": {"headers": {"type": "object"}, "base_url": {"type": "string"}}}}}]
    status, body, _ = await post(gatehouse.url, {**CHAT, "tools": tools})
    assert status == 200, body
    assert len(recorder.requests) == 1


async def test_403_model_not_allowed_and_404_unknown_model(gatehouse, recorder):
    status, body, _ = await post(gatehouse.url, {**CHAT, "model": "restricted"})
    assert status == 403
    assert assert_openai_error(body, "permission_error")["param"] == "model"
    status, body, _ = await post(gatehouse.url, {**CHAT, "model": "no-such-model"})
    assert status == 404
    err = assert_openai_error(body, "not_found_error")
    assert "restricted" not in err["message"] and "chat" not in err["message"].replace("no-such-model", "")
    assert recorder.requests == []


async def test_413_declared_and_chunked_bodies(gatehouse, recorder):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 70000}]}
    status, body, _ = await post(gatehouse.url, big)
    assert status == 413
    assert_openai_error(body, "request_too_large")

    async def chunks():
        for _ in range(20):
            yield b" " * 8192  # chunked: no Content-Length, 160 KiB in all

    async with aiohttp.ClientSession() as s:
        async with s.post(gatehouse.url + "/v1/chat/completions", data=chunks(),
                          headers={"Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json"}) as r:
            assert r.status == 413
            assert_openai_error(await r.json())
    assert recorder.requests == []


async def test_415_wrong_content_type(gatehouse, recorder):
    status, body, _ = await post(gatehouse.url, CHAT, {"Content-Type": "text/plain"})
    assert status == 415
    assert assert_openai_error(body)["code"] == "unsupported_media_type"
    assert recorder.requests == []


async def test_upstream_errors_are_mapped_without_internal_details(gatehouse, recorder):
    status, body, _ = await post(gatehouse.url, {**CHAT, "messages": [{"role": "user", "content": "FAIL500"}]})
    assert status == 502
    err = assert_openai_error(body)
    assert "127.0.0.1" not in err["message"] and "test-openai-key" not in json.dumps(body)
    status, body, _ = await post(gatehouse.url, {**CHAT, "messages": [{"role": "user", "content": "FAIL429"}]})
    assert status == 429
    assert_openai_error(body, "rate_limit_error")


async def test_request_id_is_taken_from_the_request_and_forwarded(gatehouse, recorder):
    status, _, hdrs = await post(gatehouse.url, CHAT, {"x-request-id": "trace-abc-123"})
    assert status == 200 and hdrs["x-request-id"] == "trace-abc-123"
    assert recorder.last.headers["x-request-id"] == "trace-abc-123"
    _, _, hdrs = await post(gatehouse.url, CHAT, {"x-request-id": "bad id with spaces"})
    assert hdrs["x-request-id"] != "bad id with spaces" and len(hdrs["x-request-id"]) == 32


async def test_unknown_route_and_wrong_method(gatehouse):
    async with aiohttp.ClientSession() as s:
        async with s.get(gatehouse.url + "/v1/nope") as r:
            assert r.status == 404
            assert_openai_error(await r.json())
        async with s.get(gatehouse.url + "/v1/chat/completions") as r:
            assert r.status == 405
            assert_openai_error(await r.json())


def _dead_port() -> int:
    return free_port()


async def test_502_unreachable_and_504_timeout(start_gatehouse, openai_upstream, recorder):
    cfg = base_config(openai_upstream.url)
    cfg["providers"]["dead"] = {"type": "openai", "base_url": f"http://127.0.0.1:{_dead_port()}/v1"}
    cfg["providers"]["slow"] = {"type": "openai", "base_url": f"{openai_upstream.url}/v1",
                                "api_key": "test-openai-key", "read_timeout": 0.5}
    cfg["models"] += [{"name": "dead", "deployments": [{"provider": "dead", "model": "x"}]},
                      {"name": "slow", "deployments": [{"provider": "slow", "model": "up-chat"}]}]
    gh = start_gatehouse(cfg)
    status, body, _ = await post(gh.url, {**CHAT, "model": "dead"}, {"Authorization": f"Bearer {BOB_KEY}"})
    assert status == 502
    err = assert_openai_error(body)
    assert err["code"] == "upstream_unreachable" and "127.0.0.1" not in err["message"]
    status, body, _ = await post(gh.url, {"model": "slow", "messages": [{"role": "user", "content": "SLOW"}]},
                                 {"Authorization": f"Bearer {BOB_KEY}"})
    assert status == 504
    assert assert_openai_error(body, "timeout_error")["code"] == "upstream_timeout"
    logs = gh.logs()
    for secret in (BOB_KEY, "test-openai-key", "Traceback"):
        assert secret not in logs


async def test_failover_to_next_deployment_when_first_is_down(start_gatehouse, openai_upstream, recorder):
    cfg = base_config(openai_upstream.url)
    cfg["providers"]["dead"] = {"type": "openai", "base_url": f"http://127.0.0.1:{_dead_port()}/v1"}
    cfg["models"].append({"name": "ha", "deployments": [{"provider": "dead", "model": "x"},
                                                        {"provider": "up", "model": "up-chat"}]})
    gh = start_gatehouse(cfg)
    status, body, _ = await post(gh.url, {**CHAT, "model": "ha"}, {"Authorization": f"Bearer {BOB_KEY}"})
    assert status == 200 and body["choices"][0]["message"]["content"] == "echo: hi"


async def test_stream_cut_by_upstream_ends_with_an_error_not_a_hang(gatehouse):
    body = {**CHAT, "stream": True, "messages": [{"role": "user", "content": "a b c d CUTSTREAM"}]}
    async with aiohttp.ClientSession() as s:
        async with s.post(gatehouse.url + "/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {ALICE_KEY}"},
                          timeout=aiohttp.ClientTimeout(total=10)) as r:
            assert r.status == 200
            text = (await r.read()).decode()
    assert '"error"' in text and "[DONE]" not in text
