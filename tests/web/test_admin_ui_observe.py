"""The admin UI's views of what the gateway did, in a real headless Chromium: the Models page
with each deployment's health (an ejected deployment next to a healthy one), the playground's
route, tokens, cost and guardrail verdicts per answer, and the Audit page's guardrail events
(filtered apart from admin actions, never the matched text)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import BOB_KEY, base_config
from tests.support import Gatehouse
from tests.upstreams.harness import ServerThread
from tests.web.test_admin_ui import browser, pytestmark, shot, sign_in, wait_until  # noqa: F401 - fixture, mark

CODE_WORD = "zyzzyva"


@pytest.fixture(scope="module")
def observed(openai_upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    cfg = base_config(openai_upstream.url)
    cfg["metering"] = {"flush_seconds": 0.05}
    cfg["guardrails"] = {"policies": {"watch": {"checks": [
        {"type": "keywords", "name": "codeword", "words": [CODE_WORD], "action": "flag"},
        {"type": "email", "action": "redact", "stage": "input"},
        {"type": "keywords", "name": "stopword", "words": ["forbidden-word"], "action": "block", "stage": "input"},
    ]}}}
    cfg["providers"]["dead"] = {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x",
                                "failure_threshold": 1, "ejection_seconds": 300}
    cfg["models"] += [
        {"name": "guarded", "guardrails": ["watch"], "deployments": [{"provider": "echo", "model": "echo"}]},
        {"name": "flaky", "deployments": [{"provider": "dead", "model": "gone"}, {"provider": "echo", "model": "echo"}]},
    ]
    gh = Gatehouse(cfg, tmp_path_factory.mktemp("ui-observe")).start()
    yield gh
    gh.stop()


def test_models_playground_and_audit_show_what_the_gateway_did(observed: Gatehouse, browser: Any) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    # (the browser logs a 401 before sign-in and a 404 while the playground waits for the ledger)
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"external request {r.url}") if not r.url.startswith(observed.url) else None)
    client = openai.OpenAI(base_url=observed.url + "/v1", api_key=BOB_KEY, max_retries=0)
    reply = client.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"  # the dead deployment failed over and is ejected now
    sign_in(page, observed.url)

    # Models: the ejected deployment and the healthy one, with load and the ledger's recent figures.
    page.goto(observed.url + "/ui#/models")
    page.wait_for_selector("[data-health='dead/gone'] .badge")
    assert "ejected" in (page.text_content("[data-health='dead/gone']") or "")
    assert page.query_selector("[data-health='dead/gone'] .state-ejected") is not None
    health = page.query_selector_all("[data-health='echo/echo'] .badge")
    assert health and all((h.text_content() or "") == "healthy" for h in health)

    def flaky_has_recent() -> bool:  # the ledger lands within a flush period
        page.goto(observed.url + "/ui#/models")
        page.reload()
        page.wait_for_selector("[data-health='dead/gone'] .badge")
        return "1 req, 0 err" in (page.text_content("#view") or "")
    wait_until(flaky_has_recent, 10.0)
    assert "127.0.0.1" not in (page.text_content("#view") or "")
    shot(page, "models-health")

    # Playground: route, tokens, cost and the guardrail verdicts of the answer.
    page.goto(observed.url + "/ui#/playground")
    page.select_option("#pg-model", "guarded")
    page.fill("#pg-prompt", f"the word is {CODE_WORD}, mail me at dana@example.com")
    page.click("#playground button[type=submit]")
    page.wait_for_selector("#pg-meta:has-text('tokens')")
    answer = page.text_content("#pg-answer") or ""
    assert answer.startswith("echo: the word is") and "dana@example.com" not in answer  # redacted on the way in
    page.wait_for_selector("#pg-route", timeout=15000)
    assert page.text_content("#pg-route") == "echo/echo"
    assert "in," in (page.text_content("#pg-tokens") or "") and (page.text_content("#pg-cost") or "").startswith("$")
    wait_until(lambda: "redact" in (page.text_content("#pg-guardrails") or ""), 10.0)
    verdicts = page.text_content("#pg-guardrails") or ""
    assert "watch/codeword (input)" in verdicts and "watch/codeword (output)" in verdicts and "watch/email (input)" in verdicts
    assert CODE_WORD not in verdicts and "dana@" not in verdicts
    shot(page, "playground-verdicts")
    # A blocked prompt: the error, and the block verdict (no upstream call, so no route).
    page.fill("#pg-prompt", "say forbidden-word")
    page.click("#playground button[type=submit]")
    page.wait_for_selector("#pg-meta:has-text('guardrail_blocked')")
    page.wait_for_selector("#pg-guardrails:has-text('watch/stopword (input)')", timeout=15000)
    assert page.text_content("#pg-route") == "—" and "block" in (page.text_content("#pg-guardrails") or "")
    assert "forbidden-word" not in (page.text_content("#pg-facts") or "")

    # Audit: guardrail events apart from admin actions (one made here).
    page.goto(observed.url + "/ui#/groups")
    page.fill("#group-name", "auditors")
    page.click("#create-group button[type=submit]")
    page.wait_for_selector("form[data-group=auditors]")
    page.goto(observed.url + "/ui#/audit?kind=guardrail")
    page.wait_for_selector("td:text-is('guardrail.redact')")
    view = page.text_content("#view") or ""
    assert "watch/codeword" in view and "guardrail.flag" in view and "consumer ui-playground" in view
    assert CODE_WORD not in view and "dana@" not in view and "group.create" not in view
    shot(page, "audit-guardrails")
    page.select_option("#audit-kind", "admin")
    page.wait_for_selector("td:text-is('group.create')")
    assert "guardrail." not in (page.text_content("#view") or "")
    page.select_option("#audit-kind", "")
    page.wait_for_selector("td:text-is('guardrail.flag')")
    assert page.query_selector("td:text-is('group.create')") is not None
    assert not errors, errors
