"""The admin UI in a real headless Chromium (Debian's package, driven by Playwright), against a
real gateway process: sign in, keys, usage, revocation, group validation, playground, CSV,
CSRF and CSP. Screenshots go to $GATEHOUSE_UI_SCREENSHOTS when set (docs/images/admin-ui)."""
from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import ADMIN_KEY, base_config
from tests.support import Gatehouse
from tests.upstreams.harness import ServerThread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def ui_gateway(openai_upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    cfg = base_config(openai_upstream.url)
    cfg["metering"] = {"flush_seconds": 0.05}
    gh = Gatehouse(cfg, tmp_path_factory.mktemp("ui")).start()
    yield gh
    gh.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def shot(page: Any, name: str) -> None:
    where = os.environ.get("GATEHOUSE_UI_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=True)


def sign_in(page: Any, url: str) -> None:
    page.goto(url + "/ui")
    page.fill("#admin-key", ADMIN_KEY)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")


def wait_until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_the_admin_journey_in_a_real_browser(ui_gateway: Gatehouse, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: errors.append(f"external request {r.url}")
            if not r.url.startswith(ui_gateway.url) else None)

    page.goto(ui_gateway.url + "/ui")
    page.fill("#admin-key", "wrong-key")
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#sign-in-error:has-text('Invalid admin key')")
    shot(page, "sign-in")
    sign_in(page, ui_gateway.url)
    assert page.evaluate("() => document.cookie") == ""  # HttpOnly: the page's script cannot read it
    assert page.evaluate("() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"

    # A consumer and its key; the key is shown once.
    page.goto(ui_gateway.url + "/ui#/consumers")
    page.fill("#consumer-name", "carol")
    page.select_option("#consumer-group", "dev")
    page.click("#create-consumer button[type=submit]")
    page.click("button[data-new-key=carol]")
    key = page.text_content("#new-key-value")
    assert key and key.startswith("gh-")
    shot(page, "consumers")
    page.reload()
    page.wait_for_selector("button[data-new-key=carol]")
    assert page.query_selector("#new-key-value") is None

    client = openai.OpenAI(base_url=ui_gateway.url + "/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "from the sdk"}])
    assert reply.choices[0].message.content == "echo: from the sdk"

    # The request shows in the usage explorer and on the overview chart.
    page.goto(ui_gateway.url + "/ui#/usage?by=consumer&since=1h")

    def usage_has_carol() -> bool:  # the ledger lands in the store within a flush period
        page.click("#usage-filters button[type=submit]")
        page.wait_for_load_state("networkidle")
        return page.query_selector("td:text-is('carol')") is not None
    try:
        wait_until(usage_has_carol, 10.0)
    except AssertionError:
        raise AssertionError(f"usage page: {page.text_content('#view')!r}; console: {errors}") from None
    shot(page, "usage")
    csv = page.request.get(ui_gateway.url + page.get_attribute("#csv-export", "href"))
    assert csv.status == 200 and csv.text().startswith("consumer,") and "carol" in csv.text()
    page.goto(ui_gateway.url + "/ui#/overview?since=1h")
    page.wait_for_selector("svg.chart rect.bar")
    assert page.query_selector("svg[aria-label='Top consumers by requests'] text:text-is('carol')") is not None
    shot(page, "overview")

    # Revoking the key stops the SDK.
    page.goto(ui_gateway.url + "/ui#/consumers")
    page.click("button[data-revoke][data-consumer=carol]")
    page.wait_for_selector("td:text-is('carol')")
    wait_until(lambda: page.query_selector("text=inactive") is not None)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "again"}])

    # A bad group limit shows its error next to the field.
    page.goto(ui_gateway.url + "/ui#/groups")
    page.fill("#group-name", "team")
    page.fill("#group-models", "echo, chat")
    page.click("#create-group button[type=submit]")
    page.fill("#g-team-tokens_per_minute", "-5")
    page.click("form[data-group=team] button[type=submit]")
    page.wait_for_selector("#g-team-tokens_per_minute-error:not(:empty)")
    assert "tokens_per_minute" in (page.text_content("#g-team-tokens_per_minute-error") or "")
    page.fill("#g-team-tokens_per_minute", "5000")
    page.fill("#g-team-default_model", "nope")  # a default model the gateway does not have
    page.click("form[data-group=team] button[type=submit]")
    page.wait_for_selector("#g-team-default_model-error:not(:empty)")
    assert "Unknown model 'nope'" in (page.text_content("#g-team-default_model-error") or "")
    page.fill("#g-team-default_model", "echo")
    page.click("form[data-group=team] button[type=submit]")
    page.wait_for_selector("#g-team-saved:has-text('Saved')")
    assert page.request.get(ui_gateway.url + "/admin/groups/team").json()["default_model"] == "echo"
    shot(page, "groups")

    page.goto(ui_gateway.url + "/ui#/models")
    page.wait_for_selector("td:text-is('echo')")
    shot(page, "models")

    # A streamed playground chat.
    page.goto(ui_gateway.url + "/ui#/playground")
    page.select_option("#pg-model", "echo")
    page.fill("#pg-prompt", "hello playground")
    page.click("#playground button[type=submit]")
    page.wait_for_selector("#pg-meta:has-text('tokens')")
    assert page.text_content("#pg-answer") == "echo: hello playground"
    page.wait_for_selector("#pg-route", timeout=15000)  # looked up in the ledger once it lands
    assert page.text_content("#pg-route") == "echo/echo"
    assert page.text_content("#pg-guardrails") == "no check matched"
    shot(page, "playground")

    page.goto(ui_gateway.url + "/ui#/audit")
    page.wait_for_load_state("networkidle")
    shot(page, "audit")
    assert not [e for e in errors if "external request" in e], errors


def test_csrf_csp_and_sign_in_throttling(ui_gateway: Gatehouse, browser: Any) -> None:
    page = browser.new_page()
    sign_in(page, ui_gateway.url)
    csrf = page.evaluate("() => fetch('/ui/session').then(r => r.json()).then(j => j.csrf)")
    # The session cookie alone cannot change anything: the CSRF token is required.
    refused = page.request.post(ui_gateway.url + "/admin/groups", data={"name": "nope", "models": ["echo"]})
    assert refused.status == 403 and "CSRF" in refused.text()
    accepted = page.request.post(ui_gateway.url + "/admin/groups", data={"name": "viewers", "models": ["echo"]},
                                 headers={"x-csrf-token": csrf})
    assert accepted.status == 201
    resp = page.request.get(ui_gateway.url + "/ui")
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    login = page.request.post(ui_gateway.url + "/ui/login", data={"key": ADMIN_KEY})
    cookie = login.headers["set-cookie"]
    assert re.search(r"HttpOnly", cookie) and "SameSite=Strict" in cookie and "Secure" not in cookie
    # Signing out ends the session.
    page.request.post(ui_gateway.url + "/ui/logout", headers={"x-csrf-token": csrf})
    assert page.request.get(ui_gateway.url + "/admin/groups").status == 401
    statuses = [page.request.post(ui_gateway.url + "/ui/login", data={"key": "bad"}).status for _ in range(12)]
    # 10 failed sign-ins a minute per client (the journey above used one): then 429 until it passes.
    first = statuses.index(429)
    assert 9 <= first <= 10 and set(statuses[:first]) == {401} and set(statuses[first:]) == {429}


def test_the_ui_is_off_without_an_admin_key_or_when_disabled(openai_upstream: ServerThread,
                                                             start_gatehouse: Any) -> None:
    import urllib.error
    import urllib.request

    no_admin = base_config(openai_upstream.url)
    del no_admin["admin"]
    disabled = {**base_config(openai_upstream.url), "ui": {"enabled": False}}
    for cfg in (no_admin, disabled):
        gh = start_gatehouse(cfg)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(gh.url + "/ui", timeout=5)
        assert info.value.code == 404
