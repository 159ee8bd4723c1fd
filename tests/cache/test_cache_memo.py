"""Repeated hits by their bytes (policy/cache_memo.py) over real sockets: a consumer that sends the same
request again is answered like any hit, and nothing the caller or the moment decides is skipped —
tenants stay apart, access and limit changes apply at once, clearing, TTL and cache headers work,
and an entry stored again by another mode under the same key is answered in the client's own format."""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from gatehouse.app import GatehouseApp
from gatehouse.policy.cache_memo import RequestMemos
from tests.cache.serving import CAROL_KEY, chat, config, post, serve_app, upstream_calls
from tests.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY
from tests.support import ledger_rows as ledger

CHAT = "/v1/chat/completions"


class Served:
    def __init__(self, url: str, app: GatehouseApp, home: Path):
        self.url, self.app, self.home = url, app, home

    @property
    def memos(self) -> RequestMemos:
        rt = self.app.runtime
        assert rt is not None and rt.cache is not None
        return rt.cache.memos

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                             timeout=10, **kw)


@contextlib.contextmanager
def serve(cfg: dict[str, Any], home: Path) -> Iterator[Served]:
    """tests/cache/serving.serve, keeping the app (its runtime's memos are looked at)."""
    with serve_app(cfg, home) as (url, app):
        yield Served(url, app, home)


def test_a_repeated_request_is_remembered_and_answered_like_any_hit(openai_upstream, recorder, tmp_path):
    with serve(config(openai_upstream.url), tmp_path / "gh") as gh:
        assert gh.memos.enabled
        answers = [post(gh.url + CHAT, chat(), ALICE_KEY) for _ in range(4)]
        assert len(gh.memos) == 1  # made by the first hit; the later ones were answered through it
    assert [h["x-gatehouse-cache"] for _, _, h in answers] == ["miss", "hit", "hit", "hit"]
    assert upstream_calls(recorder) == 1
    (s1, b1, h1), *hits = answers
    for status, body, h in hits:
        assert status == 200 and body == hits[0][1]
        assert int(h["age"]) >= 0 and h["x-gatehouse-cost-usd"] == "0"
        assert h["x-gatehouse-tokens-output"] == h1["x-gatehouse-tokens-output"]
        assert h["x-gatehouse-tokens-input"] == h1["x-gatehouse-tokens-input"]
        assert h["content-type"] == h1["content-type"] and int(h["content-length"]) == len(body)
        assert h["x-request-id"] != h1["x-request-id"]
    assert json.loads(hits[-1][1])["choices"][0]["message"]["content"] == "echo: hello there"
    rows = ledger(gh.home, 4)
    assert len(rows) == 4, "every hit is recorded, once"
    hit_rows = [r for r in rows if r["cache_hit"]]
    assert len(hit_rows) == 3 and len({r["request_id"] for r in hit_rows}) == 3
    assert all(r["cost_usd"] == 0 and r["attempt"] == 0 and r["status"] == 200 and r["consumer"] == "alice"
               for r in hit_rows)


def test_a_remembered_request_never_crosses_tenants(openai_upstream, recorder, tmp_path):
    with serve(config(openai_upstream.url), tmp_path / "group") as gh:
        for _ in range(3):
            post(gh.url + CHAT, chat("tenants"), ALICE_KEY)  # group dev: remembered
        _, _, bob = post(gh.url + CHAT, chat("tenants"), BOB_KEY)  # group open
        _, _, carol = post(gh.url + CHAT, chat("tenants"), CAROL_KEY)  # group dev: the group's entry
    assert bob["x-gatehouse-cache"] == "miss" and carol["x-gatehouse-cache"] == "hit"
    assert upstream_calls(recorder) == 2
    recorder.clear()
    with serve(config(openai_upstream.url, {"scope": "consumer"}), tmp_path / "consumer") as gh:
        for _ in range(3):
            post(gh.url + CHAT, chat("mine"), ALICE_KEY)
        _, _, carol = post(gh.url + CHAT, chat("mine"), CAROL_KEY)
    assert carol["x-gatehouse-cache"] == "miss"
    assert upstream_calls(recorder) == 2


def test_access_and_group_changes_apply_to_a_remembered_request(openai_upstream, recorder, tmp_path):
    with serve(config(openai_upstream.url), tmp_path / "gh") as gh:
        assert gh.admin("POST", "/admin/groups", json={"name": "movers", "models": ["chat"]}).status_code == 201
        assert gh.admin("POST", "/admin/consumers", json={"name": "mover", "group": "movers"}).status_code == 201
        created = gh.admin("POST", "/admin/keys", json={"consumer": "mover"}).json()
        key = created["key"]
        assert [post(gh.url + CHAT, chat("moving"), key)[2]["x-gatehouse-cache"] for _ in range(3)] == \
            ["miss", "hit", "hit"]
        assert gh.admin("PATCH", "/admin/groups/movers", json={"models": ["embed"]}).status_code == 200
        status, body, _ = post(gh.url + CHAT, chat("moving"), key)
        assert status == 403 and b"not allowed" in body
        assert gh.admin("PATCH", "/admin/groups/movers",
                        json={"models": ["chat"], "requests_per_minute": 2}).status_code == 200
        statuses = [post(gh.url + CHAT, chat("moving"), key)[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert gh.admin("POST", f"/admin/keys/{created['id']}/revoke").status_code == 200
        assert post(gh.url + CHAT, chat("moving"), key)[0] == 401
    assert upstream_calls(recorder) == 1


def test_limits_count_remembered_requests(openai_upstream, recorder, tmp_path):
    cfg = config(openai_upstream.url)
    cfg["groups"]["dev"]["requests_per_minute"] = 3
    with serve(cfg, tmp_path / "gh") as gh:
        answers = [post(gh.url + CHAT, chat("limited"), ALICE_KEY) for _ in range(4)]
        assert len(gh.memos) == 1
    assert [s for s, _, _ in answers] == [200, 200, 200, 429]
    assert answers[2][2]["x-gatehouse-cache"] == "hit"
    assert upstream_calls(recorder) == 1


def test_clearing_expiry_and_cache_headers_take_the_full_path(openai_upstream, recorder, tmp_path):
    with serve(config(openai_upstream.url, {"ttl_seconds": 1}), tmp_path / "gh") as gh:
        for _ in range(3):
            post(gh.url + CHAT, chat("clear me"), ALICE_KEY)
        assert gh.admin("DELETE", "/admin/cache").json()["removed"] == 1
        assert post(gh.url + CHAT, chat("clear me"), ALICE_KEY)[2]["x-gatehouse-cache"] == "miss"
        for _ in range(2):
            post(gh.url + CHAT, chat("clear me"), ALICE_KEY)
        assert len(gh.memos) == 1
        _, _, h = post(gh.url + CHAT, chat("clear me"), ALICE_KEY, {"x-gatehouse-cache": "off"})
        assert h["x-gatehouse-cache"] == "bypass"
        _, _, h = post(gh.url + CHAT, chat("clear me"), ALICE_KEY, {"cache-control": "no-cache"})
        assert h["x-gatehouse-cache"] == "bypass"  # (and stored again)
        time.sleep(1.1)
        assert post(gh.url + CHAT, chat("clear me"), ALICE_KEY)[2]["x-gatehouse-cache"] == "miss"
    assert upstream_calls(recorder) == 5


def test_an_entry_stored_again_in_another_mode_is_answered_in_the_clients_own(openai_upstream, recorder, tmp_path):
    unary, stream = chat("modes"), chat("modes", stream=True)
    with serve(config(openai_upstream.url, {"ttl_seconds": 1}), tmp_path / "gh") as gh:
        for _ in range(3):
            post(gh.url + CHAT, unary, ALICE_KEY)
        assert len(gh.memos) == 1
        time.sleep(1.1)  # expired (the memo stays)
        streamed = []
        for _ in range(3):  # the same key, now holding a stream (its head read by the first hit)
            s, body, h = post(gh.url + CHAT, stream, ALICE_KEY)
            assert s == 200 and body.startswith(b"data: ") and body.rstrip().endswith(b"data: [DONE]")
            streamed.append((body, h))
        assert len(gh.memos) == 2  # (the stream request is remembered too, and answered through its memo)
        (_, h_miss), (b_hit, h_hit), (b_again, h_again) = streamed
        assert h_miss["x-gatehouse-cache"] == "miss" and h_hit["x-gatehouse-cache"] == h_again["x-gatehouse-cache"] == "hit"
        assert b_again == b_hit and h_again["content-type"] == h_hit["content-type"]
        assert "x-gatehouse-tokens-input" not in h_again and "x-gatehouse-tokens-input" not in h_hit
        status, body, h = post(gh.url + CHAT, unary, ALICE_KEY)
    assert status == 200 and h["x-gatehouse-cache"] == "hit" and h["content-type"].startswith("application/json")
    assert json.loads(body)["choices"][0]["message"]["content"] == "echo: modes"
    assert upstream_calls(recorder) == 2


def test_no_memos_where_guardrails_apply(openai_upstream, recorder, tmp_path):
    cfg = config(openai_upstream.url)
    cfg["guardrails"] = {"policies": {"cards": {"checks": [
        {"type": "keywords", "name": "secret", "words": ["secretword"], "action": "block", "stage": "output"}]}}}
    cfg["groups"]["dev"]["guardrails"] = ["cards"]
    with serve(cfg, tmp_path / "gh") as gh:
        answers = [post(gh.url + CHAT, chat("guarded"), ALICE_KEY) for _ in range(3)]
        assert not gh.memos.enabled and len(gh.memos) == 0
    assert [h["x-gatehouse-cache"] for _, _, h in answers] == ["miss", "hit", "hit"]


def test_an_anthropic_pass_through_request_is_remembered_too(openai_upstream, anthropic_upstream, tmp_path):
    from tests.anthropic_setup import anthropic_config

    cfg = anthropic_config(openai_upstream.url, anthropic_upstream.url)
    next(m for m in cfg["models"] if m["name"] == "claude")["cache"] = {"ttl_seconds": 60}
    anthropic_upstream.recorder.clear()
    body = {"model": "claude", "max_tokens": 64, "temperature": 0, "messages": [{"role": "user", "content": "again"}]}
    headers = {"anthropic-version": "2023-06-01"}
    with serve(cfg, tmp_path / "gh") as gh:
        answers = [post(gh.url + "/v1/messages", body, ALICE_KEY, headers) for _ in range(4)]
        assert len(gh.memos) == 1
        _, _, bob = post(gh.url + "/v1/messages", body, BOB_KEY, headers)  # another group: its own entry
    assert [h["x-gatehouse-cache"] for _, _, h in answers] == ["miss", "hit", "hit", "hit"]
    assert bob["x-gatehouse-cache"] == "miss"
    assert answers[3][1] == answers[1][1] and json.loads(answers[3][1])["type"] == "message"
    assert sum(1 for r in anthropic_upstream.recorder.requests if r.method == "POST") == 2


def test_a_large_body_is_not_remembered(openai_upstream, recorder, tmp_path):
    big = chat("long " * 8000)  # ~40 KB: past what is remembered (finding a memo hashes the body)
    with serve(config(openai_upstream.url), tmp_path / "gh") as gh:
        answers = [post(gh.url + CHAT, big, ALICE_KEY) for _ in range(3)]
        assert len(gh.memos) == 0
        post(gh.url + CHAT, chat("small"), ALICE_KEY)
        post(gh.url + CHAT, chat("small"), ALICE_KEY)
        assert len(gh.memos) == 1
        _, _, h = post(gh.url + CHAT, big, ALICE_KEY)  # (a remembered length or not: the full path answers)
    assert [a[2]["x-gatehouse-cache"] for a in answers] == ["miss", "hit", "hit"] and h["x-gatehouse-cache"] == "hit"
    assert upstream_calls(recorder) == 2
