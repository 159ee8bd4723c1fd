"""Compliance routing over real sockets (docs/policy-routing.md): a prompt's data class (detector
findings, the group's class, a header that only raises it) keeps it away from models that may not
receive it: rerouted to the private model or refused in the client's dialect, naming the class
and never the text; the managed test upstreams' request logs prove it never left."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from gatehouse.config import ConfigError, from_mapping
from tests.conftest import ALICE_KEY, BOB_KEY
from tests.provider_fixtures import ollama_upstream  # noqa: F401 - a fixture
from tests.support import Gatehouse
from tests.upstreams import anthropic_wire, openai_wire

CARD = "4111 1111 1111 1111"  # Luhn-valid
NOT_A_CARD = "4111 1111 1111 1112"
SSN = "123-45-6789"
CAROL_KEY = "carol-secret-key-3"
COMPLIANCE = {
    "classes": ["public", "internal", "pii", "pci", "phi"],
    "detectors": {"payment_card": "pci", "us_ssn": "phi", "email": "pii"},
    "policies": {"pii": {"reroute": "local"}, "pci": {"reroute": "local"}, "phi": "deny"},
}


@pytest.fixture(scope="module")
def gh(openai_upstream, anthropic_upstream, ollama_upstream, tmp_path_factory):  # noqa: F811
    cfg = {
        "providers": {
            "oa": {"type": "openai", "base_url": openai_upstream.url + "/v1", "api_key": openai_wire.API_KEY},
            "an": {"type": "anthropic", "base_url": anthropic_upstream.url, "api_key": anthropic_wire.API_KEY},
            "ol": {"type": "ollama", "base_url": ollama_upstream.url},
        },
        "models": [
            {"name": "gpt", "deployments": [{"provider": "oa", "model": "up-chat"}]},
            {"name": "claude", "deployments": [{"provider": "an", "model": "claude-up"}]},
            {"name": "local", "private": True, "deployments": [{"provider": "ol", "model": "llama3.2:latest"}]},
            {"name": "gpt-embed", "embeddings": True, "deployments": [{"provider": "oa", "model": "up-embed"}]},
            {"name": "pii-ok", "data_classes": ["public", "internal", "pii"],
             "deployments": [{"provider": "oa", "model": "up-chat"}]},
        ],
        "compliance": COMPLIANCE,
        "metrics": {"token": "m-token"},
        "groups": {"shop": {"models": ["*"]}, "health": {"models": ["*"], "data_class": "phi"},
                   "hr": {"models": ["*"], "data_class": "pii", "default_model": "gpt"}},
        "consumers": {"alice": {"group": "shop", "keys": [ALICE_KEY]}, "bob": {"group": "health", "keys": [BOB_KEY]},
                      "carol": {"group": "hr", "keys": [CAROL_KEY]}},
    }
    g = Gatehouse(cfg, tmp_path_factory.mktemp("gh-compliance")).start()
    yield g
    g.stop()


@pytest.fixture
def seen(openai_upstream, anthropic_upstream, ollama_upstream):  # noqa: F811
    for srv in (openai_upstream, anthropic_upstream, ollama_upstream):
        srv.recorder.clear()
    return {"oa": openai_upstream.recorder, "an": anthropic_upstream.recorder, "ol": ollama_upstream.recorder}


def post(gh: Gatehouse, path: str, body: dict[str, Any], key: str = ALICE_KEY,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(gh.url + path, json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json",
                                          "anthropic-version": "2023-06-01", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def chat(model: str, text: str, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


def sent(recorder: Any) -> str:
    return "\n".join(r.body.decode() for r in recorder.requests)


@pytest.mark.parametrize("stream", [False, True])
def test_a_card_number_never_reaches_the_managed_upstream(gh, seen, stream):
    status, headers, body = post(gh, "/v1/chat/completions", chat("gpt", f"charge card {CARD} please", stream))
    assert status == 200, body
    assert headers["x-gatehouse-data-class"] == "pci"
    assert seen["oa"].requests == [] and CARD not in sent(seen["oa"])
    assert CARD in sent(seen["ol"]), "served by the private model"
    assert '"model":"local"' in body.replace(" ", "")


def test_every_ingress_is_rerouted(gh, seen):
    status, headers, body = post(gh, "/v1/messages", {"model": "claude", "max_tokens": 16,
                                                      "messages": [{"role": "user", "content": f"card {CARD}"}]})
    assert status == 200, body
    assert json.loads(body)["model"] == "local" and headers["x-gatehouse-data-class"] == "pci"
    status, headers, body = post(gh, "/api/chat", {**chat("gpt", f"card {CARD}"), "stream": False})
    assert status == 200, body
    assert headers["x-gatehouse-data-class"] == "pci"
    assert seen["an"].requests == [] and seen["oa"].requests == [] and len(seen["ol"].requests) == 2


def test_responses_api_and_embeddings_are_rerouted_too(gh, seen):
    status, headers, body = post(gh, "/v1/responses", {"model": "gpt", "input": f"card {CARD}", "store": False})
    assert status == 200, body
    assert headers["x-gatehouse-data-class"] == "pci" and json.loads(body)["model"] == "local"
    status, headers, body = post(gh, "/v1/embeddings", {"model": "gpt-embed", "input": [f"card {CARD}"]})
    assert status == 403 and "'pci'" in body, "no private embeddings model to reroute to: refused"
    assert seen["oa"].requests == [] and CARD in sent(seen["ol"])


def test_the_openai_sdk_responses_api_is_rerouted(gh, seen):
    import openai

    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    raw = client.responses.with_raw_response.create(model="gpt", input=f"card {CARD}", store=False)
    assert raw.headers["x-gatehouse-data-class"] == "pci" and raw.parse().model == "local"
    events = list(client.responses.create(model="gpt", input=f"card {CARD}", store=False, stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.model == "local"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.responses.create(model="gpt", input=f"ssn {SSN}", store=False)
    assert "'phi'" in str(denied.value) and SSN not in str(denied.value)
    assert seen["oa"].requests == [] and CARD in sent(seen["ol"])


def test_clean_prompts_and_allowed_classes_stay_where_asked(gh, seen):
    status, headers, body = post(gh, "/v1/chat/completions", chat("gpt", f"is {NOT_A_CARD} a card?"))
    assert status == 200, body
    assert headers["x-gatehouse-data-class"] == "public"
    status, headers, body = post(gh, "/v1/chat/completions", chat("pii-ok", "mail ann@example.com"))
    assert status == 200 and headers["x-gatehouse-data-class"] == "pii"
    status, headers, body = post(gh, "/v1/chat/completions", chat("local", f"card {CARD}"))
    assert status == 200 and "x-gatehouse-data-class" not in headers, "a private model's requests are not looked at"
    assert len(seen["oa"].requests) == 2 and len(seen["ol"].requests) == 1


def test_a_denied_class_is_refused_in_the_client_dialect_without_the_text(gh, seen):
    status, headers, body = post(gh, "/v1/chat/completions", chat("gpt", f"patient ssn {SSN}"))
    assert status == 403
    err = json.loads(body)["error"]
    assert err["code"] == "data_class_denied" and "'phi'" in err["message"] and SSN not in body
    status, _, body = post(gh, "/v1/messages", {"model": "claude", "max_tokens": 16,
                                                "messages": [{"role": "user", "content": f"ssn {SSN}"}]})
    assert status == 403 and json.loads(body)["type"] == "error" and "'phi'" in body and SSN not in body
    status, _, body = post(gh, "/api/chat", {**chat("gpt", f"ssn {SSN}"), "stream": False})
    assert status == 403 and "'phi'" in json.loads(body)["error"]
    assert seen["oa"].requests == [] and seen["an"].requests == [] and seen["ol"].requests == []


def test_the_group_class_and_the_header_raise_but_never_lower(gh, seen):
    status, _, body = post(gh, "/v1/chat/completions", chat("gpt", "hello"), key=BOB_KEY,
                           headers={"x-gatehouse-data-class": "public"})
    assert status == 403 and "'phi'" in body, "a phi group never reaches a managed model"
    status, headers, _ = post(gh, "/v1/chat/completions", chat("local", "hello"), key=BOB_KEY)
    assert status == 200
    status, headers, body = post(gh, "/v1/chat/completions", chat("gpt", "hello"),
                                 headers={"x-gatehouse-data-class": "pci"})
    assert status == 200 and headers["x-gatehouse-data-class"] == "pci" and '"model":"local"' in body.replace(" ", "")
    status, _, body = post(gh, "/v1/chat/completions", chat("gpt", "hello"), headers={"x-gatehouse-data-class": "x"})
    assert status == 400 and "Unknown data class 'x'" in body
    assert seen["oa"].requests == []


def test_default_model_and_compliance_together(gh, seen):
    status, headers, body = post(gh, "/v1/chat", {"messages": [{"role": "user", "content": "hi"}]}, key=CAROL_KEY)
    assert status == 200, body
    assert headers["x-gatehouse-data-class"] == "pii" and json.loads(body)["model"] == "local"
    assert seen["oa"].requests == []


def test_the_access_log_records_class_reason_and_action(gh, seen):
    status, _, _ = post(gh, "/v1/chat/completions", chat("gpt", f"card {CARD}"), headers={"x-request-id": "cr-log-1"})
    assert status == 200
    deadline = time.monotonic() + 5
    while "cr-log-1" not in gh.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    [entry] = [e for e in (json.loads(line) for line in gh.logs().splitlines() if line.startswith("{"))
               if e.get("client_request_id") == "cr-log-1"]
    assert entry["model"] == "local" and entry["provider"] == "ol"
    assert entry["compliance"] == {"data_class": "pci", "reason": "payment_card", "action": "reroute",
                                   "routed_from": "gpt"}
    assert CARD not in gh.logs()


def scrape(gh: Gatehouse) -> str:
    req = urllib.request.Request(gh.url + "/metrics", headers={"authorization": "Bearer m-token"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


def series(text: str, name: str) -> dict[str, float]:
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name + "{")}


def test_metrics_count_decisions_by_class_action_and_reason_without_text(gh, seen):
    before = series(scrape(gh), "gatehouse_compliance_decisions_total")
    assert post(gh, "/v1/chat/completions", chat("gpt", f"card {CARD}"))[0] == 200
    assert post(gh, "/v1/chat/completions", chat("gpt", f"card {CARD} again"))[0] == 200
    assert post(gh, "/v1/chat/completions", chat("gpt", f"ssn {SSN}"))[0] == 403
    assert post(gh, "/v1/chat/completions", chat("gpt", "hello"))[0] == 200
    text = scrape(gh)
    after = series(text, "gatehouse_compliance_decisions_total")

    def grew(labels: str) -> float:
        key = "gatehouse_compliance_decisions_total{" + labels + "}"
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew('action="reroute",data_class="pci",reason="payment_card"') == 2
    assert grew('action="deny",data_class="phi",reason="us_ssn"') == 1
    assert grew('action="pass",data_class="public",reason="default"') == 1
    assert CARD not in text and SSN not in text


def test_count_tokens_of_a_restricted_model_is_estimated_here(gh, seen):
    status, headers, body = post(gh, "/v1/messages/count_tokens", {
        "model": "claude", "messages": [{"role": "user", "content": f"card {CARD}"}]})
    assert status == 200 and headers["x-gatehouse-token-count"] == "estimated"
    assert seen["an"].requests == []


BASE: dict[str, Any] = {
    "providers": {"oa": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
    "models": [{"name": "m", "deployments": [{"provider": "oa", "model": "m"}]},
               {"name": "p", "private": True, "deployments": [{"provider": "oa", "model": "m"}]}],
}


@pytest.mark.parametrize(("patch", "message"), [
    ({"compliance": {**COMPLIANCE, "policies": {"pci": {"reroute": "m"}}}},
     r"compliance\.policies\.pci\.reroute: model 'm' may not receive class 'pci'"),
    ({"compliance": {**COMPLIANCE, "policies": {"pci": {"reroute": "nope"}}}},
     r"compliance\.policies\.pci\.reroute: unknown model 'nope'"),
    ({"compliance": {**COMPLIANCE, "detectors": {"payment_card": "secret"}}},
     r"compliance\.detectors\.payment_card: unknown data class 'secret'"),
    ({"compliance": {**COMPLIANCE, "detectors": {"dna": "phi"}}}, r"compliance\.detectors\.dna: unknown detector"),
    ({"groups": {"g": {"data_class": "pci"}}}, r"groups\.g\.data_class: unknown data class 'pci'"),
    ({"compliance": {**COMPLIANCE, "policies": {}},
      "models": [{"name": "m", "data_classes": ["public", "pci"], "deployments": [{"provider": "oa", "model": "m"}]}]},
     r"models\[0\]\.data_classes: .* add internal, pii"),
])
def test_compliance_is_checked_at_load(patch, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping({**BASE, **patch})
