"""Guard models over real sockets: a test server answering like LlamaGuard 3 judges prompts
before the upstream sees them; a timeout, a 500 and an unreadable answer under on_error open
and closed; the audit of a fail-open request says skipped."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ALICE_KEY, BOB_KEY
from tests.support import Gatehouse, access_log_entry
from tests.upstreams import guard_wire, openai_wire
from tests.upstreams.harness import ServerThread

CAROL_KEY = "carol-secret-key-3"


@pytest.fixture(scope="module")
def guard_upstream() -> Iterator[ServerThread]:
    with ServerThread(guard_wire.make_app) as srv:
        yield srv


def llamaguard(name: str, on_error: str, **extra: Any) -> dict[str, Any]:
    return {"type": "guard_model", "name": name, "model": "llama-guard", "stage": "input", "format": "llamaguard",
            "categories": {"S1": "block", "S2": "flag", "S10": "reroute"}, "timeout_seconds": 1.0,
            "on_error": on_error, **extra}


@pytest.fixture(scope="module")
def gh(openai_upstream, guard_upstream, tmp_path_factory):
    cfg = {
        "providers": {
            "oa": {"type": "openai", "base_url": openai_upstream.url + "/v1", "api_key": openai_wire.API_KEY},
            "guard": {"type": "openai", "base_url": guard_upstream.url + "/v1", "api_key": guard_wire.API_KEY,
                      "failure_threshold": 0},
        },
        "models": [
            {"name": "chat", "deployments": [{"provider": "oa", "model": "up-chat"}]},
            {"name": "llama-guard", "deployments": [{"provider": "guard", "model": "meta-llama/Llama-Guard-3-8B"}]},
        ],
        "guardrails": {"policies": {
            "closed": {"checks": [{"type": "keywords", "name": "sqli", "words": ["drop table"]},
                                  llamaguard("llamaguard", "closed")]},
            "open": {"checks": [llamaguard("llamaguard-open", "open")]},
            "answers": {"checks": [llamaguard("llamaguard-out", "closed", stage="output")]},
        }},
        "groups": {"strict": {"models": ["chat"], "guardrails": ["closed"]},
                   "lenient": {"models": ["chat"], "guardrails": ["open"]},
                   "answers": {"models": ["chat"], "guardrails": ["answers"]}},
        "consumers": {"alice": {"group": "strict", "keys": [ALICE_KEY]}, "bob": {"group": "lenient", "keys": [BOB_KEY]},
                      "carol": {"group": "answers", "keys": [CAROL_KEY]}},
    }
    g = Gatehouse(cfg, tmp_path_factory.mktemp("gh-guard-models")).start()
    yield g
    g.stop()


@pytest.fixture
def seen(openai_upstream, guard_upstream):
    openai_upstream.recorder.clear()
    guard_upstream.recorder.clear()
    return openai_upstream.recorder, guard_upstream.recorder


def chat(gh: Gatehouse, text: str, key: str = ALICE_KEY, rid: str | None = None,
         stream: bool = False) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    if rid:
        headers["x-request-id"] = rid
    req = urllib.request.Request(gh.url + "/v1/chat/completions", json.dumps(
        {"model": "chat", "stream": stream,
         "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]}
    ).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            raw = resp.read().decode()
            return resp.status, raw if stream else json.loads(raw)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def audit(gh: Gatehouse, rid: str) -> dict[tuple[str, str], dict[str, str]]:
    return {(v["check"], v["stage"]): v for v in access_log_entry(gh, rid, timeout=5)["guardrails"]}


def test_safe_prompt_is_judged_then_forwarded(gh, seen):
    upstream, guard = seen
    status, body = chat(gh, "what is the capital of France?")
    assert status == 200, body
    assert len(guard.requests) == 1 and len(upstream.requests) == 1
    sent = guard.last.json()["messages"]
    assert [m["role"] for m in sent] == ["user"] and "capital of France" in json.dumps(sent)


def test_unsafe_s1_blocks_before_the_upstream(gh, seen):
    upstream, guard = seen
    status, body = chat(gh, "how do I hurt someone", rid="guard-s1")
    assert status == 400 and body["error"]["code"] == "guardrail_blocked"
    assert "llamaguard" in body["error"]["message"] and "hurt" not in body["error"]["message"]
    assert upstream.requests == [] and len(guard.requests) == 1
    v = audit(gh, "guard-s1")[("llamaguard", "input")]
    assert (v["verdict"], v["action"], v["category"]) == ("match", "block", "guard_model:S1")


def test_unsafe_s2_is_flagged_and_forwarded(gh, seen):
    upstream, _ = seen
    status, _ = chat(gh, "tell me about fraud detection", rid="guard-s2")
    assert status == 200 and len(upstream.requests) == 1
    v = audit(gh, "guard-s2")[("llamaguard", "input")]
    assert (v["verdict"], v["action"], v["category"]) == ("match", "flag", "guard_model:S2")


def test_most_severe_category_wins(gh, seen):
    status, _ = chat(gh, "both-bad", rid="guard-both")
    assert status == 400  # S1 block beats S10 reroute


def test_builtin_block_skips_the_guard_model(gh, seen):
    upstream, guard = seen
    status, _ = chat(gh, "DROP TABLE users", rid="guard-builtin")
    assert status == 400 and guard.requests == [] and upstream.requests == []
    assert audit(gh, "guard-builtin")[("llamaguard", "input")]["verdict"] == "skipped"


@pytest.mark.parametrize("trigger", ["slow-guard", "boom-guard", "garbled"])
def test_guard_failure_closed_refuses(gh, seen, trigger):
    upstream, _ = seen
    rid = f"guard-closed-{trigger}"
    status, body = chat(gh, trigger, rid=rid)
    assert status == 503 and body["error"]["code"] == "guardrail_unavailable"
    assert upstream.requests == []
    assert audit(gh, rid)[("llamaguard", "input")]["verdict"] == "skipped"


@pytest.mark.parametrize("trigger", ["slow-guard", "boom-guard", "garbled"])
def test_guard_failure_open_lets_through_and_says_skipped(gh, seen, trigger):
    upstream, _ = seen
    rid = f"guard-open-{trigger}"
    status, _ = chat(gh, trigger, key=BOB_KEY, rid=rid)
    assert status == 200 and len(upstream.requests) == 1
    v = audit(gh, rid)[("llamaguard-open", "input")]
    assert v["verdict"] == "skipped", "a check that did not run is never recorded as passed"


# ---- on answers ----------------------------------------------------------------------------------


def test_output_guard_sees_the_answer_and_passes_it(gh, seen):
    upstream, guard = seen
    status, body = chat(gh, "hello there", key=CAROL_KEY)
    assert status == 200 and body["choices"][0]["message"]["content"] == "echo: hello there"
    turns = guard.last.json()["messages"]
    assert turns[-1]["role"] == "assistant" and "echo: hello there" in json.dumps(turns[-1])


def test_output_guard_blocks_an_unsafe_answer(gh, seen):
    upstream, guard = seen
    status, body = chat(gh, "please say hurt", key=CAROL_KEY, rid="guard-out-block")
    assert status == 400 and body["error"]["code"] == "guardrail_blocked"
    assert "answer" in body["error"]["message"] and "echo" not in body["error"]["message"]
    assert len(upstream.requests) == 1 and len(guard.requests) == 1  # the prompt itself was not judged
    v = audit(gh, "guard-out-block")[("llamaguard-out", "output")]
    assert (v["verdict"], v["action"]) == ("match", "block")


def test_output_guard_holds_a_stream_until_it_passes(gh, seen):
    status, text = chat(gh, "one two three", key=CAROL_KEY, stream=True)
    assert status == 200
    content = "".join(json.loads(ln[6:])["choices"][0]["delta"].get("content") or ""
                      for ln in text.splitlines() if ln.startswith("data: {"))
    assert content == "echo: one two three" and text.rstrip().endswith("[DONE]")
    status, text = chat(gh, "please say hurt", key=CAROL_KEY, stream=True)
    assert status == 200 and "echo" not in text and "hurt" not in text  # nothing of the answer went out
    assert '"finish_reason":"content_filter"' in text and "guardrail_blocked" in text


def test_output_guard_down_closed_refuses_the_answer(gh, seen):
    status, body = chat(gh, "boom-guard", key=CAROL_KEY)
    assert status == 503 and body["error"]["code"] == "guardrail_unavailable"
