"""Compliance routing per deployment and from guardrail checks, over real sockets
(docs/policy-routing.md#per-deployment-classes, #guardrail-reroute-checks): a model's
deployments may receive different classes, and load balancing, retries and fallbacks keep to
those that may receive the request's; a guardrail `reroute` check raises the request's class,
and compliance routing then sends it to the private model (or refuses it). The managed test
upstream's request log proves the data never reached it."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from gatehouse.config import ConfigError, from_mapping
from tests.conftest import ALICE_KEY, BOB_KEY
from tests.provider_fixtures import ollama_upstream  # noqa: F401 - a fixture
from tests.support import Gatehouse
from tests.upstreams import openai_wire

CARD = "4111 1111 1111 1111"  # Luhn-valid
MRN = "MRN-204518"  # a medical record number: only the guardrail's regex knows it
CAROL_KEY = "carol-secret-key-3"
COMPLIANCE = {
    "classes": ["public", "internal", "pci", "phi"],
    "detectors": {"payment_card": "pci"},
    "policies": {"pci": {"reroute": "local"}, "phi": {"reroute": "local"}},
}


@pytest.fixture(scope="module")
def gh(openai_upstream, ollama_upstream, tmp_path_factory):  # noqa: F811
    oa_dep = {"provider": "oa", "model": "up-chat", "data_classes": ["public", "internal"]}
    ol_dep = {"provider": "ol", "model": "llama3.2:latest", "private": True}
    cfg = {
        "providers": {
            "oa": {"type": "openai", "base_url": openai_upstream.url + "/v1", "api_key": openai_wire.API_KEY},
            "ol": {"type": "ollama", "base_url": ollama_upstream.url},
            "dead": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"},
        },
        "models": [
            # a private model with one managed burst deployment: public over both (weighted), pci never
            {"name": "mixed", "private": True, "routing": {"strategy": "weighted"},
             "deployments": [oa_dep, ol_dep]},
            {"name": "gpt", "deployments": [{"provider": "oa", "model": "up-chat"}]},
            {"name": "local", "private": True, "deployments": [ol_dep]},
            # private, but each deployment may receive only public and internal: pci goes by policy
            {"name": "burst", "private": True, "deployments": [oa_dep, {**oa_dep, "model": "up-chat-2"}]},
            # private, but down: its fallback is managed; a phi request must not fall back there
            {"name": "down", "private": True, "fallbacks": ["gpt"],
             "deployments": [{"provider": "dead", "model": "x"}]},
        ],
        "compliance": COMPLIANCE,
        "guardrails": {"policies": {
            "clinic": {"checks": [{"type": "regex", "name": "mrn", "patterns": [r"\bMRN-\d{6}\b"],
                                   "action": "reroute", "stage": "input", "data_class": "phi"}]},
            "shop": {"checks": [{"type": "keywords", "name": "confidential", "words": ["confidential"],
                                 "action": "reroute", "stage": "input"}]},  # default: the top class
        }},
        "groups": {"clinic": {"models": ["*"], "guardrails": ["clinic"]},
                   "health": {"models": ["*"], "data_class": "phi"},
                   "shop": {"models": ["*"], "guardrails": ["shop"]}},
        "consumers": {"alice": {"group": "clinic", "keys": [ALICE_KEY]}, "bob": {"group": "health", "keys": [BOB_KEY]},
                      "carol": {"group": "shop", "keys": [CAROL_KEY]}},
        "metrics": {"token": "m-token"},
    }
    g = Gatehouse(cfg, tmp_path_factory.mktemp("gh-compliance-deps")).start()
    yield g
    g.stop()


@pytest.fixture
def seen(openai_upstream, ollama_upstream):  # noqa: F811
    for srv in (openai_upstream, ollama_upstream):
        srv.recorder.clear()
    return {"oa": openai_upstream.recorder, "ol": ollama_upstream.recorder}


def post(gh: Gatehouse, body: dict[str, Any], key: str = ALICE_KEY,
         path: str = "/v1/chat/completions") -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(gh.url + path, json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def chat(model: str, text: str, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


def sent(recorder: Any) -> str:
    return "\n".join(r.body.decode() for r in recorder.requests)


def test_load_balancing_keeps_a_class_to_the_deployments_that_may_receive_it(gh, seen):
    for i in range(6):
        status, headers, body = post(gh, chat("mixed", f"card {CARD} #{i}"), key=CAROL_KEY)
        assert status == 200, body
        assert headers["x-gatehouse-data-class"] == "pci"
        assert json.loads(body)["model"] == "mixed", "served by the model asked for: its private deployment"
    assert seen["oa"].requests == [] and len(seen["ol"].requests) == 6
    for i in range(4):  # public requests are balanced over both deployments
        status, headers, _ = post(gh, chat("mixed", f"hello #{i}"), key=CAROL_KEY)
        assert status == 200 and headers["x-gatehouse-data-class"] == "public"
    assert len(seen["oa"].requests) >= 1 and len(seen["ol"].requests) >= 7
    assert len(seen["oa"].requests) + len(seen["ol"].requests) == 10


def test_when_no_deployment_may_receive_the_class_its_policy_applies(gh, seen):
    status, headers, body = post(gh, chat("burst", f"card {CARD}"), key=CAROL_KEY)
    assert status == 200, body
    assert headers["x-gatehouse-data-class"] == "pci" and json.loads(body)["model"] == "local"
    assert seen["oa"].requests == []
    status, headers, body = post(gh, chat("burst", "hello"), key=CAROL_KEY)
    assert status == 200 and json.loads(body)["model"] == "burst" and len(seen["oa"].requests) == 1


def test_a_phi_group_never_reaches_a_managed_deployment_through_fallbacks(gh, seen):
    status, _, body = post(gh, chat("down", "hello"), key=BOB_KEY)
    assert status in (502, 503), body  # the private deployment is down; the managed fallback may not be used
    assert seen["oa"].requests == []
    status, _, body = post(gh, chat("down", "hello"), key=CAROL_KEY)  # a public request falls back
    assert status == 200 and json.loads(body)["model"] == "gpt", body
    assert len(seen["oa"].requests) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_guardrail_reroute_check_raises_the_class_and_the_private_model_serves(gh, seen, stream):
    status, headers, body = post(gh, chat("gpt", f"summarise the chart of {MRN}", stream))
    assert status == 200, body
    assert headers["x-gatehouse-data-class"] == "phi"
    assert seen["oa"].requests == [] and MRN not in sent(seen["oa"])
    assert MRN in sent(seen["ol"]), "served by the private model"
    assert '"model":"local"' in body.replace(" ", "")
    status, headers, body = post(gh, chat("gpt", "what is a medical record number?"))
    assert status == 200 and headers["x-gatehouse-data-class"] == "public"
    assert len(seen["oa"].requests) == 1


def test_a_reroute_check_without_a_class_raises_to_the_most_sensitive_and_counts_once(gh, seen):
    def scrape() -> dict[str, float]:
        req = urllib.request.Request(gh.url + "/metrics", headers={"authorization": "Bearer m-token"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
        return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                if ln.startswith("gatehouse_compliance_decisions_total{")}

    before = scrape()
    status, headers, body = post(gh, chat("gpt", "this is confidential"), key=CAROL_KEY)
    assert status == 200, body
    assert headers["x-gatehouse-data-class"] == "phi" and json.loads(body)["model"] == "local"
    assert seen["oa"].requests == []
    after = scrape()
    grown = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
    assert grown == {'gatehouse_compliance_decisions_total{action="reroute",data_class="phi",'
                     'reason="confidential"}': 1.0}


DENY = {**COMPLIANCE, "policies": {"pci": {"reroute": "local"}, "phi": "deny"}}


def test_a_guardrail_class_with_a_deny_policy_is_refused_before_any_upstream(openai_upstream, tmp_path):
    openai_upstream.recorder.clear()
    cfg = {
        "providers": {"oa": {"type": "openai", "base_url": openai_upstream.url + "/v1",
                             "api_key": openai_wire.API_KEY}},
        "models": [{"name": "gpt", "deployments": [{"provider": "oa", "model": "up-chat"}]},
                   {"name": "local", "private": True, "deployments": [{"provider": "oa", "model": "up-chat"}]}],
        "compliance": DENY,
        "guardrails": {"policies": {"clinic": {"checks": [
            {"type": "regex", "name": "mrn", "patterns": [r"\bMRN-\d{6}\b"], "action": "reroute",
             "stage": "input", "data_class": "phi"}]}}},
        "groups": {"clinic": {"models": ["*"], "guardrails": ["clinic"]}},
        "consumers": {"alice": {"group": "clinic", "keys": [ALICE_KEY]}},
    }
    g = Gatehouse(cfg, tmp_path).start()
    try:
        status, _, body = post(g, chat("gpt", f"chart {MRN}"))
        assert status == 403, body
        err = json.loads(body)["error"]
        assert err["code"] == "data_class_denied" and "'phi'" in err["message"] and MRN not in body
        assert openai_upstream.recorder.requests == []
    finally:
        g.stop()


def test_a_virtual_models_semantic_signal_never_sees_a_class_its_model_may_not_receive(openai_upstream,
                                                                                         ollama_upstream,  # noqa: F811
                                                                                         tmp_path):
    cfg = {
        "providers": {"oa": {"type": "openai", "base_url": openai_upstream.url + "/v1", "api_key": openai_wire.API_KEY},
                      "ol": {"type": "ollama", "base_url": ollama_upstream.url}},
        "models": [{"name": "gpt", "deployments": [{"provider": "oa", "model": "up-chat"}]},
                   {"name": "local", "private": True, "deployments": [{"provider": "ol", "model": "llama3.2:latest"}]},
                   {"name": "embed", "embeddings": True, "deployments": [{"provider": "oa", "model": "up-embed"}]}],
        "compliance": COMPLIANCE,
        "routers": {"auto": {"default": "gpt", "semantic": {"model": "embed", "min_similarity": 0.99,
                                                            "routes": {"local": ["summarise this contract"]}}}},
        "groups": {"g": {"models": ["*"]}},
        "consumers": {"alice": {"group": "g", "keys": [ALICE_KEY]}},
    }
    g = Gatehouse(cfg, tmp_path).start()
    try:
        openai_upstream.recorder.clear()
        status, headers, body = post(g, chat("auto", f"charge card {CARD}"))
        assert status == 200, body
        assert headers["x-gatehouse-data-class"] == "pci" and json.loads(body)["model"] == "local"
        assert openai_upstream.recorder.requests == [], "neither the embedding nor the chat went to the managed upstream"
        status, headers, body = post(g, chat("auto", "what is the weather like?"))
        assert status == 200 and json.loads(body)["model"] == "gpt", body
        paths = [r.path for r in openai_upstream.recorder.requests]  # (the centroids are embedded on first use)
        assert set(paths[:-1]) == {"/v1/embeddings"} and paths[-1] == "/v1/chat/completions", paths
    finally:
        g.stop()


BASE: dict[str, Any] = {
    "providers": {"oa": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}},
    "models": [{"name": "m", "deployments": [{"provider": "oa", "model": "m"}]},
               {"name": "p", "private": True, "deployments": [{"provider": "oa", "model": "m"}]}],
    "compliance": {"classes": ["public", "internal", "phi"], "policies": {"phi": {"reroute": "p"}}},
}


def guard(check: dict[str, Any]) -> dict[str, Any]:
    return {"guardrails": {"policies": {"g": {"checks": [check]}}}}


@pytest.mark.parametrize(("patch", "message"), [
    ({"models": [{"name": "m", "deployments": [{"provider": "oa", "model": "m", "data_classes": ["secret"]}]},
                 BASE["models"][1]]},
     r"models\[0\]\.deployments\[0\]\.data_classes: unknown data class 'secret'"),
    ({"models": [{"name": "m", "deployments": [{"provider": "oa", "model": "m", "data_classes": ["phi"]}]},
                 BASE["models"][1]]},
     r"models\[0\]\.deployments\[0\]\.data_classes: a deployment that receives 'phi' .* add public, internal"),
    ({"models": [{"name": "m", "deployments": [{"provider": "oa", "model": "m"}]},
                 {"name": "p", "private": True, "deployments": [
                     {"provider": "oa", "model": "m", "data_classes": ["public"]}]}]},
     r"compliance\.policies\.phi\.reroute: model 'p' may not receive class 'phi'"),
    (guard({"type": "keywords", "words": ["x"], "action": "block", "data_class": "phi"}),
     r"guardrails\.policies\.g\.checks\[0\]\.data_class: only for a check whose action is reroute"),
    (guard({"type": "keywords", "words": ["x"], "action": "reroute", "stage": "output", "data_class": "phi"}),
     r"guardrails\.policies\.g\.checks\[0\]\.data_class: only for a check on prompts"),
    (guard({"type": "keywords", "words": ["x"], "action": "reroute", "data_class": "pci"}),
     r"guardrails\.policies\.g\.checks\[0\]\.data_class: unknown data class 'pci'"),
])
def test_deployment_classes_and_guardrail_classes_are_checked_at_load(patch, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping({**BASE, **patch})


def test_a_private_deployment_makes_a_model_a_valid_reroute_target():
    cfg = from_mapping({**BASE, "models": [
        BASE["models"][0],
        {"name": "p", "deployments": [{"provider": "oa", "model": "m", "private": True}]}]})
    assert cfg.models[1].deployments[0].private
