"""An upstream's context-length error sends the request to the model's `context_window_fallbacks`,
through a real gatehouse over real sockets: OpenAI's/vLLM's "maximum context length", Anthropic's
"prompt is too long" are classified in one place (upstream/error_text.py), the fallback is
re-checked against the caller's access, the reason is in `x-gatehouse-route` and the ledger, and
the upstream's own text never reaches the client."""
from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from gatehouse.errors import UpstreamContextLength
from gatehouse.upstream.error_text import context_length
from gatehouse.wire import errors_anthropic, errors_bedrock, errors_ollama, errors_openai
from tests.conftest import ALICE_KEY, BOB_KEY
from tests.routing.test_route_ledger_live import ledger_rows
from tests.routing.test_strategies_live import chat, with_model
from tests.upstreams.fleet import Replica, fleet

VLLM = {"object": "error", "type": "BadRequestError", "code": 400, "param": None,
        "message": "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens "
                   "(8000 in the messages, 1000 in the completion). Please reduce the length of the messages."}
OPENAI = {"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages "
                               "resulted in 130000 tokens.", "type": "invalid_request_error",
                    "param": "messages", "code": "context_length_exceeded"}}
ANTHROPIC = {"type": "error", "error": {"type": "invalid_request_error",
                                        "message": "prompt is too long: 210000 tokens > 200000 maximum"}}
LLAMACPP = {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                      "type": "exceed_context_size_error", "n_prompt_tokens": 9000, "n_ctx": 4096}}
OLLAMA = {"error": "the input length exceeds the context length"}


def test_each_servers_context_length_error_is_classified_in_one_place():
    import json

    def raw(body: dict) -> bytes:
        return json.dumps(body).encode()

    for parse, body in ((errors_openai.error_from_response, VLLM), (errors_openai.error_from_response, OPENAI),
                        (errors_openai.error_from_response, LLAMACPP),
                        (errors_anthropic.error_from_response, ANTHROPIC),
                        (errors_ollama.error_from_response, OLLAMA)):
        err = parse(400, raw(body), None, "chat")
        assert isinstance(err, UpstreamContextLength) and err.status == 400, body
        assert err.code == "context_length_exceeded"
        assert "tokens" not in err.message and "context size" not in err.message  # no upstream text
    err = errors_bedrock.bedrock_error(400, "ValidationException", "Input is too long for requested model.",
                                       "chat", "bedrock:InvokeModel")
    assert isinstance(err, UpstreamContextLength)
    # not a context-length error: another 400, or the same words with a 5xx
    assert not isinstance(errors_openai.error_from_response(
        400, b'{"error": {"message": "max_tokens must be at most 4096"}}', None, "chat"), UpstreamContextLength)
    assert not context_length(500, raw(VLLM)) and context_length(422, raw(VLLM))
    assert not isinstance(errors_bedrock.bedrock_error(400, "ValidationException", "Malformed input request",
                                                       "chat", "x"), UpstreamContextLength)


@pytest.mark.parametrize("body", [VLLM, OPENAI], ids=["vllm", "openai"])
async def test_a_context_length_error_goes_to_the_context_window_fallback(start_gatehouse, body):
    with fleet(Replica("small", fail=400), Replica("big")) as (small, big):
        small.error_body = body
        cfg = with_model([("small", small.url)], name="chat-small", context_window=100000, context_window_fallbacks=["chat-big"])
        cfg["providers"]["big"] = {"type": "openai", "base_url": f"{big.url}/v1"}
        cfg["models"].append({"name": "chat-big", "deployments": [{"provider": "big", "model": "m"}]})
        gh = start_gatehouse(cfg)
        status, text, headers = await chat(gh.url, "chat-small")
        assert (status, text) == (200, "served by big")
        assert headers["x-gatehouse-route"] == "model=chat-big; reason=context_window_fallback"
        status, text, headers = await chat(gh.url, "chat-small", stream=True)
        assert status == 200 and "served by big" in text
        assert headers["x-gatehouse-route"] == "model=chat-big; reason=context_window_fallback"
        rows = ledger_rows(gh.home, 4)
        assert [(r["provider"], r["status"], r["error_type"], r["route"]) for r in rows] == [
            ("small", 400, "context_length_exceeded", "primary"), ("big", 200, None, "context_window_fallback")] * 2
        assert small.count == 2 and big.count == 2


async def test_without_a_usable_fallback_the_client_gets_a_400_without_the_upstreams_text(start_gatehouse):
    with fleet(Replica("small", fail=400), Replica("big")) as (small, big):
        small.error_body = VLLM
        cfg = with_model([("small", small.url)], name="chat-small", context_window=100000, context_window_fallbacks=["chat-big"])
        cfg["providers"]["big"] = {"type": "openai", "base_url": f"{big.url}/v1"}
        cfg["models"].append({"name": "chat-big", "deployments": [{"provider": "big", "model": "m"}]})
        cfg["models"].append({"name": "plain", "deployments": [{"provider": "small", "model": "m"}]})
        cfg["groups"]["dev"]["models"] = ["chat-small", "plain"]  # alice may not use chat-big
        gh = start_gatehouse(cfg)
        for model in ("chat-small", "plain"):
            status, text, headers = await chat(gh.url, model, key=ALICE_KEY)
            assert status == 400 and "x-gatehouse-route" not in headers
            assert '"code":"context_length_exceeded"' in text.replace(" ", "")
            assert "4096" not in text and "reduce the length" not in text
        assert big.count == 0


async def test_anthropics_prompt_is_too_long_goes_to_the_fallback(start_gatehouse):
    async def messages(request: web.Request) -> web.Response:
        return web.json_response(ANTHROPIC, status=400)

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with fleet(Replica("big")) as (big,):
            cfg = with_model([("big", big.url)], name="chat-big")
            cfg["providers"]["claude"] = {"type": "anthropic", "base_url": f"http://127.0.0.1:{port}", "api_key": "k"}
            cfg["models"].append({"name": "claude", "deployments": [{"provider": "claude", "model": "claude-x"}],
                                  "context_window": 100000, "context_window_fallbacks": ["chat-big"]})
            gh = start_gatehouse(cfg)
            async with aiohttp.ClientSession() as s, s.post(
                    gh.url + "/v1/messages", headers={"x-api-key": BOB_KEY, "anthropic-version": "2023-06-01"},
                    json={"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}) as r:
                body = await r.json()
                assert r.status == 200, body
                assert r.headers["x-gatehouse-route"] == "model=chat-big; reason=context_window_fallback"
                assert body["content"][0]["text"] == "served by big"
    finally:
        await runner.cleanup()
