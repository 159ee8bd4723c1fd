"""Limits and budgets on one gatehouse without Redis (exact in-process limits), driven over
real sockets with httpx and the openai SDK against the OpenAI-wire test upstream."""
from __future__ import annotations

import concurrent.futures

import httpx
import openai
import pytest

from tests.conftest import base_config
from tests.support import Gatehouse

KEYS = {name: f"{name}-key-0123456789" for name in
        ("capped", "small", "rpm", "conc", "spender", "boss", "power", "mate1", "mate2", "dev")}


def limits_config(upstream_url: str) -> dict:
    cfg = base_config(upstream_url)
    cfg["models"][0]["deployments"][0].update(input_per_mtok=1000.0, output_per_mtok=2000.0)  # "chat"
    cfg["groups"].update({
        "capped": {"models": ["chat", "embed"], "max_tokens": 5},
        "small": {"models": ["chat"], "tokens_per_minute": 100, "max_tokens": 20},
        "rpm": {"models": ["chat"], "requests_per_minute": 2},
        "conc": {"models": ["chat"], "max_concurrent": 1},
        "spender": {"models": ["chat", "echo"], "budget_usd_per_day": 0.1, "max_tokens": 10},
        "admin": {"models": ["*"]},
        "team": {"models": ["chat"], "tokens_per_minute": 300, "limit_scope": "group"},
    })
    cfg["consumers"].update({
        "capped": {"group": "capped", "keys": [KEYS["capped"]]},
        "small": {"group": "small", "keys": [KEYS["small"]]},
        "rpm": {"group": "rpm", "keys": [KEYS["rpm"]]},
        "conc": {"group": "conc", "keys": [KEYS["conc"]]},
        "spender": {"group": "spender", "keys": [KEYS["spender"]]},
        "boss": {"group": "admin", "keys": [KEYS["boss"]]},
        "power": {"group": "small", "tokens_per_minute": 1000, "keys": [KEYS["power"]]},
        "mate1": {"group": "team", "keys": [KEYS["mate1"]]},
        "mate2": {"group": "team", "keys": [KEYS["mate2"]]},
    })
    return cfg


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    g = Gatehouse(limits_config(openai_upstream.url), tmp_path_factory.mktemp("limits")).start()
    yield g
    g.stop()


def chat(gh, who: str, text: str = "hello world", **body) -> httpx.Response:
    return httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEYS[who]}"},
                      json={"model": "chat", "messages": [{"role": "user", "content": text}], **body}, timeout=20)


def test_group_max_tokens_caps_what_reaches_the_upstream(gh, recorder):
    assert chat(gh, "capped", max_tokens=100).status_code == 200
    assert recorder.last.json()["max_tokens"] == 5
    assert chat(gh, "capped").status_code == 200
    assert recorder.last.json()["max_tokens"] == 5, "no max_tokens asked: the cap is sent"
    assert chat(gh, "capped", max_completion_tokens=50).status_code == 200
    assert recorder.last.json()["max_completion_tokens"] == 5
    assert chat(gh, "capped", max_tokens=3).status_code == 200
    assert recorder.last.json()["max_tokens"] == 3, "a smaller request is left alone"
    r = chat(gh, "capped", text="one two three four five six seven eight", stream=True)
    assert r.status_code == 200 and recorder.last.json()["max_tokens"] == 5


def test_group_max_tokens_cap_applies_to_the_anthropic_and_ollama_dialects(gh, recorder):
    import anthropic

    client = anthropic.Anthropic(base_url=gh.url, api_key=KEYS["capped"], max_retries=0)
    msg = client.messages.create(model="chat", max_tokens=8000, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "echo: hi"
    assert recorder.last.json()["max_tokens"] == 5, "the group caps what the client asked for"
    r = httpx.post(gh.url + "/api/chat", headers={"Authorization": f"Bearer {KEYS['capped']}"}, timeout=20,
                   json={"model": "chat", "stream": False, "options": {"num_predict": 900, "temperature": 0},
                         "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert recorder.last.json()["max_tokens"] == 5


LONG = "w " * 30  # the upstream counts 30 prompt tokens and answers with max_tokens words


def test_tokens_per_minute_headers_and_429_in_openai_dialect(gh):
    first = chat(gh, "small", text=LONG, max_tokens=20)
    assert first.status_code == 200
    h = first.headers
    assert h["x-ratelimit-limit-tokens"] == "100"
    assert int(h["x-ratelimit-remaining-tokens"]) <= 100 - 20
    assert h["x-ratelimit-reset-tokens"].endswith("s")
    codes = [chat(gh, "small", text=LONG, max_tokens=20).status_code for _ in range(3)]
    assert 429 in codes, "50 tokens used per request against 100 per minute"
    refused = chat(gh, "small", text=LONG, max_tokens=20)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-tokens"] == "100"
    err = refused.json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert "consumer 'small'" in err["message"] and "100 tokens per minute" in err["message"]


def test_openai_sdk_sees_rate_limit_error_with_headers(gh):
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=KEYS["small"], max_retries=0)
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(10):
            client.chat.completions.create(model="chat", max_tokens=20,
                                           messages=[{"role": "user", "content": LONG}])
    assert e.value.response.headers["retry-after"]
    assert e.value.response.headers["x-ratelimit-remaining-tokens"]


def test_request_larger_than_the_whole_limit_is_refused_at_once(gh):
    r = chat(gh, "power", text="word " * 4000)  # ~5000 tokens against 1000/min
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "request_too_large" and r.json()["error"]["param"] == "max_tokens"


def test_consumer_override_replaces_the_group_value(gh):
    r = chat(gh, "power", max_tokens=20)
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == "1000"


def test_requests_per_minute(gh):
    codes = [chat(gh, "rpm").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = chat(gh, "rpm")
    assert r.headers["x-ratelimit-limit-requests"] == "2" and r.headers["x-ratelimit-remaining-requests"] == "0"
    assert "requests per minute" in r.json()["error"]["message"]


def test_max_concurrent_and_release_after_settle(gh):
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        codes = sorted(pool.map(lambda _: chat(gh, "conc", text="SLOW please").status_code, range(3)))
    assert codes == [200, 429, 429]
    assert chat(gh, "conc").status_code == 200, "the slot is free again once the slow one settled"


def test_usd_budget_refuses_with_budget_exceeded_and_spares_free_models(gh):
    statuses = []
    for _ in range(12):
        r = chat(gh, "spender", text="a b c d e f g h")
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429 and statuses.count(200) >= 2
    err = r.json()["error"]
    assert err["code"] == "budget_exceeded" and "$0.10" in err["message"]
    assert int(r.headers["retry-after"]) > 0
    free = httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEYS['spender']}"},
                      json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    assert free.status_code == 200, "the echo model has no price, so the budget does not apply"


def test_group_scope_shares_one_allowance(gh):
    a = chat(gh, "mate1", max_tokens=50)
    b = chat(gh, "mate2", max_tokens=50)
    assert int(b.headers["x-ratelimit-remaining-tokens"]) < int(a.headers["x-ratelimit-remaining-tokens"])


def test_unlimited_group_gets_no_rate_limit_headers(gh):
    r = chat(gh, "boss")
    assert r.status_code == 200 and not any(k.startswith("x-ratelimit") for k in r.headers)


def test_upstream_error_responses_carry_the_headers_too(gh):
    r = chat(gh, "power", text="FAIL500", max_tokens=10)
    assert r.status_code == 502 and r.headers["x-ratelimit-limit-tokens"] == "1000"


def test_nothing_a_consumer_sends_raises_its_group_or_limits(gh):
    headers = {"Authorization": f"Bearer {KEYS['rpm']}", "x-gatehouse-group": "admin", "x-group": "admin"}
    body = {"model": "restricted", "messages": [{"role": "user", "content": "hi"}], "user": "boss",
            "metadata": {"group": "admin", "budget_usd_per_day": 1000}}
    r = httpx.post(gh.url + "/v1/chat/completions", headers=headers, json=body, timeout=10)
    assert r.status_code == 403
    body["model"] = "chat"
    r = httpx.post(gh.url + "/v1/chat/completions", headers=headers, json=body, timeout=10)
    assert r.headers["x-ratelimit-limit-requests"] == "2"
    models = httpx.get(gh.url + "/v1/models", headers=headers, timeout=10).json()["data"]
    assert [m["id"] for m in models] == ["chat"]


def test_streams_settle_and_release_their_slot(gh):
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=KEYS["conc"], max_retries=0)
    for _ in range(3):  # max_concurrent 1: each stream must give its slot back when it ends
        stream = client.chat.completions.create(model="chat", stream=True,
                                                messages=[{"role": "user", "content": "one two three"}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: one two three"
