"""Virtual models over real sockets (docs/policy-routing.md#virtual-models): `auto` rules send a
code question to the coder model, a long prompt to the long-context model, images to the vision
model; `cheapest` picks by the price book among the models able to serve the request; the
choice is in `x-gatehouse-routed-to` and the access log; access applies to both names."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from gatehouse.config import ConfigError, from_mapping
from tests.conftest import ALICE_KEY, BOB_KEY
from tests.support import Gatehouse
from tests.upstreams import openai_wire

PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAA"
       "AABJRU5ErkJggg==")
LONG = "lorem ipsum dolor sit amet " * 8000  # ~54k tokens by the gateway's estimate
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def model(name: str, price: tuple[float, float], window: int, caps: list[str]) -> dict[str, Any]:
    return {"name": name, "context_window": window, "capabilities": caps,
            "deployments": [{"provider": "oa", "model": "up-" + name, "input_per_mtok": price[0],
                             "output_per_mtok": price[1]}]}


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    cfg = {
        "providers": {"oa": {"type": "openai", "base_url": openai_upstream.url + "/v1", "api_key": openai_wire.API_KEY},
                      "dead": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
        "models": [model("cheap", (0.1, 0.4), 8000, []), model("coder", (1, 4), 32000, ["tools"]),
                   model("long", (2, 8), 200000, ["tools"]), model("vision", (3, 12), 128000, ["tools", "vision"]),
                   {"name": "embed", "embeddings": True, "deployments": [{"provider": "oa", "model": "up-embed"}]},
                   {"name": "embed-down", "embeddings": True, "deployments": [{"provider": "dead", "model": "e"}]}],
        "routers": {
            "auto": {"strategy": "rules", "default": "cheap", "rules": [
                {"keywords": ["python", "stack trace", "typescript"], "model": "coder"},
                {"regex": r"\bdef \w+\(", "model": "coder"},
                {"min_prompt_tokens": 20000, "model": "long"},
                {"images": True, "model": "vision"},
            ]},
            "near": {"default": "cheap", "semantic": {"model": "embed", "min_similarity": 0.99, "routes": {
                "coder": ["fix my segfault"], "long": ["summarise this contract", "summarise this lease"]}}},
            "labelled": {"default": "cheap", "classifier": {"model": "cheap", "timeout_seconds": 1,
                                                           "labels": {"code": "coder", "document": "long"}}},
            "near-down": {"default": "cheap", "semantic": {"model": "embed-down", "routes": {"coder": ["x"]}}},
            "thrifty": {"strategy": "cheapest", "candidates": ["vision", "long", "coder", "cheap"]},
            "premium": {"strategy": "best", "candidates": ["vision", "long", "coder", "cheap"],
                        "max_request_usd": 0.001},
        },
        "metrics": {"token": "m-token"},
        "groups": {"dev": {"models": ["*"], "default_model": "auto"},
                   "narrow": {"models": ["auto", "cheap", "long", "vision"]}},
        "consumers": {"alice": {"group": "dev", "keys": [ALICE_KEY]}, "bob": {"group": "narrow", "keys": [BOB_KEY]}},
    }
    g = Gatehouse(cfg, tmp_path_factory.mktemp("gh-virtual")).start()
    yield g
    g.stop()


def ask(gh: Gatehouse, body: dict[str, Any], key: str = ALICE_KEY, path: str = "/v1/chat/completions",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    req = urllib.request.Request(gh.url + path, json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json",
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read())


def user(content: Any, model: str = "auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


IMAGE = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]


@pytest.mark.parametrize(("content", "expected"), [
    ("why does this python loop never end?", "coder"),
    ("def total(xs):\n    return sum(xs)\nwhat is wrong?", "coder"),
    (LONG, "long"),
    (IMAGE, "vision"),
    ("what is the capital of France?", "cheap"),
])
def test_auto_rules(gh, openai_upstream, content, expected):
    openai_upstream.recorder.clear()
    status, headers, out = ask(gh, user(content))
    assert status == 200, out
    assert headers["x-gatehouse-routed-to"] == expected and out["model"] == expected
    assert openai_upstream.recorder.last.json()["model"] == "up-" + expected


@pytest.mark.parametrize(("body", "expected"), [
    (user("hello", "thrifty"), "cheap"),
    (user("hello", "thrifty", tools=[TOOL]), "coder"),
    (user(IMAGE, "thrifty"), "vision"),
    (user(LONG, "thrifty"), "long"),
    (user("hello", "thrifty", max_tokens=10000), "coder"),  # 8000-token window too small for cheap
])
def test_cheapest_able_model(gh, openai_upstream, body, expected):
    status, headers, out = ask(gh, body)
    assert status == 200, out
    assert headers["x-gatehouse-routed-to"] == expected


def test_anthropic_and_ollama_ingress(gh, openai_upstream):
    openai_upstream.recorder.clear()
    status, headers, out = ask(gh, {"model": "auto", "max_tokens": 32, "messages": [
        {"role": "user", "content": "a stack trace from my service"}]}, path="/v1/messages",
        headers={"anthropic-version": "2023-06-01"})
    assert status == 200 and out["type"] == "message", out
    assert headers["x-gatehouse-routed-to"] == "coder" and out["model"] == "coder"
    status, headers, out = ask(gh, {**user(IMAGE[0]["text"]), "stream": False}, path="/api/chat")
    assert status == 200 and out["done"] is True, out
    assert headers["x-gatehouse-routed-to"] == "cheap" and out["model"] == "cheap"
    assert [r.json()["model"] for r in openai_upstream.recorder.requests] == ["up-coder", "up-cheap"]


def test_virtual_models_are_listed_for_those_who_may_use_them(gh):
    def names(path: str, key: str) -> list[str]:
        req = urllib.request.Request(gh.url + path, headers={"authorization": f"Bearer {key}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.loads(resp.read())
        return [m.get("id") or m["name"] for m in body.get("data") or body["models"]]

    alice = names("/v1/models", ALICE_KEY)
    assert alice[:6] == ["cheap", "coder", "long", "vision", "embed", "embed-down"]
    assert sorted(alice[6:]) == ["auto", "labelled", "near", "near-down", "premium", "thrifty"]
    assert names("/v1/models", BOB_KEY) == ["cheap", "long", "vision", "auto"]
    req = urllib.request.Request(gh.url + "/v1/models/auto", headers={"authorization": f"Bearer {BOB_KEY}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["id"] == "auto"
    req = urllib.request.Request(gh.url + "/v1/models/thrifty", headers={"authorization": f"Bearer {BOB_KEY}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 404
    assert names("/api/tags", BOB_KEY) == ["cheap", "long", "vision", "auto"]


@pytest.mark.parametrize(("body", "headers", "expected"), [
    (user("hello", "premium"), {}, "cheap"),  # 500 output tokens priced: only cheap is within $0.001
    (user("hello", "premium", max_tokens=50), {}, "vision"),
    (user("hello", "premium", max_tokens=50), {"x-gatehouse-max-cost-usd": "0.0003"}, "coder"),
    (user("hello", "premium", max_tokens=50), {"x-gatehouse-max-cost-usd": "5"}, "vision"),  # never above the config
])
def test_best_within_the_cost_ceiling(gh, body, headers, expected):
    status, got, out = ask(gh, body, headers=headers)
    assert status == 200, out
    assert got["x-gatehouse-routed-to"] == expected


def test_best_refuses_a_bad_ceiling_and_one_nothing_fits(gh):
    status, _, out = ask(gh, user("hello", "premium"), headers={"x-gatehouse-max-cost-usd": "cheap"})
    assert status == 400 and "x-gatehouse-max-cost-usd" in out["error"]["message"]
    status, _, out = ask(gh, user("hello", "premium"), headers={"x-gatehouse-max-cost-usd": "0.0000001"})
    assert status == 400 and "at most $1e-07" in out["error"]["message"]


def test_semantic_signal_when_no_rule_decides(gh, openai_upstream):
    openai_upstream.recorder.clear()
    status, headers, out = ask(gh, user("fix my segfault", "near"), headers={"x-request-id": "vm-sem-1"})
    assert status == 200 and headers["x-gatehouse-routed-to"] == "coder", out
    embedded = [r.json()["input"] for r in openai_upstream.recorder.requests if r.path == "/v1/embeddings"]
    assert embedded == [["fix my segfault", "summarise this contract", "summarise this lease"],
                        ["fix my segfault"]], "centroids once, then the message"
    status, headers, _ = ask(gh, user("what is the weather like", "near"))
    assert status == 200 and headers["x-gatehouse-routed-to"] == "cheap", "too far from every route: the default"
    embedded = [r for r in openai_upstream.recorder.requests if r.path == "/v1/embeddings"]
    assert len(embedded) == 3, "centroids are kept"


def test_semantic_signal_failing_falls_back_to_the_default(gh):
    status, headers, out = ask(gh, user("x", "near-down"))
    assert status == 200 and headers["x-gatehouse-routed-to"] == "cheap", out


def test_classifier_label_when_nothing_else_decides(gh, openai_upstream):
    openai_upstream.recorder.clear()
    # the test upstream echoes the message: its answer carries the label the message names
    status, headers, out = ask(gh, user("this is a Document question", "labelled"))
    assert status == 200 and headers["x-gatehouse-routed-to"] == "long", out
    asked = openai_upstream.recorder.requests[0].json()
    assert asked["model"] == "up-cheap" and "one of these labels" in asked["messages"][0]["content"]
    status, headers, _ = ask(gh, user("no label here", "labelled"))
    assert status == 200 and headers["x-gatehouse-routed-to"] == "cheap"


def test_classifier_timeout_means_the_default_route(gh):
    t = time.monotonic()
    status, headers, out = ask(gh, user("SLOW code", "labelled"))  # the classifier's upstream takes 3 s
    assert status == 200 and headers["x-gatehouse-routed-to"] == "cheap", out
    assert time.monotonic() - t < 6  # the 1 s timeout, then the default's own (slow) answer


def test_responses_api_ingress(gh, openai_upstream):
    openai_upstream.recorder.clear()
    status, headers, out = ask(gh, {"model": "auto", "input": "a python question", "store": False},
                               path="/v1/responses")
    assert status == 200 and out["object"] == "response", out
    assert headers["x-gatehouse-routed-to"] == "coder" and out["model"] == "coder"
    assert openai_upstream.recorder.last.json()["model"] == "up-coder"


def test_cheapest_with_no_able_candidate_is_a_400(gh):
    status, _, out = ask(gh, user(LONG * 4, "thrifty", tools=[TOOL]))
    assert status == 400 and "No model behind 'thrifty'" in out["error"]["message"]


def test_access_applies_to_both_names(gh, openai_upstream):
    status, headers, out = ask(gh, user("why does this python loop never end?"), key=BOB_KEY)
    assert status == 200 and headers["x-gatehouse-routed-to"] == "cheap", "a rule to a model bob may not use is skipped"
    status, _, out = ask(gh, user("hello", "thrifty"), key=BOB_KEY)
    assert status == 403


def test_a_group_default_can_be_a_virtual_model_and_the_log_says_why(gh):
    status, headers, out = ask(gh, {"messages": [{"role": "user", "content": "a typescript question"}]},
                               path="/v1/chat", headers={"x-request-id": "vm-log-1"})
    assert status == 200 and headers["x-gatehouse-routed-to"] == "coder"
    deadline = time.monotonic() + 5
    while "vm-log-1" not in gh.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    [entry] = [e for e in (json.loads(line) for line in gh.logs().splitlines() if line.startswith("{"))
               if e.get("client_request_id") == "vm-log-1"]
    assert entry["model"] == "coder"
    assert entry["routing"] == {"virtual_model": "auto", "routed_to": "coder", "reason": "rule 0"}


BASE: dict[str, Any] = {
    "providers": {"oa": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
    "models": [{"name": "m", "deployments": [{"provider": "oa", "model": "m"}]}],
}


@pytest.mark.parametrize(("routers", "message"), [
    ({"m": {"default": "m"}}, r"routers\.m: a model \(or alias\) already has this name"),
    ({"auto": {"rules": [{"model": "m"}]}}, r"routers\.auto\.default: a rules router needs"),
    ({"auto": {"default": "m", "rules": [{"model": "x"}]}}, r"routers\.auto\.rules\[0\]\.model: unknown model 'x'"),
    ({"auto": {"default": "m", "rules": [{"model": "m", "regex": "(?<=a)b"}]}},
     r"routers\.auto\.rules\[0\]\.regex: not a valid RE2 pattern"),
    ({"c": {"strategy": "cheapest"}}, r"routers\.c\.candidates: cheapest needs at least one"),
    ({"s": {"default": "m", "semantic": {"model": "m", "routes": {"m": ["x"]}}}},
     r"routers\.s\.semantic\.model: 'm' is not a configured embeddings model"),
    ({"c": {"strategy": "cheapest", "candidates": ["m"], "max_request_usd": 1}},
     r"routers\.c\.max_request_usd: only for strategy best"),
    ({"c": {"strategy": "cheapest", "candidates": ["nope"]}}, r"routers\.c\.candidates\[0\]: unknown model 'nope'"),
])
def test_virtual_models_are_checked_at_load(routers, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping({**BASE, "routers": routers})


def test_metrics_count_each_choice_by_route_and_signal(gh):
    def scrape() -> dict[str, float]:
        req = urllib.request.Request(gh.url + "/metrics", headers={"authorization": "Bearer m-token"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
        return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                if ln.startswith("gatehouse_virtual_route_total{")}

    before = scrape()
    assert ask(gh, user("why does my python script fail?"))[0] == 200
    assert ask(gh, user("hello there"))[0] == 200
    assert ask(gh, user("hello", model="thrifty"))[0] == 200
    after = scrape()

    def grew(labels: str) -> float:
        key = "gatehouse_virtual_route_total{" + labels + "}"
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew('route="coder",router="auto",signal="rule"') == 1
    assert grew('route="cheap",router="auto",signal="default"') == 1
    assert grew('route="cheap",router="thrifty",signal="cheapest"') == 1


def test_the_openai_sdk_responses_api_reaches_a_virtual_model(gh):
    import openai

    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    raw = client.responses.with_raw_response.create(model="auto", input="my python script prints a stack trace",
                                                    store=False)
    assert raw.headers["x-gatehouse-routed-to"] == "coder" and raw.parse().model == "coder"
    raw = client.responses.with_raw_response.create(model="default", input="hello there", store=False)
    assert raw.headers["x-gatehouse-routed-to"] == "cheap", "the group's default is the virtual model"


def test_a_stored_conversation_routed_by_a_virtual_model_is_sent_once(gh, openai_upstream):
    status, _, first = ask(gh, {"model": "auto", "input": "hello there", "store": True}, path="/v1/responses")
    assert status == 200 and first["model"] == "cheap", first
    openai_upstream.recorder.clear()
    status, headers, second = ask(gh, {"model": "auto", "input": "and in python?", "store": True,
                                       "previous_response_id": first["id"]}, path="/v1/responses")
    assert status == 200 and headers["x-gatehouse-routed-to"] == "coder", second
    sent = openai_upstream.recorder.last.json()["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"], sent  # bound twice, expanded once
