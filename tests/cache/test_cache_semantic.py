"""The semantic cache over real sockets, with an embedding test upstream that maps texts to
bag-of-words vectors (the same words: similarity 1; five words of six shared: ~0.83): a hit for
the same question worded differently, a near miss below the threshold, never across contexts,
tenants or for requests with tools."""
from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.cache.serving import post, serve
from tests.cache.test_cache_exact import chat, config, upstream_calls
from tests.conftest import ALICE_KEY, BOB_KEY
from tests.upstreams.harness import ServerThread

DIMS = 64


def bag_of_words(text: str) -> list[float]:
    v = [0.0] * DIMS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMS] += 1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def make_embedder(recorder) -> web.Application:
    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        data = [{"object": "embedding", "index": i, "embedding": bag_of_words(t)} for i, t in enumerate(body["input"])]
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": 3, "total_tokens": 3}})

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    return app


@pytest.fixture(scope="module")
def embedder() -> Iterator[ServerThread]:
    with ServerThread(make_embedder) as srv:
        yield srv


def semantic_config(upstream: str, embedder_url: str, **cache: Any) -> dict[str, Any]:
    cfg = config(upstream, {"semantic": {"model": "bow", "threshold": 0.95}, **cache})
    cfg["providers"]["bow"] = {"type": "openai", "base_url": f"{embedder_url}/v1", "api_key": "x"}
    cfg["models"].append({"name": "bow", "embeddings": True, "deployments": [{"provider": "bow", "model": "bow-1"}]})
    return cfg


@pytest.fixture
def gh(openai_upstream, embedder, tmp_path: Path) -> Iterator[str]:
    embedder.recorder.clear()
    with serve(semantic_config(openai_upstream.url, embedder.url, allow_tools=True), tmp_path / "gh") as url:
        yield url


def test_the_same_question_worded_differently_is_a_hit(gh, recorder):
    u = gh + "/v1/chat/completions"
    s, first, h = post(u, chat("What is the capital of France?"), ALICE_KEY)
    assert s == 200 and h["x-gatehouse-cache"] == "miss"
    s, again, h = post(u, chat("what is the capital of france"), ALICE_KEY)
    assert s == 200 and h["x-gatehouse-cache"] == "hit" and float(h["x-gatehouse-cache-similarity"]) >= 0.95
    assert again == first  # the stored answer, as it was
    assert upstream_calls(recorder) == 1


def test_a_near_miss_below_the_threshold_goes_upstream(gh, recorder, embedder):
    u = gh + "/v1/chat/completions"
    post(u, chat("What is the capital of France?"), ALICE_KEY)
    s, body, h = post(u, chat("What is the capital of Spain?"), ALICE_KEY)
    assert h["x-gatehouse-cache"] == "miss" and b"Spain" in body
    assert upstream_calls(recorder) == 2
    assert sum(1 for r in embedder.recorder.requests if r.path == "/v1/embeddings") == 2


def test_never_across_contexts_or_tenants(gh, recorder):
    u = gh + "/v1/chat/completions"
    post(u, chat("How tall is the tower?"), ALICE_KEY)
    other_context = chat("how tall is the tower")
    other_context["messages"].insert(0, {"role": "system", "content": "You answer about Pisa."})
    assert post(u, other_context, ALICE_KEY)[2]["x-gatehouse-cache"] == "miss"
    assert post(u, chat("how tall is the tower"), BOB_KEY)[2]["x-gatehouse-cache"] == "miss"  # another group
    assert upstream_calls(recorder) == 3


def test_requests_with_tools_are_matched_exactly_only(gh, recorder, embedder):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    u = gh + "/v1/chat/completions"
    post(u, chat("Which tool now?", tools=tools), ALICE_KEY)
    assert post(u, chat("which tool now", tools=tools), ALICE_KEY)[2]["x-gatehouse-cache"] == "miss"
    assert post(u, chat("Which tool now?", tools=tools), ALICE_KEY)[2]["x-gatehouse-cache"] == "hit"
    assert not [r for r in embedder.recorder.requests if r.path == "/v1/embeddings"]
    assert upstream_calls(recorder) == 2
