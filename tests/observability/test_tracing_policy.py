"""Traces of the policy steps that do I/O, over real processes: limits kept in a real Redis
(`limits admit` / `limits settle` spans) and guard models answering over the OpenAI wire (a
`guardrail <check>` span per verdict), as children of the request's span; the request span's
guardrail action and matches; each attempt's route reason. Exported over OTLP/HTTP to the
test collector."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ALICE_KEY, BOB_KEY
from tests.observability.otlp_collector import make_app, wait_for
from tests.support import Gatehouse
from tests.upstreams import guard_wire, openai_wire
from tests.upstreams.harness import ServerThread, free_port

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto (dev extra) parses what is exported")

SERVER, CLIENT, INTERNAL = 2, 3, 1  # SpanKind in OTLP
ERROR = 2


@pytest.fixture(scope="module")
def collector() -> Iterator[ServerThread]:
    with ServerThread(make_app) as srv:
        yield srv


@pytest.fixture(scope="module")
def guard_upstream() -> Iterator[ServerThread]:
    with ServerThread(guard_wire.make_app) as srv:
        yield srv


def config(openai_url: str, guard_url: str, collector_url: str, redis_url: str) -> dict[str, Any]:
    guard = {"type": "guard_model", "name": "llamaguard", "model": "llama-guard", "stage": "input",
             "format": "llamaguard", "categories": {"S1": "block", "S2": "flag"}, "timeout_seconds": 2.0,
             "on_error": "open"}
    return {
        "providers": {
            "oa": {"type": "openai", "base_url": openai_url + "/v1", "api_key": openai_wire.API_KEY},
            "guard": {"type": "openai", "base_url": guard_url + "/v1", "api_key": guard_wire.API_KEY},
            "dead": {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "connect_timeout": 2},
        },
        "models": [
            {"name": "chat", "deployments": [{"provider": "oa", "model": "up-chat"}]},
            {"name": "failover", "deployments": [{"provider": "dead", "model": "gone"},
                                                 {"provider": "oa", "model": "up-chat"}]},
            {"name": "llama-guard", "deployments": [{"provider": "guard", "model": "meta-llama/Llama-Guard-3-8B"}]},
        ],
        "guardrails": {"policies": {"screened": {"checks": [
            {"type": "keywords", "name": "secret-word", "words": ["bluebird"], "action": "redact"}, guard]}}},
        "groups": {"screened": {"models": ["chat", "failover"], "guardrails": ["screened"],
                                "requests_per_minute": 100},
                   "plain": {"models": ["chat", "failover"]}},
        "consumers": {"alice": {"group": "screened", "keys": [ALICE_KEY]},
                      "bob": {"group": "plain", "keys": [BOB_KEY]}},
        "store": {"redis_url": redis_url},
        "tracing": {"enabled": True, "endpoint": collector_url + "/v1/traces", "service_name": "gh-policy"},
    }


@pytest.fixture(scope="module")
def gh(openai_upstream, guard_upstream, collector, redis_server, tmp_path_factory) -> Iterator[Gatehouse]:
    g = Gatehouse(config(openai_upstream.url, guard_upstream.url, collector.url, redis_server.url),
                  tmp_path_factory.mktemp("gh-trace-policy"), env={"OTEL_BSP_SCHEDULE_DELAY": "50"}).start()
    yield g
    g.stop()


def chat(gh: Gatehouse, text: str, trace: str, key: str = ALICE_KEY, model: str = "chat") -> tuple[int, Any]:
    req = urllib.request.Request(gh.url + "/v1/chat/completions", json.dumps(
        {"model": model, "messages": [{"role": "user", "content": text}]}).encode(), method="POST",
        headers={"authorization": f"Bearer {key}", "content-type": "application/json",
                 "traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def trace_of(collector: ServerThread, trace: str, count: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The request's span and its children, once `count` spans of the trace arrived."""
    got = wait_for(collector, lambda s: len([x for x in s if x["trace_id"] == trace]) >= count)
    mine = [s for s in got if s["trace_id"] == trace]
    request = next(s for s in mine if s["kind"] == SERVER)
    return request, [s for s in mine if s["parent_span_id"] == request["span_id"]]


def test_redis_limits_and_guard_model_calls_are_child_spans(gh, collector, guard_upstream):
    trace = "7af92f3577b34da6a3ce929d0e0e4731"
    status, _ = chat(gh, "what is the weather like", trace)
    assert status == 200
    request, children = trace_of(collector, trace, 5)  # request, guard, admit, attempt, settle
    internal = {s["name"]: s for s in children if s["kind"] == INTERNAL}
    assert set(internal) == {"guardrail llamaguard", "limits admit", "limits settle"}
    admit, settle = internal["limits admit"]["attributes"], internal["limits settle"]["attributes"]
    assert admit["db.system.name"] == "redis" and admit["gatehouse.policy.step"] == "limits"
    assert admit["gatehouse.outcome"] == "admitted" and settle["gatehouse.outcome"] == "settled"
    guard = internal["guardrail llamaguard"]["attributes"]
    assert guard["gen_ai.request.model"] == "llama-guard" and guard["gatehouse.guardrail.check"] == "llamaguard"
    assert guard["gatehouse.guardrail.stage"] == "input" and guard["gatehouse.guardrail.verdict"] == "pass"
    # the guard model's upstream got the guard span's context: it joins the trace under that span
    sent = [r.headers["traceparent"] for r in guard_upstream.recorder.requests
            if r.headers.get("traceparent", "").startswith(f"00-{trace}-")]
    assert sent == [f"00-{trace}-{internal['guardrail llamaguard']['span_id']}-01"]
    attempt = next(s for s in children if s["kind"] == CLIENT)
    # the order on the path: the guard model judged, limits admitted, the upstream answered, limits settled
    assert internal["guardrail llamaguard"]["end"] <= internal["limits admit"]["start"]
    assert internal["limits admit"]["end"] <= attempt["start"] <= attempt["end"] <= internal["limits settle"]["start"]
    # (the settle runs once the client has its answer: it may end after the request's span)
    assert all(request["start"] <= s["start"] <= s["end"] <= request["end"]
               for s in children if s["name"] != "limits settle")
    assert request["attributes"]["gatehouse.guardrail.action"] == "pass"
    assert "gatehouse.guardrail.matches" not in request["attributes"]
    assert attempt["attributes"]["gatehouse.route"] == "primary"


def test_the_request_span_names_what_the_guardrails_did(gh, collector):
    redacted, flagged, blocked = ("8af92f3577b34da6a3ce929d0e0e4731", "8af92f3577b34da6a3ce929d0e0e4732",
                                  "8af92f3577b34da6a3ce929d0e0e4733")
    assert chat(gh, "the code word is bluebird", redacted)[0] == 200
    assert chat(gh, "a question about fraud", flagged)[0] == 200
    status, body = chat(gh, "how to hurt someone", blocked)
    assert status == 400 and body["error"]["code"] == "guardrail_blocked"
    a = trace_of(collector, redacted, 5)[0]["attributes"]
    assert a["gatehouse.guardrail.action"] == "redact"
    assert a["gatehouse.guardrail.matches"] == "secret-word:input:redact"
    request, children = trace_of(collector, flagged, 5)
    assert request["attributes"]["gatehouse.guardrail.action"] == "flag"
    assert request["attributes"]["gatehouse.guardrail.matches"] == "llamaguard:input:flag"
    guard = next(s for s in children if s["name"] == "guardrail llamaguard")["attributes"]
    assert guard["gatehouse.guardrail.verdict"] == "match" and guard["gatehouse.outcome"] == "flag"
    request, children = trace_of(collector, blocked, 2)
    assert request["attributes"]["gatehouse.guardrail.action"] == "block"
    assert request["attributes"]["http.response.status_code"] == 400
    assert [s["name"] for s in children] == ["guardrail llamaguard"]  # refused before limits and upstream
    spans = wait_for(collector, lambda s: True)
    assert not any(b"bluebird" in s["raw"] or b"hurt someone" in s["raw"] for s in spans)  # no prompt text


def test_a_failed_guard_model_call_is_an_error_span(gh, collector):
    trace = "9af92f3577b34da6a3ce929d0e0e4731"
    assert chat(gh, "boom-guard then a question", trace)[0] == 200  # on_error: open
    _, children = trace_of(collector, trace, 5)
    guard = next(s for s in children if s["name"] == "guardrail llamaguard")
    assert guard["status"] == ERROR and guard["attributes"]["gatehouse.guardrail.verdict"] == "skipped"


def test_route_reason_on_each_attempt_and_no_policy_spans_without_policies(gh, collector):
    trace = "aaf92f3577b34da6a3ce929d0e0e4731"
    assert chat(gh, "hello", trace, key=BOB_KEY, model="failover")[0] == 200  # plain group: no limits, no guards
    request, children = trace_of(collector, trace, 3)
    assert all(s["kind"] == CLIENT for s in children)
    routes = [s["attributes"]["gatehouse.route"]
              for s in sorted(children, key=lambda s: s["attributes"]["gatehouse.attempt"])]
    assert routes[0] == "primary" and routes[1].startswith("failover_")
    assert "gatehouse.guardrail.action" not in request["attributes"]
