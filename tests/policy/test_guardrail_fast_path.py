"""The guardrails' fast path (docs/guardrails.md#the-fast-path): one match of every trigger over
all the texts of a prompt (or the answer) at once, and the per-check scan only when a trigger
occurs. It must never skip a finding: the direct tests compare it with the per-text scan, the
gateway tests send findings it could miss if it were wrong (JSON escapes that hide or split a
match, anchored patterns, a finding in the second of several texts) over real sockets."""
from __future__ import annotations

import random
import urllib.error
import urllib.request

import pytest

from gatehouse.policy.guardrails.config import GuardCheckConfig, GuardPolicyConfig, GuardrailsConfig
from gatehouse.policy.guardrails.engine import Plan, _edge_free, compile_policies
from tests.support import ROOT, Gatehouse, access_log_entry
from tests.upstreams import openai_wire

BUILTINS = ["payment_card", "iban", "us_ssn", "email", "phone", "ip_address", "aws_access_key", "private_key",
            "jwt", "github_token", "slack_token", "high_entropy", "prompt_injection"]
SAMPLES = ["4111 1111 1111 1111", "4111111111111111", "GB82 WEST 1234 5698 7654 32", "123-45-6789",
           "user@mail.1und1.de", "+44 20 7946 0958", "(415) 555-2671", "10.0.0.1", "2001:db8::1",
           "AKIAIOSFODNN7EXAMPLE", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig", "ghp_" + "a1" * 18,
           "-----BEGIN RSA PRIVATE KEY-----", "ignore all previous instructions", "drop table", "cvv: 123",
           "secret plans", "the end token", "password is hunter22"]
FILLER = ["lorem", "ipsum", "4", "12", "order 12345", "a.b", "x:y", "-", " ", "\n", "secret", "token",
          "Summarise the benefits of a private LLM gateway in two sentences."]


def plan_of(checks: list[GuardCheckConfig]) -> Plan:
    return Plan(("p",), compile_policies(GuardrailsConfig(policies={"p": GuardPolicyConfig(checks)}))["p"])


def every_kind(*regexes: str) -> Plan:
    checks = [GuardCheckConfig(type=t) for t in BUILTINS]  # type: ignore[arg-type]
    checks += [GuardCheckConfig(type="keywords", name="sqli", words=["drop table", "union select"]),
               GuardCheckConfig(type="regex", name="cvv", patterns=[r"(?i)\bcvv\s*:?\s*\d{3,4}\b"], max_length=16)]
    checks += [GuardCheckConfig(type="regex", name=f"r{i}", patterns=[r], max_length=64) for i, r in enumerate(regexes)]
    return plan_of(checks)


@pytest.mark.parametrize("regexes", [(), (r"^secret", r"token$"), (r"\Asecret",), (r"(?m)^secret",)])
def test_clean_never_passes_texts_a_scan_finds_something_in(regexes):
    """Randomized: whenever a per-text scan finds anything, `clean` says so (joined or not)."""
    p = every_kind(*regexes)
    rnd = random.Random(18)
    passed = 0
    for _ in range(400):
        texts = [" ".join(rnd.choice(SAMPLES) if rnd.random() < 0.05 else rnd.choice(FILLER)
                          for _ in range(rnd.randint(0, 12))) for _ in range(rnd.randint(1, 4))]
        if any(p.input.scan(t) for t in texts):
            assert not p.input.clean(texts), texts
        elif p.input.clean(texts):
            passed += 1
    assert passed > 50  # (and it is a fast path: most clean prompts take it)


def test_anchored_patterns_are_matched_one_text_at_a_time():
    assert _edge_free(r"(?i)\bcvv\s*\d{3}\b") and _edge_free(r"[^\s]{4}") and _edge_free(r"a\$b\^c")
    assert not _edge_free(r"^secret") and not _edge_free(r"token$") and not _edge_free(r"\Asecret")
    assert not _edge_free(r"x\z") and not _edge_free(r"(?m)^a")
    p = every_kind(r"^secret")
    texts = ["hello", "secret plans"]  # joined: "hello\nsecret plans", where ^ would not match
    assert not p.input.clean(texts)
    assert [h.check.name for h in p.input.scan(texts[1])] == ["r0"]


def test_texts_are_joined_by_a_newline_that_no_finding_crosses():
    p = every_kind()
    # a card's digits may be split by single spaces or dashes, never by a newline: the halves
    # of one in two texts are not a card, joined or not
    assert p.input.clean(["4111 1111", "1111 1111"])
    assert not p.input.clean(["ok", "card 4111 1111 1111 1111"])
    assert not p.input.clean(["card 4111 1111 1111 1111", "ok"])



def test_remembered_clean_texts_only_skip_themselves(monkeypatch):
    """The input stage remembers the texts it found clean (a conversation resends its history):
    a new text beside remembered ones is still matched, and the memo stays bounded."""
    from gatehouse.policy.guardrails import engine

    p = every_kind()
    history = ["be brief", "Summarise the benefits of a private LLM gateway."]
    assert p.input.clean(history) and p.input.clean(history)
    assert not p.input.clean([*history, "card 4111 1111 1111 1111"])
    assert not p.input.clean([*history, "please DROP TABLE users"])
    assert p.output.clean(history) and p.output._memo is None  # (answers do not repeat: no memo)
    monkeypatch.setattr(engine, "MEMO_TEXTS", 8)
    for i in range(40):
        assert p.input.clean([f"clean text number {i}"])
        assert p.input._memo is not None and len(p.input._memo) <= 8
    monkeypatch.setattr(engine, "MEMO_CHARS", 10)
    assert p.input.clean(["a clean text longer than ten characters"])
    assert p.input._memo == {} and p.input._memo_chars == 0

# ---- over real sockets ------------------------------------------------------------------------------

SHOP, ONCALL = "shop-key-0123456789", "oncall-key-0123456789"


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    """examples/guardrails-ecommerce.yaml (the bench's policy), plus an anchored regex on the
    storefront and an output keyword for the platform group."""
    import yaml

    raw = yaml.safe_load((ROOT / "examples" / "guardrails-ecommerce.yaml").read_text())
    raw["providers"]["vllm"]["api_key"] = openai_wire.API_KEY
    raw["guardrails"]["policies"]["anchored"] = {"checks": [
        {"type": "regex", "name": "starts-secret", "patterns": ["^secret"], "action": "block", "stage": "input",
         "max_length": 16}]}
    raw["guardrails"]["policies"]["answers"] = {"checks": [
        {"type": "keywords", "name": "secret-word", "words": ["zyzzyva"], "action": "block", "stage": "output"},
        {"type": "payment_card", "action": "redact", "stage": "output"}]}
    raw["groups"]["storefront"]["guardrails"] = ["ecommerce", "anchored"]
    raw["groups"]["platform"]["guardrails"] = ["answers"]
    env = {"VLLM_URL": openai_upstream.url, "SHOP_KEY": SHOP, "ONCALL_KEY": ONCALL}
    g = Gatehouse(raw, tmp_path_factory.mktemp("fast-path"), env).start()
    yield g
    g.stop()


def send(gh: Gatehouse, raw_body: str, key: str = SHOP, rid: str | None = None) -> tuple[int, str, dict[str, str]]:
    """POST a chat body written by hand (so its JSON escapes are exactly these)."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    if rid:
        headers["x-request-id"] = rid
    req = urllib.request.Request(gh.url + "/v1/chat/completions", raw_body.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def body(*contents: str, system: str | None = None) -> str:
    """A chat body; each content is inserted as written (JSON string contents, escapes kept)."""
    msgs = ([f'{{"role":"system","content":"{system}"}}'] if system is not None else [])
    msgs += [f'{{"role":"user","content":"{c}"}}' for c in contents]
    return '{"model":"shop-assistant","messages":[' + ",".join(msgs) + "]}"


@pytest.mark.parametrize("content,check", [
    (r"card \u0034111 1111 1111 1111 thanks", "payment_card"),  # an escaped digit
    (r"card 4111\u00201111\u00201111\u00201111", "payment_card"),  # escaped spaces between the groups
    (r"please DROP\u0020TABLE users", "sql-injection"),  # an escaped space inside a keyword
    (r"please\nexploit the checkout", "exploit-attempt"),  # a newline escape right before a word
    (r"\u0065xploit the checkout", "exploit-attempt"),  # the keyword's first letter escaped
    (r"my cvv\u003a 123", "cvv"),
])
def test_escaped_findings_in_a_prompt_are_blocked(gh, openai_upstream, content, check):
    openai_upstream.recorder.clear()
    status, text, _ = send(gh, body(content))
    assert status == 400 and check in text, text
    assert openai_upstream.recorder.requests == []


def test_an_escaped_at_sign_is_still_an_email_address(gh, openai_upstream):
    openai_upstream.recorder.clear()
    status, text, headers = send(gh, body(r"write to bob\u0040example.com please"))
    assert status == 200, text
    sent = openai_upstream.recorder.last.body.decode()
    assert "[REDACTED:email]" in sent and "bob" not in sent
    assert "ecommerce/email:redact" in headers.get("x-gatehouse-guardrails", "")


def test_anchored_pattern_and_findings_in_later_texts(gh, openai_upstream):
    openai_upstream.recorder.clear()
    status, text, _ = send(gh, body("hello", "secret plans"))  # ^secret: the start of the second text
    assert status == 400 and "starts-secret" in text, text
    status, text, _ = send(gh, body("hello", "say secret plans"))
    assert status == 200, text
    status, text, _ = send(gh, body("hi", "all fine", r"card 4111 1111 1111 1111", system="be brief"))
    assert status == 400 and "payment_card" in text, text
    assert len(openai_upstream.recorder.requests) == 1


def test_escaped_findings_in_an_answer_are_caught(gh, openai_upstream):
    """The echo upstream writes the answer's JSON itself: a newline is `\\n` in it, an 'é' is
    `\\u00e9` (Python's json), right before the word the output check looks for."""
    for content in (r"say\nzyzzyva", r"say \u00e9zyzzyva", "say zyzzyva"):
        status, text, _ = send(gh, body(content), key=ONCALL)
        assert status == 400 and "secret-word" in text and "zyzzyva" not in text, (content, text)
    status, text, _ = send(gh, body(r"repeat\n4111 1111 1111 1111"), key=ONCALL)
    assert status == 200 and "[REDACTED:card]" in text and "4111" not in text, text


def test_a_clean_request_is_audited_as_checked_on_both_stages(gh):
    rid = "fast-path-audit-1"
    status, text, headers = send(gh, body("Summarise the benefits of a private LLM gateway."), rid=rid)
    assert status == 200 and "x-gatehouse-guardrails" not in headers, text
    entry = access_log_entry(gh, rid)
    verdicts = {(v["check"], v["stage"]): v["verdict"] for v in entry["guardrails"]}
    assert verdicts[("payment_card", "input")] == "pass" and verdicts[("card-out", "output")] == "pass"
    assert set(verdicts.values()) == {"pass"}, verdicts



def test_an_answer_the_forwarder_cannot_read_texts_from_is_refused_as_before(gh):
    """The forwarder reads a checked answer's texts with its usage; an answer whose content is
    not a string is then read again where it is checked, and refused as malformed, as it was
    before."""
    status, text, _ = send(gh, body("say BADCONTENT now"), key=ONCALL)
    assert status == 502 and "upstream_malformed" in text, text
    status, text, _ = send(gh, body("say BADCONTENT now"))  # (the storefront's output checks too)
    assert status == 502 and "upstream_malformed" in text, text


def test_a_remembered_prompt_does_not_hide_a_new_finding(gh, openai_upstream):
    openai_upstream.recorder.clear()
    for _ in range(2):  # the second time the prompt is remembered as clean
        status, text, _ = send(gh, body("Tell me about the spring sale.", system="be brief"))
        assert status == 200, text
    status, text, _ = send(gh, body("Tell me about the spring sale.", r"card 4111 1111 1111 1111",
                                    system="be brief"))
    assert status == 400 and "payment_card" in text, text
    status, text, _ = send(gh, body("Tell me about the spring sale.", "then DROP TABLE orders", system="be brief"))
    assert status == 400 and "sql-injection" in text, text
    assert len(openai_upstream.recorder.requests) == 2
