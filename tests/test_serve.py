"""`gatehouse serve` as `make run` starts it: embedded default, first-start key, Ollama
detection, CORS, readiness and graceful shutdown."""
from __future__ import annotations

import hashlib
import re
import signal
import threading
import time

import httpx
import openai
import pytest
from aiohttp import web

from tests.conftest import ALICE_KEY, base_config
from tests.upstreams.harness import ServerThread


def _ollama_tags_app(recorder) -> web.Application:
    async def tags(request):
        return web.json_response({"models": [{"name": "qwen3-coder:32b", "model": "qwen3-coder:32b"},
                                             {"name": "llama3.2:1b", "model": "llama3.2:1b"}]})

    app = web.Application()
    app.router.add_get("/api/tags", tags)
    return app


@pytest.mark.process
def test_embedded_default_first_start_prints_key_once_and_detects_ollama(start_gatehouse_process, tmp_path):
    home = tmp_path / "home"
    with ServerThread(_ollama_tags_app) as ollama:
        gh = start_gatehouse_process(None, env={"GATEHOUSE_OLLAMA_URL": ollama.url}, home=home)
        out = gh.output()
        key = re.search(r"^\s+(gh-\S+)$", out, re.M).group(1)
        assert f"export OPENAI_BASE_URL={gh.url}/v1 OPENAI_API_KEY={key}" in out
        assert "curl" in out
        # The laptop default is open, and says so where its key is printed and on every start.
        assert "consumer 'local' in group 'open': every model, no limits" in out
        assert "group 'open': every model, no limits" in gh.logs()
        client = openai.OpenAI(base_url=gh.url + "/v1", api_key=key, max_retries=0)
        assert {m.id for m in client.models.list()} == {"echo", "qwen3-coder:32b", "llama3.2:1b"}
        reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "echo: hi"
        gh.stop()
    assert (home / "gatehouse.db").exists()
    assert key not in (home / "gatehouse.db").read_bytes().decode(errors="replace")
    # Second start: no new key is printed, the old one still works.
    gh2 = start_gatehouse_process(None, home=home)
    assert "gh-" not in gh2.output().replace(out, "")
    assert openai.OpenAI(base_url=gh2.url + "/v1", api_key=key).models.list().data


def test_cors_preflight_and_headers(gatehouse):
    r = httpx.options(gatehouse.url + "/v1/chat/completions", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"}, timeout=5)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    r = httpx.get(gatehouse.url + "/v1/models", headers={"Origin": "http://x", "Authorization": f"Bearer {ALICE_KEY}"},
                     timeout=5)
    assert r.headers["access-control-allow-origin"] == "*"
    assert "x-request-id" in r.headers["access-control-expose-headers"]


def test_cors_restricted_origins(start_gatehouse, openai_upstream):
    cfg = base_config(openai_upstream.url, server={"cors_origins": ["https://webui.internal"]})
    gh = start_gatehouse(cfg)
    ok = httpx.get(gh.url + "/healthz", headers={"Origin": "https://webui.internal"}, timeout=5)
    assert ok.headers.get("access-control-allow-origin") == "https://webui.internal"
    other = httpx.get(gh.url + "/healthz", headers={"Origin": "https://evil.example"}, timeout=5)
    assert "access-control-allow-origin" not in other.headers
    assert ok.headers["vary"] == "Origin"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    good = httpx.options(gh.url + "/v1/chat/completions", headers={"Origin": "https://webui.internal", **preflight},
                         timeout=5)
    assert good.status_code == 200 and good.headers["access-control-allow-origin"] == "https://webui.internal"
    assert good.headers["access-control-allow-headers"] == "authorization"
    bad = httpx.options(gh.url + "/v1/chat/completions", headers={"Origin": "https://evil.example", **preflight},
                        timeout=5)
    assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers


def test_health_and_readiness(gatehouse):
    assert httpx.get(gatehouse.url + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(gatehouse.url + "/readyz", timeout=5)
    sha = hashlib.sha256(gatehouse.config_path.read_bytes()).hexdigest()[:12]  # which config is live
    assert ready.status_code == 200 and ready.json()["checks"] == {"config": "loaded", "store": "ok", "journal": "ok",
                                                                   "ledger_backlog": 0, "ledger_in_memory": 0,
                                                                   "config_generation": 1, "config_sha256": sha}


@pytest.mark.process
def test_graceful_shutdown_finishes_streams_and_refuses_new_requests(start_gatehouse_process, openai_upstream):
    cfg = base_config(openai_upstream.url, server={"drain_seconds": 1.5, "shutdown_grace_seconds": 10})
    gh = start_gatehouse_process(cfg)
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    result: dict = {}

    def slow_stream() -> None:
        stream = client.chat.completions.create(model="chat", stream=True,
                                                messages=[{"role": "user", "content": "SLOW finish me"}])
        result["text"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    t = threading.Thread(target=slow_stream)
    t.start()
    time.sleep(0.5)  # the stream is in flight, waiting on the slow upstream
    gh.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    r = httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {ALICE_KEY}"},
                      json={"model": "chat", "messages": [{"role": "user", "content": "new"}]}, timeout=5)
    assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
    assert httpx.get(gh.url + "/readyz", timeout=5).status_code == 503
    t.join(15)
    assert result.get("text") == "echo: SLOW finish me"
    assert gh.proc.wait(15) == 0, "a graceful shutdown exits 0 (uvicorn would re-raise the SIGTERM: 143)"
