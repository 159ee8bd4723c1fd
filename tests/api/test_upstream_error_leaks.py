"""Upstream error bodies never reach the client (issue 13, defect 1), and an upstream's
Retry-After does (issue 14, defect 10).

A hostile upstream (tests/upstreams/hostile_wire.py) answers errors that echo the credential it
received, its own URL, an internal host and IP and a Python traceback. Every client route
(OpenAI, Anthropic, Ollama) x every provider type (openai, anthropic, ollama, bedrock, gemini)
x stream/non-stream x upstream status is checked: none of those strings in the response, the
error in the client's dialect with the right status, and nothing of it in the gateway's log but
scrubbed text.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ADMIN_KEY, ALICE_KEY
from tests.support import Gatehouse
from tests.upstreams import hostile_wire
from tests.upstreams.harness import ServerThread

KEYS = {
    "openai": "sk-hostile-openai-7f3c9a1b2d4e5f60718293a4",
    "anthropic": "sk-ant-hostile-anthropic-0a1b2c3d4e5f6a7b",
    "ollama": "ollama-proxy-secret-5e6f7a8b9c0d1e2f3a4b",
    "bedrock": "bedrock-api-key-hostile-9c8b7a6f5e4d3c2b1a",
    "gemini": "AIzaHostileGeminiKey-1234567890abcdefXYZ",
}
PROVIDERS = list(KEYS)
ROUTES = ["openai", "anthropic", "ollama"]
STATUSES = [400, 401, 429, 500]
# The status the client gets for the upstream's: its own mistakes and rate limits keep theirs;
# the upstream refusing the gateway's credentials or failing is the gateway's problem (502).
CLIENT_STATUS = {400: 400, 401: 502, 429: 429, 500: 502}


def _provider(ptype: str, url: str) -> dict:
    # The same deployments fail on purpose over and over: no circuit breaker, so every case
    # reaches the hostile upstream instead of the breaker's fast 503.
    if ptype == "openai":
        return {"type": "openai", "base_url": f"{url}/v1", "api_key": KEYS[ptype], "failure_threshold": 0}
    if ptype == "bedrock":
        return {"type": "bedrock", "region": "us-east-1", "endpoint_url": url, "api_key": KEYS[ptype],
                "failure_threshold": 0}
    if ptype == "gemini":
        return {"type": "gemini", "base_url": f"{url}/v1beta", "api_key": KEYS[ptype], "failure_threshold": 0}
    return {"type": ptype, "base_url": url, "api_key": KEYS[ptype], "failure_threshold": 0}


def _modes() -> list[str]:
    return [f"fail-{s}" for s in STATUSES] + ["midstream", "redirect", "error-200"]


@pytest.fixture(scope="module")
def hostile() -> Iterator[ServerThread]:
    with ServerThread(hostile_wire.make_app) as srv:
        yield srv


@pytest.fixture(scope="module")
def gateway(hostile: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    models = [{"name": f"{p}-{mode}", "deployments": [{"provider": p, "model": f"Hostile-Model-{mode}"}]}
              for p in PROVIDERS for mode in _modes()]
    cfg = {
        "admin": {"key": ADMIN_KEY},
        "providers": {p: _provider(p, hostile.url) for p in PROVIDERS},
        "models": models,
        "groups": {"dev": {"models": ["*"]}},
        "consumers": {"alice": {"group": "dev", "keys": [ALICE_KEY]}},
    }
    home: Path = tmp_path_factory.mktemp("gh-hostile")
    gh = Gatehouse(cfg, home).start()
    yield gh
    gh.stop()


def _request(route: str, model: str, stream: bool) -> tuple[str, dict]:
    messages = [{"role": "user", "content": "hi"}]
    if route == "openai":
        return "/v1/chat/completions", {"model": model, "messages": messages, "stream": stream}
    if route == "anthropic":
        return "/v1/messages", {"model": model, "max_tokens": 50, "messages": messages, "stream": stream}
    return "/api/chat", {"model": model, "messages": messages, "stream": stream}


async def _call(gh: Gatehouse, route: str, model: str, stream: bool) -> tuple[int, str, aiohttp.typedefs.LooseHeaders]:
    path, body = _request(route, model, stream)
    headers = {"Authorization": f"Bearer {ALICE_KEY}"}
    async with aiohttp.ClientSession() as s, s.post(gh.url + path, json=body, headers=headers) as r:
        return r.status, (await r.read()).decode(), r.headers


def _assert_no_leak(text: str, port: int) -> None:
    for needle in hostile_wire.leaks(port, list(KEYS.values())):
        assert needle not in text, f"{needle!r} leaked: {text}"


def _assert_error_shape(route: str, body: dict) -> str:
    """The error in the client's dialect; returns its message."""
    if route == "openai":
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
        return body["error"]["message"]
    if route == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        return body["error"]["message"]
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return body["error"]


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("route", ROUTES)
async def test_upstream_error_status_reaches_client_without_its_text(gateway, hostile, route, provider, status,
                                                                      stream):
    got, text, headers = await _call(gateway, route, f"{provider}-fail-{status}", stream)
    _assert_no_leak(text, hostile.port)
    assert got == CLIENT_STATUS[status], text
    message = _assert_error_shape(route, json.loads(text))
    assert f"'{provider}-fail-{status}'" in message  # the public model, named for the client
    if status == 429:
        assert headers.get("retry-after") == hostile_wire.RETRY_AFTER


def _stream_error(route: str, text: str) -> dict:
    """The error frame at the end of a stream, in the client's dialect."""
    if route == "openai":
        frames = [f[len("data: "):] for f in text.split("\n\n") if f.startswith("data: {")]
        errors = [json.loads(f) for f in frames if '"error"' in f]
        assert errors, text
        return errors[0]
    if route == "anthropic":
        frames = [f for f in text.split("\n\n") if f.startswith("event: error")]
        assert frames, text
        return json.loads(frames[0].split("data: ", 1)[1])
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line]
    assert errors, text
    return errors[0]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("route", ROUTES)
async def test_error_inside_a_stream_is_replaced_by_our_own(gateway, hostile, route, provider):
    got, text, _ = await _call(gateway, route, f"{provider}-midstream", True)
    _assert_no_leak(text, hostile.port)
    assert got == 200
    message = _assert_error_shape(route, _stream_error(route, text))
    assert f"'{provider}-midstream'" in message


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("mode", ["redirect", "error-200"])
@pytest.mark.parametrize("route", ["openai", "anthropic", "ollama"])
async def test_odd_status_error_body_is_not_relayed_on_the_pass_through(gateway, hostile, route, mode, stream):
    """Same dialect on both sides, where the body would be relayed as it came: an error body
    with a 3xx or even a 200 status is an upstream error too."""
    got, text, _ = await _call(gateway, route, f"{route}-{mode}", stream)
    _assert_no_leak(text, hostile.port)
    assert got == 502
    assert f"'{route}-{mode}'" in _assert_error_shape(route, json.loads(text))


@pytest.mark.parametrize("route", ROUTES)
async def test_allow_listed_error_type_is_named(gateway, route):
    """The upstream's type, when its dialect documents it, is kept (anything else is dropped)."""
    _, text, _ = await _call(gateway, route, "openai-fail-429", False)
    assert "rate_limit_error" in text
    _, text, _ = await _call(gateway, route, "bedrock-fail-400", False)
    assert "ValidationException" in text
    _, text, _ = await _call(gateway, route, "gemini-fail-401", False)
    assert "UNAUTHENTICATED" in text and hostile_wire.INTERNAL_HOST not in text


def test_operator_log_has_the_upstream_text_scrubbed(gateway, hostile):
    """Runs after the requests above (same module gateway): the log names the failures but holds
    no credential, no upstream URL or host, no trace."""
    logs = gateway.logs()
    assert "upstream (openai) error for model openai-fail-400" in logs
    _assert_no_leak(logs, hostile.port)
