"""The Redis-backed cache: two replicas share entries (one upstream call between them), entries
carry the TTL in Redis, DELETE /admin/cache clears them by model and group; a Redis that is down is
a bypass, never an error."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.cache.serving import post, serve
from tests.cache.test_cache_exact import chat, config, upstream_calls
from tests.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY
from tests.upstreams.harness import free_port


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_replicas_share_the_cache_through_redis(openai_upstream, recorder, redis_server, tmp_path: Path):
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    cfg = config(openai_upstream.url, {"backend": "redis", "ttl_seconds": 30},
                 store={"redis_url": redis_server.url})
    with serve(cfg, tmp_path / "a") as a, serve(cfg, tmp_path / "b") as b:
        s, body_a, h = post(a + "/v1/chat/completions", chat("shared"), ALICE_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "miss"
        wait_for(lambda: len(r.keys("gh:cache:*")) == 1)
        s, body_b, h = post(b + "/v1/chat/completions", chat("shared"), ALICE_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "hit"
        assert json.loads(body_b)["choices"][0]["message"] == json.loads(body_a)["choices"][0]["message"]
        assert upstream_calls(recorder) == 1
        [key] = r.keys("gh:cache:*")
        assert 0 < r.pttl(key) <= 30_000
        assert b"shared" in r.get(key)  # (the answer; never the key or the consumer)
        post(a + "/v1/chat/completions", chat("shared"), BOB_KEY)  # another group: another entry
        wait_for(lambda: len(r.keys("gh:cache:*")) == 2)  # (stored once the answer is out)
        s, body, _ = post(b + "/admin/cache?group=dev", None, ADMIN_KEY, method="DELETE")
        assert s == 200 and json.loads(body)["removed"] == 1
        s, body, _ = post(a + "/admin/cache?model=chat", None, ADMIN_KEY, method="DELETE")
        assert s == 200 and json.loads(body)["removed"] == 1
        assert r.keys("gh:cache:*") == []


def test_a_redis_that_is_down_is_a_bypass(openai_upstream, recorder, tmp_path: Path):
    cfg = config(openai_upstream.url, {"backend": "redis"}, store={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with serve(cfg, tmp_path / "gh") as url:
        for _ in range(2):
            s, _, h = post(url + "/v1/chat/completions", chat("no redis"), ALICE_KEY)
            assert s == 200 and h["x-gatehouse-cache"] == "bypass"
    assert upstream_calls(recorder) == 2


def test_an_unreadable_entry_is_a_miss_and_is_replaced(openai_upstream, recorder, redis_server, tmp_path: Path):
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    cfg = config(openai_upstream.url, {"backend": "redis"}, store={"redis_url": redis_server.url})
    with serve(cfg, tmp_path / "gh") as url:
        post(url + "/v1/chat/completions", chat("garbled"), ALICE_KEY)
        wait_for(lambda: len(r.keys("gh:cache:*")) == 1)
        [key] = r.keys("gh:cache:*")
        r.set(key, b"not an entry")
        s, _, h = post(url + "/v1/chat/completions", chat("garbled"), ALICE_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "miss"
        wait_for(lambda: r.get(key) != b"not an entry")
        assert post(url + "/v1/chat/completions", chat("garbled"), ALICE_KEY)[2]["x-gatehouse-cache"] == "hit"
    assert upstream_calls(recorder) == 2


def test_a_forwarded_stream_is_shared_through_redis_in_its_bytes(openai_upstream, recorder, redis_server,
                                                                 tmp_path: Path):
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    cfg = config(openai_upstream.url, {"backend": "redis"}, store={"redis_url": redis_server.url})
    body = chat("streamed and shared", stream=True, stream_options={"include_usage": True})
    with serve(cfg, tmp_path / "a") as a, serve(cfg, tmp_path / "b") as b:
        s, miss, h = post(a + "/v1/chat/completions", body, ALICE_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "miss" and miss.endswith(b"data: [DONE]\n\n")
        wait_for(lambda: len(r.keys("gh:cache:*")) == 1)
        s, hit, h = post(b + "/v1/chat/completions", body, ALICE_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "hit" and hit == miss
        s, unary, h = post(b + "/v1/chat/completions", chat("streamed and shared"), ALICE_KEY)
        assert h["x-gatehouse-cache"] == "hit"
        assert json.loads(unary)["choices"][0]["message"]["content"] == "echo: streamed and shared"
    assert upstream_calls(recorder) == 1


def test_an_entry_of_the_previous_format_still_answers(openai_upstream, recorder, redis_server, tmp_path: Path):
    """Redis outlives a deploy: `<stamp> <canonical answer JSON>` entries are read as before."""
    from gatehouse.types import ChatResponse, TextPart, Usage, json_encode

    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    cfg = config(openai_upstream.url, {"backend": "redis"}, store={"redis_url": redis_server.url})
    with serve(cfg, tmp_path / "gh") as url:
        post(url + "/v1/chat/completions", chat("old format"), ALICE_KEY)
        wait_for(lambda: len(r.keys("gh:cache:*")) == 1)
        [key] = r.keys("gh:cache:*")
        old = ChatResponse("chatcmpl-old", "chat", [TextPart("from the old entry")], "end", None,
                           Usage(input_tokens=2, output_tokens=4))
        r.set(key, b"%.3f " % time.time() + json_encode(old))
        s, raw, h = post(url + "/v1/chat/completions", chat("old format"), ALICE_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "hit" and h["x-gatehouse-tokens-output"] == "4"
        assert json.loads(raw)["choices"][0]["message"]["content"] == "from the old entry"
    assert upstream_calls(recorder) == 1
