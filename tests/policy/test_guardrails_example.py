"""examples/guardrails-ecommerce.yaml served for real: the storefront's prompts are checked,
the platform team's are not. The vLLM provider points at the OpenAI-wire test upstream."""
from __future__ import annotations

import httpx
import pytest
import yaml

from tests.support import ROOT, Gatehouse
from tests.upstreams import openai_wire

SHOP, ONCALL = "shop-key-0123456789", "oncall-key-0123456789"


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    raw = yaml.safe_load((ROOT / "examples" / "guardrails-ecommerce.yaml").read_text())
    raw["providers"]["vllm"]["api_key"] = openai_wire.API_KEY
    env = {"VLLM_URL": openai_upstream.url, "SHOP_KEY": SHOP, "ONCALL_KEY": ONCALL}
    g = Gatehouse(raw, tmp_path_factory.mktemp("shop"), env).start()
    yield g
    g.stop()


def chat(gh: Gatehouse, key: str, text: str, model: str = "shop-assistant", **extra) -> httpx.Response:
    return httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": text}], **extra}, timeout=10)


@pytest.mark.parametrize("text,check", [
    ("charge 4111 1111 1111 1111 please", "payment_card"),
    ("the CVV is 123", "cvv"),
    ("my password: hunter22", "password"),
    ("SELECT name FROM users UNION SELECT password FROM admins", "sql-injection"),
    ("how do I bypass the fraud check", "exploit-attempt"),
    ("use key AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
])
def test_storefront_prompts_are_refused(gh, recorder, text, check):
    r = chat(gh, SHOP, text)
    assert r.status_code == 400 and r.json()["error"]["code"] == "guardrail_blocked"
    assert check in r.json()["error"]["message"]
    assert recorder.requests == []


def test_storefront_contact_details_are_masked(gh, recorder):
    r = chat(gh, SHOP, "reach me at jane@example.com or +1 415 555 2671 about order #5551234567", stream=True)
    assert r.status_code == 200
    sent = recorder.last.json()["messages"][0]["content"]
    assert sent == "reach me at [REDACTED:email] or [REDACTED:phone] about order #5551234567"


def test_platform_group_is_not_guarded(gh, recorder):
    assert chat(gh, ONCALL, "the CVV is 123").status_code == 200
    assert recorder.last.json()["messages"][0]["content"] == "the CVV is 123"
