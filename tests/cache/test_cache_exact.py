"""The exact response cache over real sockets: a counting test upstream (the OpenAI-wire server's
recorder) and gatehouse served in process. What a client sees: one upstream call for repeated
temperature-0 requests, x-gatehouse-cache and Age headers, tenant separation, the safe-by-default
bypasses, only complete answers stored, TTL, ledger rows, DELETE /admin/cache."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cache.serving import CAROL_KEY, chat, config, post, serve, upstream_calls
from tests.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY
from tests.support import ledger_rows as ledger


@pytest.fixture
def gh(openai_upstream, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with serve(config(openai_upstream.url), tmp_path / "gh") as url:
        yield url, tmp_path / "gh"


def test_identical_requests_make_one_upstream_call(gh, recorder):
    url, home = gh
    s1, b1, h1 = post(url + "/v1/chat/completions", chat(), ALICE_KEY)
    s2, b2, h2 = post(url + "/v1/chat/completions", chat(), ALICE_KEY)
    assert (s1, s2) == (200, 200)
    assert h1["x-gatehouse-cache"] == "miss" and h2["x-gatehouse-cache"] == "hit"
    assert int(h2["age"]) >= 0 and "age" not in h1
    assert h2["x-gatehouse-cost-usd"] == "0" and h2["x-gatehouse-tokens-output"] == h1["x-gatehouse-tokens-output"]
    assert upstream_calls(recorder) == 1
    a, b = json.loads(b1), json.loads(b2)
    assert b["choices"][0]["message"]["content"] == a["choices"][0]["message"]["content"] == "echo: hello there"
    assert b["usage"] == a["usage"] and b["model"] == "chat"
    rows = ledger(home, 2)
    hit = [r for r in rows if r["cache_hit"]]
    assert len(rows) == 2 and len(hit) == 1
    assert hit[0]["cost_usd"] == 0 and hit[0]["attempt"] == 0 and hit[0]["provider"] == ""
    assert hit[0]["output_tokens"] == a["usage"]["completion_tokens"] and hit[0]["status"] == 200


def test_a_different_question_or_parameter_is_a_different_entry(gh, recorder):
    url, _ = gh
    post(url + "/v1/chat/completions", chat("one"), ALICE_KEY)
    post(url + "/v1/chat/completions", chat("two"), ALICE_KEY)
    post(url + "/v1/chat/completions", chat("one", max_tokens=3), ALICE_KEY)
    post(url + "/v1/chat/completions", chat("one", seed=7), ALICE_KEY)
    assert upstream_calls(recorder) == 4
    _, _, h = post(url + "/v1/chat/completions", chat("one", seed=7), ALICE_KEY)
    assert h["x-gatehouse-cache"] == "hit" and upstream_calls(recorder) == 4


def test_groups_never_share_an_entry_members_of_one_group_do(gh, recorder):
    url, _ = gh
    post(url + "/v1/chat/completions", chat("tenants"), ALICE_KEY)  # group dev
    _, _, h_bob = post(url + "/v1/chat/completions", chat("tenants"), BOB_KEY)  # group open
    _, _, h_carol = post(url + "/v1/chat/completions", chat("tenants"), CAROL_KEY)  # group dev
    assert h_bob["x-gatehouse-cache"] == "miss" and h_carol["x-gatehouse-cache"] == "hit"
    assert upstream_calls(recorder) == 2


def test_consumer_scope_keeps_each_consumer_apart(openai_upstream, recorder, tmp_path):
    with serve(config(openai_upstream.url, {"scope": "consumer"}), tmp_path / "gh") as url:
        post(url + "/v1/chat/completions", chat(), ALICE_KEY)
        _, _, h = post(url + "/v1/chat/completions", chat(), CAROL_KEY)
        assert h["x-gatehouse-cache"] == "miss"
        _, _, h = post(url + "/v1/chat/completions", chat(), ALICE_KEY)
        assert h["x-gatehouse-cache"] == "hit"
    assert upstream_calls(recorder) == 2


@pytest.mark.parametrize("extra", [{"temperature": 0.7}, {"temperature": None},
                                   {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}])
def test_sampled_and_tool_requests_bypass_by_default(gh, recorder, extra):
    url, _ = gh
    body = {k: v for k, v in {**chat(), **extra}.items() if v is not None}
    for _ in range(2):
        s, _, h = post(url + "/v1/chat/completions", body, ALICE_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "bypass"
    assert upstream_calls(recorder) == 2


def test_allowed_temperature_and_tools_are_cached(openai_upstream, recorder, tmp_path):
    cache = {"allow_temperature": True, "allow_tools": True}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with serve(config(openai_upstream.url, cache), tmp_path / "gh") as url:
        for body in (chat(temperature=0.7), chat(tools=tools)):
            post(url + "/v1/chat/completions", body, ALICE_KEY)
            _, _, h = post(url + "/v1/chat/completions", body, ALICE_KEY)
            assert h["x-gatehouse-cache"] == "hit"
    assert upstream_calls(recorder) == 2


def test_client_cache_control_and_the_opt_out_header(gh, recorder):
    url, _ = gh
    u = url + "/v1/chat/completions"
    _, _, h = post(u, chat("cc"), ALICE_KEY, {"cache-control": "no-store"})
    assert h["x-gatehouse-cache"] == "bypass"
    _, _, h = post(u, chat("cc"), ALICE_KEY)
    assert h["x-gatehouse-cache"] == "miss"  # no-store stored nothing
    _, _, h = post(u, chat("cc"), ALICE_KEY, {"cache-control": "no-cache"})
    assert h["x-gatehouse-cache"] == "bypass"  # asked upstream again (and refreshed the entry)
    _, _, h = post(u, chat("cc"), ALICE_KEY, {"x-gatehouse-cache": "off"})
    assert h["x-gatehouse-cache"] == "bypass"
    _, _, h = post(u, chat("cc"), ALICE_KEY)
    assert h["x-gatehouse-cache"] == "hit"
    assert upstream_calls(recorder) == 4


def test_errors_are_not_stored(gh, recorder):
    url, _ = gh
    for _ in range(2):
        s, _, h = post(url + "/v1/chat/completions", chat("FAIL500"), ALICE_KEY)
        assert s >= 500 and h.get("x-gatehouse-cache") == "miss"


def test_entries_expire_after_their_ttl(openai_upstream, recorder, tmp_path):
    with serve(config(openai_upstream.url, {"ttl_seconds": 0.3}), tmp_path / "gh") as url:
        post(url + "/v1/chat/completions", chat(), ALICE_KEY)
        _, _, h = post(url + "/v1/chat/completions", chat(), ALICE_KEY)
        assert h["x-gatehouse-cache"] == "hit"
        time.sleep(0.4)
        _, _, h = post(url + "/v1/chat/completions", chat(), ALICE_KEY)
        assert h["x-gatehouse-cache"] == "miss"
    assert upstream_calls(recorder) == 2


def test_a_model_without_cache_config_has_no_cache_header(gh, recorder):
    url, _ = gh
    body = {**chat(), "model": "echo"}
    _, _, h = post(url + "/v1/chat/completions", body, ALICE_KEY)
    assert "x-gatehouse-cache" not in h


def test_admin_clears_the_cache_by_model_or_group(gh, recorder):
    url, _ = gh
    u = url + "/v1/chat/completions"
    post(u, chat("x"), ALICE_KEY)
    post(u, chat("x"), BOB_KEY)
    s, _, _ = post(url + "/admin/cache", None, ALICE_KEY, method="DELETE")
    assert s in (401, 403)
    s, body, _ = post(url + "/admin/cache?group=open", None, ADMIN_KEY, method="DELETE")
    assert s == 200 and json.loads(body)["removed"] == 1
    assert post(u, chat("x"), ALICE_KEY)[2]["x-gatehouse-cache"] == "hit"
    assert post(u, chat("x"), BOB_KEY)[2]["x-gatehouse-cache"] == "miss"
    s, body, _ = post(url + "/admin/cache?model=chat", None, ADMIN_KEY, method="DELETE")
    assert s == 200 and json.loads(body)["removed"] == 2
    assert post(u, chat("x"), ALICE_KEY)[2]["x-gatehouse-cache"] == "miss"


def test_metrics_count_hits_misses_bypasses_and_bytes(gh, recorder):
    url, _ = gh
    u = url + "/v1/chat/completions"
    post(u, chat("m"), ALICE_KEY)
    post(u, chat("m"), ALICE_KEY)
    post(u, chat("m", temperature=1), ALICE_KEY)
    s, body, _ = post(url + "/metrics", None, ADMIN_KEY, method="GET")
    text = body.decode()
    assert 'gatehouse_cache_lookups_total{model="chat",result="hit"} 1.0' in text
    assert 'gatehouse_cache_lookups_total{model="chat",result="miss"} 1.0' in text
    assert 'gatehouse_cache_bypasses_total{model="chat",reason="temperature"} 1.0' in text
    held = [ln for ln in text.splitlines() if ln.startswith("gatehouse_cache_bytes ")]
    assert held and float(held[0].split()[1]) > 0


def test_ollama_clients_get_hits_as_ndjson_streams(gh, recorder):
    url, _ = gh
    body = {"model": "chat", "messages": [{"role": "user", "content": "from ollama"}],
            "options": {"temperature": 0}}
    s, first, h1 = post(url + "/api/chat", {**body, "stream": False}, ALICE_KEY)
    s, raw, h2 = post(url + "/api/chat", body, ALICE_KEY)  # Ollama streams by default
    assert (h1["x-gatehouse-cache"], h2["x-gatehouse-cache"]) == ("miss", "hit")
    lines = [json.loads(ln) for ln in raw.splitlines() if ln.strip()]
    assert "".join(ln["message"]["content"] for ln in lines) == json.loads(first)["message"]["content"]
    assert lines[-1]["done"] is True and all(not ln["done"] for ln in lines[:-1])
    assert upstream_calls(recorder) == 1


def test_a_hit_is_a_request_for_the_limits(openai_upstream, recorder, tmp_path):
    cfg = config(openai_upstream.url)
    cfg["groups"]["dev"]["requests_per_minute"] = 2
    with serve(cfg, tmp_path / "gh") as url:
        assert post(url + "/v1/chat/completions", chat("limited"), ALICE_KEY)[0] == 200
        s, _, h = post(url + "/v1/chat/completions", chat("limited"), ALICE_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "hit" and h["x-ratelimit-remaining-requests"] == "0"
        s, _, h = post(url + "/v1/chat/completions", chat("limited"), ALICE_KEY)
        assert s == 429 and "x-gatehouse-cache" not in h  # refused before the cache is looked at
    assert upstream_calls(recorder) == 1
