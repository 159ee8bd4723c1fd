"""Output guardrails run on cached answers too (the policy may have changed since the answer was
stored, or differ between the tenants of a global cache), and an answer a guardrail blocked is
never stored."""
from __future__ import annotations

import json
from pathlib import Path

from tests.cache.serving import post, serve
from tests.cache.test_cache_exact import chat, config, upstream_calls
from tests.conftest import ALICE_KEY, BOB_KEY


def guarded(upstream: str) -> dict:
    cfg = config(upstream, {"scope": "global"})
    cfg["guardrails"] = {"policies": {"quiet": {"checks": [
        {"type": "keywords", "name": "secret", "words": ["secretword"], "action": "block", "stage": "output"},
        {"type": "keywords", "name": "mild", "words": ["mildword"], "action": "redact", "stage": "output"},
    ]}}}
    cfg["groups"]["dev"]["guardrails"] = ["quiet"]  # alice's group; bob's (open) has none
    return cfg


def test_a_cached_answer_passes_the_callers_output_guardrails(openai_upstream, recorder, tmp_path: Path):
    with serve(guarded(openai_upstream.url), tmp_path / "gh") as url:
        u = url + "/v1/chat/completions"
        s, body, h = post(u, chat("a secretword here"), BOB_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "miss" and b"secretword" in body
        s, body, h = post(u, chat("a secretword here"), ALICE_KEY)  # the same entry, alice's policy blocks it
        assert s >= 400 and h["x-gatehouse-cache"] == "hit" and b"secretword" not in body
        s, body, h = post(u, chat("a secretword here", stream=True), ALICE_KEY)
        assert h["x-gatehouse-cache"] == "hit" and b"secretword" not in body and b"error" in body
        s, body, h = post(u, chat("a mildword here"), BOB_KEY)
        s, body, h = post(u, chat("a mildword here"), ALICE_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "hit" and b"mildword" not in body
        s, body, h = post(u, chat("a mildword here"), BOB_KEY)  # stored as it came (redacted for alice only)
        assert h["x-gatehouse-cache"] == "hit" and b"mildword" in body
    assert upstream_calls(recorder) == 2


def test_a_blocked_answer_is_not_stored(openai_upstream, recorder, tmp_path: Path):
    with serve(guarded(openai_upstream.url), tmp_path / "gh") as url:
        u = url + "/v1/chat/completions"
        for stream in (False, True):
            s, body, h = post(u, chat("another secretword", stream=stream), ALICE_KEY)
            assert h["x-gatehouse-cache"] == "miss" and b"secretword" not in body
        s, body, h = post(u, chat("another secretword"), BOB_KEY)
        assert s == 200 and h["x-gatehouse-cache"] == "miss"
        assert json.loads(body)["choices"][0]["message"]["content"] == "echo: another secretword"
    assert upstream_calls(recorder) == 3
