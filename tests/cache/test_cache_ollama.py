"""Ollama routes against a native Ollama upstream (the counting Ollama-wire test server): a chat
miss keeps its NDJSON pass-through and its bytes are the entry; a hit in the same mode gets them as
they are, a hit in another mode reads them; /api/embed is cached too. (An Ollama request keeps
its `options` in the key, so it shares entries with Ollama requests only.)"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cache.serving import post, serve
from tests.conftest import ADMIN_KEY, ALICE_KEY


@pytest.fixture
def gh(ollama_upstream, tmp_path: Path) -> Iterator[str]:
    cache = {"ttl_seconds": 60}
    cfg = {
        "admin": {"key": ADMIN_KEY},
        "providers": {"ol": {"type": "ollama", "base_url": ollama_upstream.url}},
        "models": [{"name": "llama", "deployments": [{"provider": "ol", "model": "llama3.2"}], "cache": cache},
                   {"name": "nomic", "embeddings": True, "cache": cache,
                    "deployments": [{"provider": "ol", "model": "nomic-embed-text"}]}],
        "groups": {"dev": {"models": ["*"]}},
        "consumers": {"alice": {"group": "dev", "keys": [ALICE_KEY]}},
    }
    ollama_upstream.recorder.clear()
    with serve(cfg, tmp_path / "gh") as url:
        yield url


def calls(upstream, path: str) -> int:
    return sum(1 for r in upstream.recorder.requests if r.path == path)


def chat(text: str, **extra) -> dict:
    return {"model": "llama", "messages": [{"role": "user", "content": text}], "options": {"temperature": 0},
            **extra}


def test_an_ollama_stream_is_stored_as_relayed_and_read_by_other_modes(gh, ollama_upstream):
    s1, miss, h1 = post(gh + "/api/chat", chat("stream me please"), ALICE_KEY)
    s2, hit, h2 = post(gh + "/api/chat", chat("stream me please"), ALICE_KEY)
    assert (s1, s2) == (200, 200) and (h1["x-gatehouse-cache"], h2["x-gatehouse-cache"]) == ("miss", "hit")
    assert hit == miss and miss.count(b"\n") > 2 and b'"done":true' in miss.replace(b" ", b"")
    s, unary, h = post(gh + "/api/chat", chat("stream me please", stream=False), ALICE_KEY)
    assert s == 200 and h["x-gatehouse-cache"] == "hit"
    streamed = "".join(json.loads(line)["message"]["content"] for line in miss.splitlines() if line.strip())
    assert json.loads(unary)["message"]["content"] == streamed and streamed
    assert calls(ollama_upstream, "/api/chat") == 1


def test_an_ollama_unary_answer_replays_as_an_ndjson_stream(gh, ollama_upstream):
    _, raw, h = post(gh + "/api/chat", chat("unary then stream", stream=False), ALICE_KEY)
    assert h["x-gatehouse-cache"] == "miss"
    text = json.loads(raw)["message"]["content"]
    s, out, h = post(gh + "/api/chat", chat("unary then stream", stream=False), ALICE_KEY)
    assert s == 200 and h["x-gatehouse-cache"] == "hit" and out == raw
    s, streamed, h = post(gh + "/api/chat", chat("unary then stream"), ALICE_KEY)
    assert s == 200 and h["x-gatehouse-cache"] == "hit"
    lines = [json.loads(line) for line in streamed.splitlines() if line.strip()]
    assert "".join(x["message"]["content"] for x in lines) == text and lines[-1]["done"] is True
    assert calls(ollama_upstream, "/api/chat") == 1


def test_ollama_embed_is_cached(gh, ollama_upstream):
    body = {"model": "nomic", "input": ["one", "two"]}
    s1, b1, h1 = post(gh + "/api/embed", body, ALICE_KEY)
    s2, b2, h2 = post(gh + "/api/embed", body, ALICE_KEY)
    assert (s1, s2) == (200, 200) and (h1["x-gatehouse-cache"], h2["x-gatehouse-cache"]) == ("miss", "hit")
    assert b2 == b1 and len(json.loads(b1)["embeddings"]) == 2
    assert calls(ollama_upstream, "/api/embed") == 1
