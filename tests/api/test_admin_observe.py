"""The admin routes the UI's Models, Playground and Audit pages read: guardrail events in the
audit log (matches only, never the matched text, written off the request path),
GET /admin/requests/{id} (route, tokens, cost, guardrail verdicts of one request) and
GET /admin/deployments (breaker state, ejection, in-flight, recent latency)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatehouse.policy.guardrail_events import GuardrailEvents
from gatehouse.store.sql import SqlStore
from tests.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY, base_config
from tests.support import Gatehouse

SECRET_WORD = "zyzzyva"
EMAIL = "carol.secret@example.com"


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    cfg = base_config(openai_upstream.url)
    cfg["metering"] = {"flush_seconds": 0.05}
    cfg["guardrails"] = {"policies": {"watch": {"checks": [
        {"type": "keywords", "name": "codeword", "words": [SECRET_WORD], "action": "flag"},
        {"type": "email", "action": "redact", "stage": "input"},
    ]}}}
    cfg["groups"]["dev"]["guardrails"] = ["watch"]
    cfg["providers"]["dead"] = {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x",
                                "failure_threshold": 1, "ejection_seconds": 300}
    cfg["models"].append({"name": "flaky", "deployments": [{"provider": "dead", "model": "gone"},
                                                           {"provider": "echo", "model": "echo"}]})
    g = Gatehouse(cfg, tmp_path_factory.mktemp("observe")).start()
    yield g
    g.stop()


def get(gh: Gatehouse, path: str, **params: Any) -> httpx.Response:
    return httpx.get(gh.url + path, params=params, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)


def chat(gh: Gatehouse, key: str, model: str, text: str) -> httpx.Response:
    r = httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                   json={"model": model, "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r


def eventually(fetch: Callable[[], httpx.Response], ok: Callable[[httpx.Response], bool]) -> httpx.Response:
    deadline = time.monotonic() + 10
    while True:
        r = fetch()
        if ok(r):
            return r
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)


def test_guardrail_matches_are_audit_events_without_the_text(gh):
    matched = chat(gh, ALICE_KEY, "echo", f"say {SECRET_WORD} to {EMAIL}")
    rid = matched.headers["x-request-id"]
    # the caller is told which checks matched (input and, for a unary answer, output), never the text
    assert matched.headers["x-gatehouse-guardrails"] == "watch/codeword:flag, watch/email:redact"
    quiet_reply = chat(gh, ALICE_KEY, "echo", "nothing to see")
    quiet = quiet_reply.headers["x-request-id"]
    assert "x-gatehouse-guardrails" not in quiet_reply.headers
    r = eventually(lambda: get(gh, "/admin/audit", kind="guardrail", request_id=rid), lambda r: len(r.json()["data"]) >= 3)
    rows = r.json()["data"]
    assert SECRET_WORD not in r.text and EMAIL not in r.text and "carol.secret" not in r.text
    got = sorted((e["action"], e["target"], e["detail"]["stage"]) for e in rows)
    # the email is redacted before the echo answers, so only the code word comes back in the answer
    assert got == [("guardrail.flag", "watch/codeword", "input"), ("guardrail.flag", "watch/codeword", "output"),
                   ("guardrail.redact", "watch/email", "input")]
    for e in rows:
        assert e["actor"] == "guardrails" and e["request_id"] == rid
        assert {k: e["detail"][k] for k in ("policy", "model", "group", "consumer")} == {
            "policy": "watch", "model": "echo", "group": "dev", "consumer": "alice"}
    assert get(gh, "/admin/audit", request_id=quiet).json()["data"] == []  # a request that matched nothing
    assert all(e["action"].startswith("guardrail.") for e in get(gh, "/admin/audit", kind="guardrail").json()["data"])
    assert not any(e["action"].startswith("guardrail.") for e in get(gh, "/admin/audit", kind="admin").json()["data"])
    bad = get(gh, "/admin/audit", kind="everything")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "kind"

    summary = eventually(lambda: get(gh, f"/admin/requests/{rid}"), lambda r: r.status_code == 200).json()
    assert summary["route"] == "echo/echo" and summary["attempts"][0]["status"] == 200
    assert summary["input_tokens"] > 0 and summary["output_tokens"] > 0 and summary["cost_usd"] == 0
    assert sorted((g["action"], g["check"], g["stage"]) for g in summary["guardrails"]) == [
        ("flag", "codeword", "input"), ("flag", "codeword", "output"), ("redact", "email", "input")]
    missing = get(gh, "/admin/requests/no-such-request")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_request"


def test_a_stream_carries_the_input_verdicts_in_its_headers(gh):
    with httpx.stream("POST", gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {ALICE_KEY}",
                      "Origin": "http://ui.example"}, timeout=10,
                      json={"model": "echo", "stream": True, "messages": [{"role": "user", "content": f"write {EMAIL}"}]}) as r:
        assert r.status_code == 200
        assert r.headers["x-gatehouse-guardrails"] == "watch/email:redact"
        assert "x-gatehouse-guardrails" in r.headers["access-control-expose-headers"]  # a browser script may read it
        assert EMAIL not in r.read().decode()


def test_a_request_is_found_by_the_clients_own_request_id(gh):
    r = httpx.post(gh.url + "/v1/chat/completions", timeout=10,
                   headers={"Authorization": f"Bearer {ALICE_KEY}", "x-request-id": "client-chosen-42"},
                   json={"model": "echo", "messages": [{"role": "user", "content": f"write {EMAIL}"}]})
    assert r.status_code == 200 and r.headers["x-request-id"] == "client-chosen-42"
    summary = eventually(lambda: get(gh, "/admin/requests/client-chosen-42"),
                         lambda r: r.status_code == 200 and bool(r.json()["guardrails"])).json()
    assert summary["route"] == "echo/echo"
    assert [(g["check"], g["action"]) for g in summary["guardrails"]] == [("email", "redact")]


def test_deployments_show_breaker_state_and_recent_latency(gh):
    chat(gh, BOB_KEY, "flaky", "hello")  # the dead deployment fails once (threshold 1): ejected; echo answers
    r = eventually(lambda: get(gh, "/admin/deployments", window=600),
                   lambda r: any(d["recent"] for m in r.json()["models"] if m["name"] == "flaky" for d in m["deployments"]))
    flaky = next(m for m in r.json()["models"] if m["name"] == "flaky")
    dead, echo = flaky["deployments"]
    assert (dead["provider"], dead["model"], dead["state"]) == ("dead", "gone", "ejected")
    assert 200 < dead["retry_in_seconds"] <= 300 and dead["consecutive_failures"] == 1 and dead["ejections"] == 1
    assert (echo["provider"], echo["state"], echo["retry_in_seconds"]) == ("echo", "healthy", 0.0)
    assert echo["recent"]["requests"] >= 1 and echo["recent"]["errors"] == 0 and echo["recent"]["latency_ms_avg"] >= 0
    assert "127.0.0.1" not in r.text and "api_key" not in r.text  # never hosts or credentials
    up = next(m for m in r.json()["models"] if m["name"] == "chat")["deployments"][0]
    assert up["provider_connections"]["in_use"] == 0 and up["provider_connections"]["max"] > 0
    bad = get(gh, "/admin/deployments", window="soon")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "window"


async def test_a_failing_store_loses_the_events_not_the_request(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    store = SqlStore(f"sqlite:///{tmp_path / 'no-tables.db'}")  # never migrated: the insert fails
    events = GuardrailEvents(store, flush_seconds=0.01)
    row = {"id": "x" * 32, "ts": time.time(), "actor": "guardrails", "source": None, "action": "guardrail.block",
           "target": "p/c", "detail": "{}", "request_id": "r"}
    with caplog.at_level(logging.ERROR, "gatehouse.audit"):
        events._add([row])
        await events.close()
    assert "could not store 1 guardrail events" in caplog.text
    await store.close()
