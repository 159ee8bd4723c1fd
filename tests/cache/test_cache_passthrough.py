"""A cacheable miss keeps the same-dialect pass-through, and its forwarded bytes are the entry.

Over real sockets with the counting OpenAI-wire upstream: the miss's answer is the upstream's own
bytes (its JSON spacing, fields the canonical form does not know), a hit in the same dialect and
mode returns exactly those bytes, a hit in another mode (stream <-> unary, with or without the usage
chunk) or dialect is read from them; a cut stream, an upstream error frame or a content-filter
finish is never stored. Completions and embeddings are cached too (keyed on the body)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.cache.serving import post, serve
from tests.conftest import ALICE_KEY, BOB_KEY, base_config
from tests.support import ledger_rows as ledger

CHAT = "/v1/chat/completions"


def config(upstream: str, **cache: Any) -> dict[str, Any]:
    cfg = base_config(upstream, metering={"flush_seconds": 0.05})
    cfg["models"][0]["cache"] = {"ttl_seconds": 60, **cache}
    cfg["models"][1]["cache"] = {"ttl_seconds": 60}  # embed
    return cfg


def chat(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": text}], "temperature": 0, **extra}


def calls(recorder, path: str = CHAT) -> int:
    return sum(1 for r in recorder.requests if r.path == path)


@pytest.fixture
def gh(openai_upstream, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with serve(config(openai_upstream.url), tmp_path / "gh") as url:
        yield url, tmp_path / "gh"


def test_a_miss_is_forwarded_and_a_hit_returns_its_bytes(gh, recorder):
    url, home = gh
    s1, b1, h1 = post(url + CHAT, chat(logit_bias={"50256": -100}), ALICE_KEY)
    s2, b2, h2 = post(url + CHAT, chat(logit_bias={"50256": -100}), ALICE_KEY)
    assert (s1, s2) == (200, 200) and (h1["x-gatehouse-cache"], h2["x-gatehouse-cache"]) == ("miss", "hit")
    # the upstream's own bytes (aiohttp's JSON spacing, `logprobs`), not a rendering of ours
    assert b'"object": "chat.completion"' in b1 and b'"logprobs": null' in b1
    assert b2 == b1 and json.loads(b1)["model"] == "chat"
    assert calls(recorder) == 1
    sent = recorder.last.json()  # the client's body, forwarded: its extra field is there as sent
    assert sent["logit_bias"] == {"50256": -100} and sent["model"] == "up-chat"
    assert h2["x-gatehouse-tokens-output"] == h1["x-gatehouse-tokens-output"] == "3"
    assert h2["x-gatehouse-cost-usd"] == "0"
    rows = ledger(home, 2)
    hit = [r for r in rows if r["cache_hit"]]
    assert len(rows) == 2 and len(hit) == 1 and hit[0]["cost_usd"] == 0
    assert hit[0]["input_tokens"] == json.loads(b1)["usage"]["prompt_tokens"] and hit[0]["output_tokens"] == 3


def test_repeated_hits_keep_their_headers_and_other_modes_still_read_the_entry(gh, recorder):
    """A memory entry's head is read by its first hit and kept: later hits answer the same."""
    url, home = gh
    s1, b1, h1 = post(url + CHAT, chat("again and again"), ALICE_KEY)
    assert s1 == 200 and h1["x-gatehouse-cache"] == "miss"
    for _ in range(3):
        s, b, h = post(url + CHAT, chat("again and again"), ALICE_KEY)
        assert s == 200 and b == b1 and h["x-gatehouse-cache"] == "hit" and int(h["age"]) >= 0
        assert (h["x-gatehouse-tokens-input"], h["x-gatehouse-tokens-output"], h["x-gatehouse-cost-usd"]) == \
            (h1["x-gatehouse-tokens-input"], h1["x-gatehouse-tokens-output"], "0")
    raw, h = stream(url, "again and again")  # another mode, after the head was kept: read from the bytes
    deltas = [json.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: {")]
    assert h["x-gatehouse-cache"] == "hit"
    assert "".join(d["choices"][0]["delta"].get("content") or "" for d in deltas if d["choices"]) == \
        "echo: again and again"
    assert calls(recorder) == 1
    rows = ledger(home, 5)
    assert sum(1 for r in rows if r["cache_hit"] and r["cost_usd"] == 0) == 4


def stream(url: str, text: str, usage: bool = True) -> tuple[bytes, dict[str, str]]:
    body = chat(text, stream=True, **({"stream_options": {"include_usage": True}} if usage else {}))
    status, raw, headers = post(url + CHAT, body, ALICE_KEY)
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    return raw, headers


def test_a_forwarded_stream_is_stored_and_replayed_byte_for_byte(gh, recorder):
    url, _ = gh
    text = "a streamed answer " + " ".join(f"w{i}" for i in range(30))
    miss, h1 = stream(url, text)
    hit, h2 = stream(url, text)
    assert (h1["x-gatehouse-cache"], h2["x-gatehouse-cache"]) == ("miss", "hit")
    assert b'"object": "chat.completion.chunk"' in miss  # relayed as the upstream wrote it
    assert hit == miss and calls(recorder) == 1
    # another mode reads the stored stream: without the usage chunk, and unary
    plain, h3 = stream(url, text, usage=False)
    assert h3["x-gatehouse-cache"] == "hit" and b'"usage":{' not in plain and b'"usage": {' not in plain
    deltas = [json.loads(line[6:]) for line in plain.split(b"\n\n") if line.startswith(b"data: {")]
    assert "".join(d["choices"][0]["delta"].get("content") or "" for d in deltas if d["choices"]) == "echo: " + text
    s, unary, h4 = post(url + CHAT, chat(text), ALICE_KEY)
    assert s == 200 and h4["x-gatehouse-cache"] == "hit"
    answer = json.loads(unary)
    assert answer["choices"][0]["message"]["content"] == "echo: " + text
    assert answer["usage"]["completion_tokens"] == 34 and answer["choices"][0]["finish_reason"] == "stop"
    assert calls(recorder) == 1


def test_a_forwarded_unary_answer_replays_as_a_stream_for_the_sdk(gh, recorder):
    url, _ = gh
    post(url + CHAT, chat("unary first"), ALICE_KEY)
    client = openai.OpenAI(base_url=url + "/v1", api_key=ALICE_KEY, max_retries=0)
    out, finish, usage = "", None, None
    for chunk in client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "unary first"}],
                                                temperature=0, stream=True, stream_options={"include_usage": True}):
        if chunk.choices:
            out += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert out == "echo: unary first" and finish == "stop" and usage is not None and usage.completion_tokens == 3
    assert calls(recorder) == 1


def test_the_anthropic_dialect_hits_an_openai_forwarded_entry(gh, recorder):
    url, _ = gh
    post(url + CHAT, chat("cross", max_tokens=64), ALICE_KEY)
    s, raw, h = post(url + "/v1/messages", chat("cross", max_tokens=64), ALICE_KEY, {"anthropic-version": "2023-06-01"})
    assert s == 200 and h["x-gatehouse-cache"] == "hit"
    msg = json.loads(raw)
    assert msg["type"] == "message" and msg["content"][0]["text"] == "echo: cross"
    assert calls(recorder) == 1


def test_a_cut_forwarded_stream_is_not_stored(gh, recorder):
    url, _ = gh
    for _ in range(2):
        status, raw, headers = post(url + CHAT, chat("one two three CUTSTREAM", stream=True), ALICE_KEY)
        assert headers["x-gatehouse-cache"] == "miss" and b"upstream_error" in raw and b"[DONE]" not in raw
    assert calls(recorder) == 2


@pytest.mark.parametrize("streamed", [False, True])
def test_a_content_filter_finish_is_not_stored(gh, recorder, streamed):
    url, _ = gh
    for _ in range(2):
        status, raw, headers = post(url + CHAT, chat("FILTERED please", stream=streamed), ALICE_KEY)
        assert status == 200 and headers["x-gatehouse-cache"] == "miss" and b"content_filter" in raw
    assert calls(recorder) == 2


def test_an_upstream_error_is_not_stored(gh, recorder):
    url, _ = gh
    for _ in range(2):
        status, _, headers = post(url + CHAT, chat("FAIL429 now"), ALICE_KEY)
        assert status == 429 and headers["x-gatehouse-cache"] == "miss"
    assert calls(recorder) == 2


def test_legacy_completions_are_cached_per_body_and_mode(gh, recorder):
    url, _ = gh
    body = {"model": "chat", "prompt": "complete me", "temperature": 0, "max_tokens": 16}
    s1, b1, h1 = post(url + "/v1/completions", body, ALICE_KEY)
    s2, b2, h2 = post(url + "/v1/completions", body, ALICE_KEY)
    assert (s1, s2) == (200, 200) and (h1["x-gatehouse-cache"], h2["x-gatehouse-cache"]) == ("miss", "hit")
    assert b2 == b1 and json.loads(b1)["choices"][0]["text"] == "echo: complete me"
    _, _, h = post(url + "/v1/completions", {**body, "echo": True}, ALICE_KEY)  # another body: another entry
    assert h["x-gatehouse-cache"] == "miss"
    _, raw, h = post(url + "/v1/completions", {**body, "stream": True}, ALICE_KEY)  # another mode
    assert h["x-gatehouse-cache"] == "miss" and raw.endswith(b"data: [DONE]\n\n")
    _, raw2, h = post(url + "/v1/completions", {**body, "stream": True}, ALICE_KEY)
    assert h["x-gatehouse-cache"] == "hit" and raw2 == raw
    _, _, h = post(url + "/v1/completions", {k: v for k, v in body.items() if k != "temperature"}, ALICE_KEY)
    assert h["x-gatehouse-cache"] == "bypass"  # sampled by default
    _, _, h = post(url + "/v1/completions", {**body, "n": 2}, ALICE_KEY)
    assert h["x-gatehouse-cache"] == "bypass"
    assert calls(recorder, "/v1/completions") == 5


def test_embeddings_are_cached_whatever_the_temperature_rules(gh, recorder):
    url, home = gh
    body = {"model": "embed", "input": ["alpha beta", "gamma"]}
    s1, b1, h1 = post(url + "/v1/embeddings", body, ALICE_KEY)
    s2, b2, h2 = post(url + "/v1/embeddings", body, ALICE_KEY)
    assert (s1, s2) == (200, 200) and (h1["x-gatehouse-cache"], h2["x-gatehouse-cache"]) == ("miss", "hit")
    assert b2 == b1 and len(json.loads(b2)["data"]) == 2
    _, _, h = post(url + "/v1/embeddings", {**body, "input": ["other"]}, ALICE_KEY)
    assert h["x-gatehouse-cache"] == "miss"
    _, _, h = post(url + "/v1/embeddings", body, BOB_KEY)  # another group: its own entry
    assert h["x-gatehouse-cache"] == "miss"
    assert calls(recorder, "/v1/embeddings") == 3
    rows = ledger(home, 4)
    assert [r["surface"] for r in rows if r["cache_hit"]] == ["embeddings"]

