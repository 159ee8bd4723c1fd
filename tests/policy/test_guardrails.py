"""Guardrails over real sockets: every ingress dialect, streamed and not, block and redact, on
prompts (before any upstream call) and on answers (docs/guardrails.md)."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY
from tests.provider_fixtures import ollama_upstream  # noqa: F401 - a fixture
from tests.support import Gatehouse, access_log_entry
from tests.upstreams import anthropic_wire, openai_wire

CARD = "4111 1111 1111 1111"
# The card number in any spacing, not a "4111" inside a float, a hex request id or a timestamp
# (logs and metrics are full of those): where the text itself must never appear.
CARD_TEXT = re.compile(r"(?<![0-9A-Za-z.])4111[ -]?1111")
POLICIES = {
    "shop": {"checks": [
        {"type": "keywords", "name": "sqli", "words": ["drop table", "union select"], "action": "block"},
        {"type": "payment_card", "action": "redact", "stage": "input"},
        {"type": "regex", "name": "cvv", "patterns": [r"(?i)\bcvv2?\s*:?\s*\d{3,4}\b"], "action": "redact",
         "stage": "input"},
        {"type": "email", "action": "flag"},
        {"type": "us_ssn", "action": "reroute", "stage": "input"},
        {"type": "phone", "action": "block", "stage": "input"},
    ]},
    "answers": {"checks": [
        {"type": "payment_card", "action": "redact", "stage": "output"},
        {"type": "keywords", "name": "secret-word", "words": ["zyzzyva"], "action": "block", "stage": "output"},
    ]},
}


@pytest.fixture(scope="module")
def gh(openai_upstream, anthropic_upstream, ollama_upstream, tmp_path_factory):  # noqa: F811
    oa = {"type": "openai", "base_url": openai_upstream.url + "/v1", "api_key": openai_wire.API_KEY}
    an = {"type": "anthropic", "base_url": anthropic_upstream.url, "api_key": anthropic_wire.API_KEY}
    ol = {"type": "ollama", "base_url": ollama_upstream.url}
    models: list[dict[str, Any]] = []
    for out in ("", "-out"):
        extra = {"guardrails": ["answers"]} if out else {}
        models += [
            {"name": "oa" + out, "deployments": [{"provider": "oa", "model": "up-chat"}], **extra},
            {"name": "an" + out, "deployments": [{"provider": "an", "model": "claude-up"}], **extra},
            {"name": "ol" + out, "deployments": [{"provider": "ol", "model": "llama3.2:latest"}], **extra},
        ]
    models += [
        {"name": "oa-embed", "embeddings": True, "deployments": [{"provider": "oa", "model": "up-embed"}]},
        {"name": "ol-embed", "embeddings": True, "deployments": [{"provider": "ol", "model": "nomic-embed-text"}]},
    ]
    cfg = {
        "providers": {"oa": oa, "an": an, "ol": ol},
        "models": models,
        "guardrails": {"policies": POLICIES},
        "groups": {"shop": {"models": ["*"], "guardrails": ["shop"]}, "open": {"models": ["*"]}},
        "consumers": {"alice": {"group": "shop", "keys": [ALICE_KEY]}, "bob": {"group": "open", "keys": [BOB_KEY]}},
        "metrics": {"token": "m-token"},
        "admin": {"key": ADMIN_KEY},
    }
    g = Gatehouse(cfg, tmp_path_factory.mktemp("gh-guardrails")).start()
    yield g
    g.stop()


@pytest.fixture
def upstreams(openai_upstream, anthropic_upstream, ollama_upstream):  # noqa: F811
    for srv in (openai_upstream, anthropic_upstream, ollama_upstream):
        srv.recorder.clear()
    return {"oa": openai_upstream.recorder, "an": anthropic_upstream.recorder, "ol": ollama_upstream.recorder}


def post(gh: Gatehouse, path: str, body: dict[str, Any], key: str = ALICE_KEY) -> tuple[int, str]:
    req = urllib.request.Request(gh.url + path, json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json",
                                          "anthropic-version": "2023-06-01"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def msgs(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# (name, path, model family, upstream, body(text, model, stream), streams?)
SURFACES = {
    "openai-chat": ("/v1/chat/completions", "oa", lambda t, m, s: {"model": m, "messages": msgs(t), "stream": s}),
    "openai-completions": ("/v1/completions", "oa", lambda t, m, s: {"model": m, "prompt": t, "stream": s}),
    "openai-embeddings": ("/v1/embeddings", "oa", lambda t, m, s: {"model": m, "input": [t]}),
    "anthropic": ("/v1/messages", "an", lambda t, m, s: {"model": m, "max_tokens": 100, "messages": msgs(t),
                                                         "stream": s}),
    "ollama-chat": ("/api/chat", "ol", lambda t, m, s: {"model": m, "messages": msgs(t), "stream": s}),
    "ollama-generate": ("/api/generate", "ol", lambda t, m, s: {"model": m, "prompt": t, "stream": s}),
    "ollama-embed": ("/api/embed", "ol", lambda t, m, s: {"model": m, "input": t}),
    "responses": ("/v1/responses", "oa", lambda t, m, s: {"model": m, "input": t, "stream": s}),
}
EMBEDDINGS = {"openai-embeddings", "ollama-embed"}
CASES = [(name, stream) for name in SURFACES for stream in ((False,) if name in EMBEDDINGS else (False, True))]


def model_for(name: str, family: str, out: str = "") -> str:
    return f"{family}-embed" if name in EMBEDDINGS else family + out


@pytest.mark.parametrize("surface,stream", CASES)
def test_blocked_prompt_never_reaches_the_upstream(gh, upstreams, surface, stream):
    path, family, body = SURFACES[surface]
    status, text = post(gh, path, body("please DROP TABLE users; -- thanks", model_for(surface, family), stream))
    assert status == 400, text
    assert "sqli" in text and "guardrail_blocked" in text
    assert "drop table" not in text.lower()
    assert upstreams[family].requests == []


@pytest.mark.parametrize("surface,stream", CASES)
def test_redacted_prompt_arrives_masked(gh, upstreams, surface, stream):
    path, family, body = SURFACES[surface]
    status, text = post(gh, path, body(f"my card is {CARD} cvv: 123 ok", model_for(surface, family), stream))
    assert status == 200, text
    sent = upstreams[family].last.body.decode()
    assert "[REDACTED:card]" in sent and "[REDACTED:cvv]" in sent
    assert "4111" not in sent and "123 ok" not in sent.replace("[REDACTED:cvv] ok", "")
    if surface not in EMBEDDINGS:  # the echo upstream answers with the masked prompt
        assert "4111" not in text and "REDACTED:card" in text


def test_unguarded_group_passes_the_prompt_verbatim(gh, upstreams):
    status, _ = post(gh, "/v1/chat/completions", {"model": "oa", "messages": msgs(f"card {CARD}")}, key=BOB_KEY)
    assert status == 200
    assert CARD in upstreams["oa"].last.body.decode()


@pytest.mark.parametrize("text", [
    "order 1234 5678 1234 5678 shipped",  # 16 digits, Luhn-invalid: not a card
    "your order #5551234567 ships today",  # an order id that looks like a phone number
    "order id 20240615123456, ref ORD-555-123-4567",
])
def test_false_positives_are_not_flagged(gh, upstreams, text):
    status, body = post(gh, "/v1/chat/completions", {"model": "oa", "messages": msgs(text)})
    assert status == 200, body
    assert text in upstreams["oa"].last.body.decode()


def test_a_real_phone_number_is_blocked(gh, upstreams):
    status, body = post(gh, "/v1/chat/completions", {"model": "oa", "messages": msgs("call me at +1 415 555 2671")})
    assert status == 400 and "phone" in body and "415" not in body
    assert upstreams["oa"].requests == []


def test_system_prompt_and_tool_results_are_checked(gh, upstreams):
    body = {"model": "an", "max_tokens": 50, "system": f"billing card {CARD}",
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "db",
                                                            "input": {}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                       "content": "row: DROP TABLE x"}]}]}
    status, text = post(gh, "/v1/messages", body)
    assert status == 400 and "sqli" in text
    body["messages"][2]["content"][0]["content"] = "row ok"
    status, text = post(gh, "/v1/messages", body)
    assert status == 200, text
    sent = upstreams["an"].last.body.decode()
    assert "[REDACTED:card]" in sent and "4111" not in sent


# ---- answers ------------------------------------------------------------------------------------

CHAT_SURFACES = [n for n in SURFACES if n not in EMBEDDINGS]


@pytest.mark.parametrize("surface", CHAT_SURFACES)
@pytest.mark.parametrize("stream", [False, True])
def test_answer_is_redacted(gh, upstreams, surface, stream):
    path, family, body = SURFACES[surface]
    status, text = post(gh, path, body(f"repeat {CARD} please", model_for(surface, family, "-out"), stream),
                        key=BOB_KEY)
    assert status == 200, text
    assert CARD in upstreams[family].last.body.decode()  # no input policy for bob: the prompt went as is
    assert "4111" not in text and "[REDACTED:card]" in text


@pytest.mark.parametrize("surface", CHAT_SURFACES)
def test_answer_block_unary_is_an_error(gh, upstreams, surface):
    path, family, body = SURFACES[surface]
    status, text = post(gh, path, body("say zyzzyva now", model_for(surface, family, "-out"), False), key=BOB_KEY)
    assert status == 400, text
    assert "guardrail_blocked" in text and "secret-word" in text and "zyzzyva" not in text


@pytest.mark.parametrize("surface", CHAT_SURFACES)
def test_answer_block_ends_the_stream_in_dialect(gh, upstreams, surface):
    path, family, body = SURFACES[surface]
    status, text = post(gh, path, body("say zyzzyva now", model_for(surface, family, "-out"), True), key=BOB_KEY)
    assert status == 200  # the stream had started
    assert "zyzzyva" not in text and "secret-word" in text
    if surface.startswith("openai"):
        assert '"finish_reason":"content_filter"' in text and "[DONE]" not in text
        assert text.rstrip().endswith("}") and '"error"' in text.rsplit("data: ", 1)[1]
    elif surface == "anthropic":
        assert "event: error" in text and "message_stop" not in text
    elif surface.startswith("ollama"):
        last = json.loads(text.strip().splitlines()[-1])
        assert "error" in last
    else:
        assert "error" in text


@pytest.mark.parametrize("surface", ["openai-chat", "anthropic"])
def test_clean_checked_answer_passes_through_as_the_upstream_sent_it(gh, upstreams, surface):
    """Output checks on a unary answer of the client's own dialect read the forwarded bytes: a
    clean answer is relayed as is (the test upstream's JSON spacing, which the gateway's own
    renderer never writes), a redacted one is rendered by the gateway."""
    path, family, body = SURFACES[surface]
    status, clean = post(gh, path, body("hello there", model_for(surface, family, "-out"), False), key=BOB_KEY)
    assert status == 200 and '"echo: hello there"' in clean and '": ' in clean, clean
    _, plain = post(gh, path, body("hello there", model_for(surface, family), False), key=BOB_KEY)
    same = {"model": "-", "created": 0}  # (the model's public name differs; a second may pass)
    assert json.loads(clean) | same == json.loads(plain) | same
    status, redacted = post(gh, path, body(f"repeat {CARD}", model_for(surface, family, "-out"), False), key=BOB_KEY)
    assert status == 200 and "[REDACTED:card]" in redacted and '": ' not in redacted, redacted


def test_card_split_across_stream_chunks_is_caught(gh, upstreams):
    # The test upstream streams word by word: the card arrives in four chunks.
    status, text = post(gh, "/v1/chat/completions", {"model": "oa-out", "messages": msgs(f"a {CARD} b"),
                                                     "stream": True}, key=BOB_KEY)
    assert status == 200
    content = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                      for line in text.splitlines() if line.startswith("data: {"))
    assert content == "echo: a [REDACTED:card] b"


def test_metrics_count_verdicts_without_matched_text(gh, upstreams):
    post(gh, "/v1/chat/completions", {"model": "oa", "messages": msgs("hello DROP TABLE t")})
    req = urllib.request.Request(gh.url + "/metrics", headers={"authorization": "Bearer m-token"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        metrics = resp.read().decode()
    lines = [ln for ln in metrics.splitlines() if ln.startswith("gatehouse_guardrail_verdicts_total{")]
    assert any('guardrail="sqli"' in ln and 'verdict="match"' in ln and 'action="block"' in ln
               and 'stage="input"' in ln and 'group="shop"' in ln for ln in lines), lines
    assert any('guardrail="payment_card"' in ln and 'verdict="pass"' in ln for ln in lines)
    assert "DROP" not in metrics and not CARD_TEXT.search(metrics)


def test_access_log_records_the_verdicts_never_the_text(gh, upstreams):
    rid = "guard-audit-1"
    req = urllib.request.Request(gh.url + "/v1/chat/completions", json.dumps(
        {"model": "oa", "messages": msgs(f"DROP TABLE x; card {CARD}; mail a.b@example.com")}).encode(),
        method="POST", headers={"authorization": f"Bearer {ALICE_KEY}", "content-type": "application/json",
                                "x-request-id": rid})
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(req, timeout=10)
    entry = access_log_entry(gh, rid)  # (polled: written off the loop; a loaded machine is slow)
    verdicts = {(v["check"], v["stage"]): (v["verdict"], v["action"]) for v in entry["guardrails"]}
    assert verdicts[("sqli", "input")] == ("match", "block")
    assert verdicts[("payment_card", "input")] == ("match", "redact")
    assert verdicts[("email", "input")] == ("match", "flag")  # every text checked, even after a block
    assert verdicts[("us_ssn", "input")] == ("pass", "reroute")
    assert verdicts[("phone", "input")] == ("pass", "block")
    assert all(v[0] == "skipped" for (_, stage), v in verdicts.items() if stage == "output")  # no answer came
    assert verdicts[("email", "output")] == ("skipped", "flag")
    assert entry["status"] == 400 and entry["error"] == "guardrail_blocked"
    logs = gh.logs()
    assert not CARD_TEXT.search(logs) and "DROP TABLE" not in logs and "a.b@example.com" not in logs


def test_store_groups_take_policies_from_the_admin_api(gh, upstreams):
    def admin(path: str, body: dict[str, Any]) -> tuple[int, str]:
        return post(gh, path, body, key=ADMIN_KEY)

    status, text = admin("/admin/groups", {"name": "late-shop", "models": ["*"], "guardrails": ["nope"]})
    assert status == 400 and "nope" in text
    assert admin("/admin/groups", {"name": "late-shop", "models": ["*"], "guardrails": ["shop"]})[0] == 201
    assert admin("/admin/consumers", {"name": "late", "group": "late-shop"})[0] == 201
    key = json.loads(admin("/admin/keys", {"consumer": "late"})[1])["key"]
    status, text = post(gh, "/v1/chat/completions", {"model": "oa", "messages": msgs("DROP TABLE t")}, key=key)
    assert status == 400 and "sqli" in text
    assert upstreams["oa"].requests == []


def test_no_policy_configured_means_no_guardrail_step(gatehouse, recorder):
    """The shared gateway of conftest has no guardrails: nothing is checked, nothing counted."""
    status, _ = post(gatehouse, "/v1/chat/completions", {"model": "chat", "messages": msgs("DROP TABLE t")})
    assert status == 200 and "DROP TABLE t" in recorder.last.body.decode()
    req = urllib.request.Request(gatehouse.url + "/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert b"gatehouse_guardrail" not in resp.read()


def test_count_tokens_of_a_guarded_prompt_stays_in_the_gateway(gh, upstreams):
    body = {"model": "an", "messages": msgs(f"card {CARD}")}
    req = urllib.request.Request(gh.url + "/v1/messages/count_tokens", json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {ALICE_KEY}", "content-type": "application/json",
                                          "anthropic-version": "2023-06-01"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["x-gatehouse-token-count"] == "estimated"
    assert upstreams["an"].requests == []
    req.headers["Authorization"] = f"Bearer {BOB_KEY}"  # no policy for bob's group: counted upstream
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["x-gatehouse-token-count"] == "exact"
    assert len(upstreams["an"].requests) == 1
