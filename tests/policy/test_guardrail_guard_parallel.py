"""Guard models in `mode: parallel` over real sockets: the guard runs beside the upstream call
and the answer is held until it passes; an unsafe verdict discards the held answer (streams are
never started); a timeout follows on_error open | closed; the guard and the upstream overlap.
A parallel guard is refused at load for models that are not `private: true`."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from gatehouse.config import ConfigError, from_mapping
from tests.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY
from tests.policy.test_guardrail_guard_models import audit, chat, llamaguard
from tests.support import Gatehouse
from tests.upstreams import guard_wire, openai_wire
from tests.upstreams.harness import ServerThread


@pytest.fixture(scope="module")
def guard_upstream() -> Iterator[ServerThread]:
    with ServerThread(guard_wire.make_app) as srv:
        yield srv


def config(openai_url: str, guard_url: str, private: bool = True, **check: Any) -> dict[str, Any]:
    return {
        "providers": {
            "oa": {"type": "openai", "base_url": openai_url + "/v1", "api_key": openai_wire.API_KEY},
            "guard": {"type": "openai", "base_url": guard_url + "/v1", "api_key": guard_wire.API_KEY,
                      "failure_threshold": 0},
        },
        "admin": {"key": ADMIN_KEY},
        "models": [
            {"name": "chat", "private": private, "deployments": [{"provider": "oa", "model": "up-chat"}]},
            {"name": "public-chat", "deployments": [{"provider": "oa", "model": "up-chat"}]},
            {"name": "llama-guard", "deployments": [{"provider": "guard", "model": "meta-llama/Llama-Guard-3-8B"}]},
        ],
        "guardrails": {"policies": {
            "closed": {"checks": [llamaguard("par-closed", "closed", mode="parallel",
                                             categories={"S1": "block", "S2": "flag"}, **check)]},
            "open": {"checks": [llamaguard("par-open", "open", mode="parallel",
                                           categories={"S1": "block", "S2": "flag"}, **check)]},
        }},
        "groups": {"strict": {"models": ["chat"], "guardrails": ["closed"]},
                   "lenient": {"models": ["chat"], "guardrails": ["open"]}},
        "consumers": {"alice": {"group": "strict", "keys": [ALICE_KEY]}, "bob": {"group": "lenient", "keys": [BOB_KEY]}},
    }


@pytest.fixture(scope="module")
def gh(openai_upstream, guard_upstream, tmp_path_factory):
    g = Gatehouse(config(openai_upstream.url, guard_upstream.url),
                  tmp_path_factory.mktemp("gh-guard-parallel")).start()
    yield g
    g.stop()


@pytest.fixture
def seen(openai_upstream, guard_upstream):
    openai_upstream.recorder.clear()
    guard_upstream.recorder.clear()
    return openai_upstream.recorder, guard_upstream.recorder


def content(sse: str) -> str:
    return "".join(json.loads(ln[6:])["choices"][0]["delta"].get("content") or ""
                   for ln in sse.splitlines() if ln.startswith("data: {"))


def test_safe_prompt_gets_the_answer(gh, seen):
    upstream, guard = seen
    status, body = chat(gh, "what is the capital of France?", rid="par-safe")
    assert status == 200 and body["choices"][0]["message"]["content"] == "echo: what is the capital of France?"
    assert len(guard.requests) == 1 and len(upstream.requests) == 1
    assert audit(gh, "par-safe")[("par-closed", "input")]["verdict"] == "pass"
    status, text = chat(gh, "one two three", stream=True)
    assert status == 200 and content(text) == "echo: one two three" and text.rstrip().endswith("[DONE]")


@pytest.mark.parametrize("stream", [False, True])
def test_unsafe_verdict_discards_the_held_answer(gh, seen, stream):
    upstream, guard = seen
    rid = f"par-unsafe-{stream}"
    status, body = chat(gh, "how do I hurt someone", rid=rid, stream=stream)
    # a held stream was never started: the client gets the block as a plain error, not a 200
    assert status == 400 and body["error"]["code"] == "guardrail_blocked", body
    assert "echo" not in str(body) and "hurt" not in body["error"]["message"]
    assert len(upstream.requests) == 1 and len(guard.requests) == 1  # parallel: the upstream saw the prompt
    v = audit(gh, rid)[("par-closed", "input")]
    assert (v["verdict"], v["action"], v["category"]) == ("match", "block", "guard_model:S1")


@pytest.mark.parametrize("stream", [False, True])
def test_guard_timeout_closed_refuses_the_answer(gh, seen, stream):
    upstream, _ = seen
    rid = f"par-timeout-closed-{stream}"
    status, body = chat(gh, "slow-guard please", rid=rid, stream=stream)
    assert status == 503 and body["error"]["code"] == "guardrail_unavailable", body
    assert "echo" not in str(body) and len(upstream.requests) == 1
    assert audit(gh, rid)[("par-closed", "input")]["verdict"] == "skipped"


@pytest.mark.parametrize("stream", [False, True])
def test_guard_timeout_open_releases_the_answer_and_says_skipped(gh, seen, stream):
    rid = f"par-timeout-open-{stream}"
    status, body = chat(gh, "slow-guard please", key=BOB_KEY, rid=rid, stream=stream)
    assert status == 200
    assert (content(body) if stream else body["choices"][0]["message"]["content"]) == "echo: slow-guard please"
    v = audit(gh, rid)[("par-open", "input")]
    assert v["verdict"] == "skipped", "a check that did not run is never recorded as passed"


def test_guard_and_upstream_overlap(gh, seen):
    upstream, guard = seen
    chat(gh, "warm up")  # connections and plans ready
    t = time.monotonic()
    status, body = chat(gh, "HALFSEC half-second-guard")  # each side takes 0.5 s
    took = time.monotonic() - t
    assert status == 200 and body["choices"][0]["message"]["content"].startswith("echo:")
    assert len(guard.requests) == 2 and len(upstream.requests) == 2
    assert 0.45 < took < 0.9, f"{took:.2f} s: in series it would take 1 s or more"


def post(gh: Gatehouse, path: str, body: dict[str, Any], key: str) -> tuple[int, str]:
    req = urllib.request.Request(gh.url + path, json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_store_group_on_a_model_that_is_not_private_gets_the_guard_before(gh, seen):
    """A group added at run time is not checked at load: for a model that is not private the
    parallel guard runs before the upstream call, which never sees the rejected prompt."""
    upstream, guard = seen
    assert post(gh, "/admin/groups", {"name": "late", "models": ["public-chat"], "guardrails": ["closed"]},
                ADMIN_KEY)[0] == 201
    assert post(gh, "/admin/consumers", {"name": "late", "group": "late"}, ADMIN_KEY)[0] == 201
    key = json.loads(post(gh, "/admin/keys", {"consumer": "late"}, ADMIN_KEY)[1])["key"]
    body = {"model": "public-chat", "messages": [{"role": "user", "content": "how do I hurt someone"}]}
    status, text = post(gh, "/v1/chat/completions", body, key)
    assert status == 400 and "guardrail_blocked" in text
    assert len(guard.requests) == 1 and upstream.requests == []


# ---- config load ---------------------------------------------------------------------------------


def test_parallel_guard_needs_private_models():
    with pytest.raises(ConfigError, match=r"groups\.strict\.guardrails\[0\].*private: true"):
        from_mapping(config("http://127.0.0.1:1", "http://127.0.0.1:2", private=False))


@pytest.mark.parametrize("extra,message", [
    ({"stage": "output"}, "mode: parallel is for prompts"),
    ({"action": "reroute"}, "cannot reroute"),
])
def test_parallel_guard_refuses_what_it_cannot_do(extra, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(config("http://127.0.0.1:1", "http://127.0.0.1:2", **extra))


def test_mode_only_for_guard_models():
    cfg = config("http://127.0.0.1:1", "http://127.0.0.1:2")
    cfg["guardrails"]["policies"]["kw"] = {"checks": [{"type": "keywords", "words": ["x"], "mode": "parallel"}]}
    with pytest.raises(ConfigError, match="only for type 'guard_model'"):
        from_mapping(cfg)
