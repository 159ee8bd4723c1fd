"""Gatehouse in front of a real inference server: llama.cpp's `llama-server` (tests/engine/llama.py)
serving a tiny generated model on the CPU, over real sockets, with the official SDKs as clients.

What a test upstream can only imitate is checked against the engine itself: load-aware routing
reads the engine's real `/metrics` while its single slot is held by long streams and its queue
fills; the engine's real context-overflow 400 (`exceed_context_size_error`) sends the request to
the model's `context_window_fallbacks` without its text reaching the client; a Claude-Code-shaped
Anthropic stream is translated to the engine's Chat Completions stream and back, with the
engine's usage in the ledger. Skipped, with the reason, where the engine cannot run
(tests/engine/conftest.py).
"""
from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import BOB_KEY, base_config
from tests.e2e.test_claude_code_requests import BETAS, HEADERS, claude_code_body
from tests.engine.llama import LlamaServer
from tests.routing.test_strategies_live import deployments
from tests.support import ledger_rows

pytestmark = pytest.mark.engine


def engine_config(*replicas: tuple[str, LlamaServer], name: str = "tiny", **model: Any) -> dict[str, Any]:
    """base_config plus model `name` with one deployment per (provider name, llama-server)."""
    cfg = base_config("http://127.0.0.1:9")
    for prov, srv in replicas:
        cfg["providers"][prov] = {"type": "openai", "base_url": f"{srv.url}/v1"}
    cfg["models"].append({"name": name, "deployments": [{"provider": p, "model": "tiny"} for p, _ in replicas],
                          **model})
    return cfg


def add_model(cfg: dict[str, Any], name: str, prov: str, srv: LlamaServer) -> None:
    cfg["providers"][prov] = {"type": "openai", "base_url": f"{srv.url}/v1"}
    cfg["models"].append({"name": name, "deployments": [{"provider": prov, "model": "tiny"}]})


async def wait_for(check: Any, timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def hold_slot(session: aiohttp.ClientSession, srv: LlamaServer) -> None:
    """A long stream straight to the engine (not through the gateway): it holds a slot, or waits
    in the engine's queue, until cancelled (the engine frees the slot when the client goes)."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": "a long answer"}], "max_tokens": 4000,
            "stream": True}
    async with session.post(srv.url + "/v1/chat/completions", json=body) as r:
        async for _ in r.content.iter_any():
            pass


async def engine_of(gh_url: str, model: str, provider: str) -> dict[str, Any] | None:
    [entry] = [m for m in (await deployments(gh_url))["models"] if m["name"] == model]
    [dep] = [d for d in entry["deployments"] if d["provider"] == provider]
    return dep.get("engine")


async def test_load_aware_reads_the_engines_metrics_and_routes_around_a_saturated_replica(
        start_gatehouse, start_llama):
    busy, idle = start_llama(2, slots=1)  # one slot each: a second stream waits in the engine's queue
    gh = start_gatehouse(engine_config(("busy", busy), ("idle", idle),
                                       routing={"strategy": "load-aware", "scrape_interval_seconds": 0.5}))
    client = openai.AsyncOpenAI(base_url=gh.url + "/v1", api_key=BOB_KEY, max_retries=0)
    async with client:
        await _load_aware(gh, client, busy, idle)


async def _load_aware(gh: Any, client: openai.AsyncOpenAI, busy: LlamaServer, idle: LlamaServer) -> None:
    # the engine's own answer, unchanged through the gateway (temperature 0 is deterministic)
    direct = busy.chat("hello", max_tokens=12, temperature=0)
    via = await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                               max_tokens=12, temperature=0)
    assert via.choices[0].message.content == direct["choices"][0]["message"]["content"]  # type: ignore[index]
    assert via.choices[0].finish_reason == "length" and via.usage is not None and via.usage.completion_tokens == 12
    assert via.model == "tiny"

    # idle engines: the scraped numbers are in GET /admin/deployments
    idle_seen = await wait_for(lambda: engine_of(gh.url, "tiny", "busy"), what="a first scrape")
    assert (idle_seen["waiting"], idle_seen["running"], idle_seen["saturated"]) == (0.0, 0.0, False)

    async with aiohttp.ClientSession() as direct_session:
        holders = [asyncio.create_task(hold_slot(direct_session, busy)) for _ in range(3)]
        try:
            # one stream in busy's only slot, two deferred: the engine says so on /metrics ...
            await wait_for(lambda: asyncio.to_thread(
                lambda: busy.metrics().get("llamacpp:requests_deferred") == 2.0), timeout=20, what="two deferred requests")
            assert busy.metrics()["llamacpp:requests_processing"] == 1.0
            # ... and the gateway scraped it
            async def scraped_busy() -> dict[str, Any] | None:
                eng = await engine_of(gh.url, "tiny", "busy")
                return eng if eng and eng["waiting"] == 2.0 else None
            eng = await wait_for(scraped_busy, timeout=20, what="the scraped queue")
            assert eng["running"] == 1.0 and eng["saturated"] is False and eng["age_seconds"] < 1.5
            before = len(ledger_rows(gh.home, 1))
            for i in range(6):
                r = await client.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=8)
                assert r.choices[0].finish_reason == "length"
            rows = ledger_rows(gh.home, before + 6)[before:]
            served = [r["provider"] for r in rows]
            assert served.count("idle") > served.count("busy"), served
            assert served == ["idle"] * 6, served  # score: busy 2 × 2 queued, idle 0
        finally:
            for t in holders:
                t.cancel()
            await asyncio.gather(*holders, return_exceptions=True)

    # the streams gone, the engine drains; once scraped, the tie goes to the first deployment again
    async def drained() -> bool:
        eng = await engine_of(gh.url, "tiny", "busy")
        return bool(eng and eng["waiting"] == 0.0 and eng["running"] == 0.0)
    await wait_for(drained, timeout=20, what="the drained engine scraped")
    await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "again"}], max_tokens=4)
    assert ledger_rows(gh.home, before + 7)[-1]["provider"] == "busy"


LONG_PROMPT = "the gateway forwards the request to the inference server " * 40  # ~700 tokens of the tiny model


async def test_the_engines_context_overflow_goes_to_the_context_window_fallback(start_gatehouse, start_llama):
    small, big = start_llama(1, slots=1, ctx=256)[0], start_llama(1, slots=1, ctx=4096)[0]
    overflow = small.chat(LONG_PROMPT)  # the engine's own answer
    assert overflow["status"] == 400 and overflow["error"]["type"] == "exceed_context_size_error"  # type: ignore[index]
    # the model card says 4096, but this engine gives each request 256 (llama.cpp splits -c between its
    # slots): the gateway's estimate fits, the engine refuses, and only its error tells
    cfg = engine_config(("small", small), name="tiny-small", context_window=4096, context_window_fallbacks=["tiny-big"])
    add_model(cfg, "tiny-big", "big", big)
    cfg["models"].append({"name": "plain-small", "deployments": [{"provider": "small", "model": "tiny"}]})
    gh = start_gatehouse(cfg)
    async with openai.AsyncOpenAI(base_url=gh.url + "/v1", api_key=BOB_KEY, max_retries=0) as client:
        await _overflow(gh, client)


async def _overflow(gh: Any, client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": LONG_PROMPT}]
    raw = await client.chat.completions.with_raw_response.create(model="tiny-small", messages=messages, max_tokens=8)
    assert raw.headers["x-gatehouse-route"] == "model=tiny-big; reason=context_window_fallback"
    answer = raw.parse()
    assert answer.model == "tiny-big" and answer.usage is not None and answer.usage.prompt_tokens > 256
    # streamed too: the overflow is a 400 before any byte, so the fallback still can serve it
    stream = await client.chat.completions.with_raw_response.create(
        model="tiny-small", messages=messages, max_tokens=8, stream=True)
    assert stream.headers["x-gatehouse-route"] == "model=tiny-big; reason=context_window_fallback"
    text = "".join([c.choices[0].delta.content or "" async for c in stream.parse() if c.choices])
    assert text
    rows = ledger_rows(gh.home, 4)
    assert [(r["provider"], r["status"], r["error_type"], r["route"]) for r in rows] == [
        ("small", 400, "context_length_exceeded", "primary"), ("big", 200, None, "context_window_fallback")] * 2
    # a model without a fallback: the client's 400 carries none of the engine's text
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="plain-small", messages=messages, max_tokens=8)
    assert err.value.code == "context_length_exceeded"
    body = str(err.value.body) + err.value.response.text
    for leak in ("exceed_context_size_error", "available context size", "n_ctx", "n_prompt_tokens", "127.0.0.1"):
        assert leak not in body, leak


async def test_a_claude_code_stream_is_translated_to_the_engine_and_metered(start_gatehouse, start_llama):
    [srv] = start_llama(1, slots=1, ctx=8192)  # Claude Code's 25 tool schemas: ~5500 tokens
    gh = start_gatehouse(engine_config(("llama", srv), name="qwen-local"))
    body = claude_code_body("Summarise the repository.")
    body.update(model="qwen-local", max_tokens=16)
    client = anthropic.AsyncAnthropic(base_url=gh.url, auth_token=BOB_KEY, api_key=None, max_retries=0,
                                      default_headers=HEADERS)
    async with client:
        kinds, final = await claude_code_turn(client, body)
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds
        # the tiny model never stops by itself: the answer runs to max_tokens, as a text block
        assert final.stop_reason == "max_tokens" and final.content[0].type == "text" and final.content[0].text
        assert final.usage.output_tokens == 16 and final.usage.input_tokens > 1000
        assert not final.usage.cache_read_input_tokens  # a fresh slot: nothing to reuse
        # the same prefix again: the engine reuses its slot's KV cache, and says so in its usage,
        # which the translation turns into Anthropic's cache_read_input_tokens
        _, again = await claude_code_turn(client, body)
    assert again.usage.cache_read_input_tokens and again.usage.cache_read_input_tokens > 1000
    rows = ledger_rows(gh.home, 2)
    assert [(r["model"], r["provider"], r["status"], r["streamed"], r["surface"]) for r in rows] == [
        ("qwen-local", "llama", 200, 1, "messages")] * 2
    assert [r["output_tokens"] for r in rows] == [16, 16]
    assert (rows[0]["input_tokens"], rows[0]["cached_tokens"]) == (final.usage.input_tokens, 0)
    # the ledger keeps the whole prompt and the reused part: 1 + 5466 of 5467 on the second turn
    assert rows[1]["cached_tokens"] == again.usage.cache_read_input_tokens
    assert rows[1]["input_tokens"] == again.usage.input_tokens + again.usage.cache_read_input_tokens
    # and the reuse is real: the engine skips the prompt it already holds (~300 ms -> ~20 ms here)
    assert rows[1]["ttft_ms"] < rows[0]["ttft_ms"]


async def claude_code_turn(client: anthropic.AsyncAnthropic, body: dict[str, Any]) -> tuple[list[str], Any]:
    kinds: list[str] = []
    async with client.beta.messages.stream(**copy.deepcopy(body), betas=BETAS) as stream:
        async for event in stream:
            kinds.append(event.type)
        return kinds, await stream.get_final_message()
