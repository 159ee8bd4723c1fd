"""Replies relayed untranslated carry the public model name, never the deployment's upstream id,
and browsers may read the rate-limit and usage headers (issue 13, "Also").

A real gateway over the OpenAI-wire test upstream, which echoes the model it was sent in every
body and chunk (with Python's spaced JSON separators); the gateway relays them byte for byte.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import pytest

from tests.conftest import ADMIN_KEY, ALICE_KEY
from tests.provider_fixtures import ollama_upstream  # noqa: F401 - a fixture
from tests.support import Gatehouse
from tests.upstreams import anthropic_wire, openai_wire
from tests.upstreams.harness import ServerThread

UPSTREAM_ID = "Qwen/Qwen3-Coder-32B-Instruct"
CLAUDE_ID = "claude-internal-deployment-20261201"


@pytest.fixture(scope="module")
def gh(openai_upstream: ServerThread, anthropic_upstream: ServerThread,
       ollama_upstream: ServerThread,  # noqa: F811 - the fixture imported above
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    cfg = {
        "admin": {"key": ADMIN_KEY},
        "providers": {"up": {"type": "openai", "base_url": f"{openai_upstream.url}/v1",
                             "api_key": openai_wire.API_KEY},
                      "anth": {"type": "anthropic", "base_url": anthropic_upstream.url,
                               "api_key": anthropic_wire.API_KEY},
                      "oll": {"type": "ollama", "base_url": ollama_upstream.url}},
        "models": [{"name": "coder", "deployments": [{"provider": "up", "model": UPSTREAM_ID}]},
                   {"name": "up-chat", "deployments": [{"provider": "up", "model": "up-chat"}]},
                   {"name": "sonnet", "deployments": [{"provider": "anth", "model": CLAUDE_ID}]},
                   {"name": "local", "deployments": [{"provider": "oll", "model": "qwen3:0.6b"}]}],
        "groups": {"dev": {"models": ["*"], "requests_per_minute": 1000, "tokens_per_minute": 1000000}},
        "consumers": {"alice": {"group": "dev", "keys": [ALICE_KEY]}},
    }
    gateway = Gatehouse(cfg, tmp_path_factory.mktemp("gh-public-model")).start()
    yield gateway
    gateway.stop()


async def _chat(gh: Gatehouse, body: dict, headers: dict | None = None) -> tuple[int, bytes, dict[str, str]]:
    hdrs = {"Authorization": f"Bearer {ALICE_KEY}", **(headers or {})}
    async with aiohttp.ClientSession() as s, s.post(gh.url + "/v1/chat/completions", json=body, headers=hdrs) as r:
        return r.status, await r.read(), dict(r.headers)


def _body(model: str, prompt: str = "one two three four five", **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


async def test_unary_reply_names_the_public_model(gh, openai_upstream):
    status, raw, _ = await _chat(gh, _body("coder"))
    assert status == 200
    assert openai_upstream.recorder.last.json()["model"] == UPSTREAM_ID  # the upstream got its own id
    assert json.loads(raw)["model"] == "coder" and UPSTREAM_ID.encode() not in raw


@pytest.mark.parametrize("options", [{}, {"stream_options": {"include_usage": True}}], ids=["plain", "usage"])
async def test_stream_chunks_name_the_public_model(gh, options):
    status, raw, _ = await _chat(gh, _body("coder", stream=True, **options))
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    chunks = [json.loads(f[6:]) for f in raw.decode().split("\n\n") if f.startswith("data: {")]
    assert len(chunks) > 3 and {c["model"] for c in chunks} == {"coder"}
    assert UPSTREAM_ID.encode() not in raw
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == \
        "echo: one two three four five"


async def test_same_name_is_relayed_unchanged(gh):
    status, raw, _ = await _chat(gh, _body("up-chat", stream=True))
    assert status == 200 and b'"model": "up-chat"' in raw


async def test_browser_can_read_rate_limit_and_usage_headers(gh):
    status, _, headers = await _chat(gh, _body("coder"), {"Origin": "http://webui.test"})
    assert status == 200
    exposed = {h.strip().lower() for h in headers["Access-Control-Expose-Headers"].split(",")}
    sent = {h.lower() for h in headers if h.lower().startswith(("x-ratelimit-", "x-gatehouse-", "x-request-id"))}
    assert {"x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens", "x-gatehouse-tokens-output"} <= sent
    assert sent <= exposed, sent - exposed
    assert "retry-after" in exposed


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_anthropic_pass_through_names_the_public_model(gh, anthropic_upstream, stream):
    body = {"model": "sonnet", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    hdrs = {"Authorization": f"Bearer {ALICE_KEY}"}
    async with aiohttp.ClientSession() as s, s.post(gh.url + "/v1/messages", json=body, headers=hdrs) as r:
        status, raw = r.status, await r.read()
    assert status == 200 and anthropic_upstream.recorder.last.json()["model"] == CLAUDE_ID
    assert CLAUDE_ID.encode() not in raw and b'"sonnet"' in raw


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
async def test_ollama_pass_through_names_the_public_model(gh, stream):
    body = {"model": "local", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    hdrs = {"Authorization": f"Bearer {ALICE_KEY}"}
    async with aiohttp.ClientSession() as s, s.post(gh.url + "/api/chat", json=body, headers=hdrs) as r:
        status, raw = r.status, await r.read()
    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert status == 200 and lines and {line["model"] for line in lines} == {"local"}, raw
