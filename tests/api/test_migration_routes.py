"""Routes teams migrating from other gateways call (docs/migration.md), each over a real
socket the way the peer's own docs show it: Kong AI Gateway (`/ai/chat`, `apikey`), a FastAPI
gateway (`POST /chat`, `X-API-Key`, `/health`, `/providers`, `/config`) and Ollama (`/api/ps`,
`/api/pull`, curl examples without a JSON content type)."""
from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import ollama
import pytest

from gatehouse.api.migration import REDACTED, redact
from tests.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY, base_config
from tests.upstreams import openai_wire

SERVER_SECRET = "hmac-secret-never-shown"
METRICS_TOKEN = "metrics-token-never-shown"
HEADER_SECRET = "Bearer header-secret-never-shown"


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    from tests.support import Gatehouse

    cfg = base_config(openai_upstream.url, server={"max_body_bytes": 65536, "secret": SERVER_SECRET},
                      metrics={"token": METRICS_TOKEN})
    cfg["providers"]["up"]["headers"] = {"X-Upstream-Auth": HEADER_SECRET}
    g = Gatehouse(cfg, tmp_path_factory.mktemp("gh-migration")).start()
    yield g
    g.stop()


def curl(*args: str) -> tuple[int, str, dict[str, str]]:
    """curl -s with the status and headers; returns (status, body, headers)."""
    out = subprocess.run(["curl", "-sS", "-i", *args], capture_output=True, timeout=20, check=True).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), body, headers


# ---- Kong AI Gateway --------------------------------------------------------------------


def test_kong_ai_routes_with_the_kong_key_auth_header(gh):
    # Kong's ai-proxy docs: curl -X POST $ROUTE -H 'Content-Type: application/json' --data '{"messages": ...}';
    # key-auth sends the key in `apikey`.
    body = {"model": "echo", "messages": [{"role": "user", "content": "via kong"}]}
    status, text, _ = curl("-X", "POST", gh.url + "/ai/chat", "-H", "Content-Type: application/json",
                           "-H", f"apikey: {ALICE_KEY}", "--data", json.dumps(body))
    assert status == 200 and json.loads(text)["choices"][0]["message"]["content"] == "echo: via kong"
    r = httpx.post(gh.url + "/ai/chat", json={**body, "stream": True}, headers={"apikey": ALICE_KEY}, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.rstrip().endswith("data: [DONE]")
    r = httpx.post(gh.url + "/ai/completions", json={"model": "chat", "prompt": "say hello"},
                   headers={"apikey": ALICE_KEY}, timeout=10)
    assert r.status_code == 200 and r.json()["object"] == "text_completion"
    r = httpx.post(gh.url + "/ai/chat", json=body, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


# ---- a FastAPI gateway ----------------------------------------------------------------------


def test_simple_chat_with_x_api_key(gh):
    status, text, headers = curl(gh.url + "/chat", "-H", f"X-API-Key: {ALICE_KEY}", "-H",
                                 "Content-Type: application/json", "-d", '{"prompt": "hello there", "model": "echo"}')
    assert status == 200, text
    got = json.loads(text)
    assert got["response"] == "echo: hello there" and got["model"] == "echo" and got["finish_reason"] == "stop"
    assert got["id"] == headers["x-request-id"]
    assert set(got["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert headers["x-gatehouse-tokens-output"] == str(got["usage"]["completion_tokens"])  # metered
    # Translated to any backend: the OpenAI-wire upstream, with a system prompt and limits.
    r = httpx.post(gh.url + "/chat", headers={"X-API-Key": ALICE_KEY}, timeout=10,
                   json={"prompt": "over the upstream", "model": "chat", "system": "be brief", "max_tokens": 50})
    assert r.status_code == 200 and r.json()["response"] == "echo: over the upstream"


@pytest.mark.parametrize("body,status,param", [
    ({"prompt": "x"}, 400, "model"),
    ({"model": "echo"}, 400, "prompt"),
    ({"prompt": "", "model": "echo"}, 400, "prompt"),
    ({"prompt": "x", "model": "echo", "api_base": "http://evil"}, 400, None),
    ({"prompt": "x", "model": "echo", "temperature": 9}, 400, "temperature"),
    ({"prompt": "x", "model": "nope"}, 404, "model"),
    ({"prompt": "x", "model": "restricted"}, 403, "model"),
])
def test_simple_chat_errors_are_openai_shaped(gh, body: dict[str, Any], status: int, param: str | None):
    r = httpx.post(gh.url + "/chat", headers={"X-API-Key": ALICE_KEY}, json=body, timeout=10)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and (param is None or err["param"] == param)
    assert "Traceback" not in r.text and "evil" not in r.text


def test_health_providers_and_config(gh):
    assert httpx.get(gh.url + "/health", timeout=5).json() == {"status": "ok"}
    for path in ("/providers", "/config"):
        assert httpx.get(gh.url + path, timeout=5).status_code == 401
        assert httpx.get(gh.url + path, headers={"X-API-Key": BOB_KEY}, timeout=5).status_code == 401  # consumers: no
    r = httpx.get(gh.url + "/providers", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5)
    assert r.status_code == 200
    assert sorted(r.json()["data"], key=lambda p: p["name"]) == [
        {"name": "echo", "type": "echo", "models": ["echo"]},
        {"name": "up", "type": "openai", "models": ["chat", "embed", "restricted"]}]
    assert "127.0.0.1" not in r.text and openai_wire.API_KEY not in r.text

    r = httpx.get(gh.url + "/config", headers={"X-API-Key": ADMIN_KEY}, timeout=5)
    assert r.status_code == 200
    cfg = r.json()
    assert cfg["server"]["header_timeout"] == 10.0 and cfg["server"]["secret"] == REDACTED  # defaults shown too
    assert cfg["admin"]["key"] == REDACTED and cfg["metrics"]["token"] == REDACTED
    assert cfg["providers"]["up"]["api_key"] == REDACTED
    assert cfg["providers"]["up"]["headers"] == {"X-Upstream-Auth": REDACTED}
    assert cfg["consumers"]["alice"]["keys"] == [REDACTED]
    assert [m["name"] for m in cfg["models"]] == ["chat", "embed", "echo", "restricted"]
    for secret in (ADMIN_KEY, ALICE_KEY, BOB_KEY, openai_wire.API_KEY, SERVER_SECRET, METRICS_TOKEN, "header-secret"):
        assert secret not in r.text


def test_redact_covers_urls_and_every_secret_named_field():
    tree = {"store": {"url": "postgresql://gh:pg-pass@db:5432/gh", "redis_url": "redis://:redis-pass@redis:6379/0"},
            "server": {"tls": {"cert_file": "/tls/tls.crt", "key_file": "/tls/tls.key"}},
            "auth": {"jwt": {"consumer_claim": "sub", "group_claim": "groups"}},
            "providers": {"b": {"options": {"api_key": "k", "aws_secret_access_key": "s", "session_token": "t"}}}}
    out = json.dumps(redact(tree))
    for secret in ("pg-pass", "redis-pass", '"k"', '"s"', '"t"'):
        assert secret not in out
    assert "postgresql://gh:<redacted>@db:5432/gh" in out and "/tls/tls.key" in out and '"sub"' in out


# ---- Ollama -------------------------------------------------------------------------------


def test_ollama_ps_and_pull_with_the_official_client(gh):
    client = ollama.Client(host=gh.url, headers={"Authorization": f"Bearer {ALICE_KEY}"})
    assert sorted(m.model for m in client.ps().models) == ["chat", "echo", "embed"]  # what alice may use
    assert client.pull("echo").status == "success"  # already served: nothing to download
    assert [p.status for p in client.pull("echo", stream=True)] == ["success"]
    with pytest.raises(ollama.ResponseError) as err:
        client.pull("llama3.2")
    assert err.value.status_code == 404 and "does not pull models" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.pull("restricted")  # exists, but not for alice
    assert err.value.status_code == 403
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=gh.url).ps()
    assert err.value.status_code == 401


def test_ollama_curl_examples_without_a_json_content_type(gh):
    # Ollama's docs: curl http://localhost:11434/api/generate -d '{...}' (curl then says
    # application/x-www-form-urlencoded); only the key header is added.
    auth = ("-H", f"Authorization: Bearer {ALICE_KEY}")
    status, text, _ = curl(gh.url + "/api/generate", *auth, "-d", '{"model": "echo", "prompt": "Why is the sky blue?"}')
    assert status == 200, text
    lines = [json.loads(line) for line in text.splitlines() if line]
    assert "".join(x["response"] for x in lines) == "echo: Why is the sky blue?" and lines[-1]["done"] is True
    status, text, _ = curl(gh.url + "/api/chat", *auth, "-d", json.dumps(
        {"model": "chat", "stream": False, "messages": [{"role": "user", "content": "why is the sky blue?"}]}))
    assert status == 200 and json.loads(text)["message"]["content"] == "echo: why is the sky blue?"
    status, text, _ = curl(gh.url + "/api/pull", *auth, "-d", '{"model": "echo"}')
    assert status == 200 and json.loads(text.splitlines()[-1]) == {"status": "success"}
    status, text, _ = curl(gh.url + "/api/embed", *auth, "-d", '{"model": "embed", "input": "hi"}')
    assert status == 200 and len(json.loads(text)["embeddings"]) == 1
    # Not JSON at all is still a 400 in Ollama's shape, and the OpenAI routes keep their 415.
    status, text, _ = curl(gh.url + "/api/generate", *auth, "-d", "model=echo&prompt=hi")
    assert status == 400 and set(json.loads(text)) == {"error"}
    status, _, _ = curl(gh.url + "/v1/chat/completions", *auth, "-d", '{"model": "echo", "messages": []}')
    assert status == 415
