"""The admin UI signed in with an ID token (auth.jwt + ui.admin_values / ui.read_only_values), in
a real headless Chromium against a real gateway and a live JWKS server: read-only sessions see no
write controls and are refused server side; admin tokens can create keys; unmapped tokens are
refused. Also: the groups page shows spend against budgets after a priced request."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import base_config
from tests.support import Gatehouse
from tests.upstreams.harness import ServerThread
from tests.upstreams.jwks import AUDIENCE, ISSUER, KeyServer
from tests.web.test_admin_ui import ARGS, CHROMIUM, pytestmark, shot, wait_until  # noqa: F401 (the skip mark)

DANA_KEY = "dana-secret-key-4"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def idp() -> Iterator[KeyServer]:
    keys = KeyServer()
    keys.new_key("k1")
    with ServerThread(keys.make_app) as srv:
        keys.url = srv.url  # type: ignore[attr-defined]
        yield keys


@pytest.fixture(scope="module")
def oidc_gateway(openai_upstream: ServerThread, idp: KeyServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    cfg = base_config(openai_upstream.url)
    cfg["metering"] = {"flush_seconds": 0.05}
    echo = next(m for m in cfg["models"] if m["name"] == "echo")
    echo["deployments"][0].update({"input_per_mtok": 1000.0, "output_per_mtok": 1000.0})
    cfg["groups"]["budgeted"] = {"models": ["echo"], "budget_usd_per_day": 50, "budget_usd_per_month": 500,
                                 "limit_scope": "group"}
    cfg["consumers"]["dana"] = {"group": "budgeted", "keys": [DANA_KEY]}
    cfg["auth"] = {"jwt": {"jwks_url": idp.url + "/jwks", "issuer": ISSUER,  # type: ignore[attr-defined]
                           "audience": AUDIENCE, "group_claim": "roles", "groups": {"eng": "dev"}}}
    cfg["ui"] = {"role_claim": "roles", "admin_values": ["gh-admins"], "read_only_values": ["gh-viewers"]}
    gh = Gatehouse(cfg, tmp_path_factory.mktemp("ui-oidc")).start()
    yield gh
    gh.stop()


def token_sign_in(page: Any, url: str, token: str) -> None:
    page.goto(url + "/ui")
    page.wait_for_selector("#token-sign-in:not([hidden])")
    page.fill("#id-token", token)
    page.click("#sign-in button[type=submit]")


def test_a_read_only_token_sees_no_write_controls_and_is_refused_server_side(
        oidc_gateway: Gatehouse, idp: KeyServer, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    token_sign_in(page, oidc_gateway.url, idp.token("k1", sub="vera", roles=["eng", "gh-viewers"]))
    page.wait_for_selector("#nav:not([hidden])")
    assert page.is_visible("#role-badge") and not page.is_visible('#nav a[href="#/playground"]')
    page.goto(oidc_gateway.url + "/ui#/consumers")
    page.wait_for_selector("td:text-is('alice')")
    assert page.query_selector("#create-consumer") is None
    assert page.query_selector("button[data-new-key]") is None and page.query_selector("button[data-revoke]") is None
    shot(page, "consumers-read-only")
    assert "null" not in (page.text_content("#view") or "")
    page.goto(oidc_gateway.url + "/ui#/groups")
    page.wait_for_selector("form[data-group=dev]")
    assert page.query_selector("#create-group") is None and page.query_selector("form[data-group] button") is None
    assert "null" not in (page.text_content("#view") or "")
    # Reading works; a forged state-changing request with the session's CSRF token does not.
    forged = page.evaluate("""async () => {
        const s = await (await fetch('/ui/session')).json();
        const post = await fetch('/admin/keys', {method: 'POST', headers: {'content-type': 'application/json',
            'x-csrf-token': s.csrf}, body: JSON.stringify({consumer: 'alice'})});
        const patch = await fetch('/admin/groups/dev', {method: 'PATCH', headers: {'content-type': 'application/json',
            'x-csrf-token': s.csrf}, body: JSON.stringify({max_tokens: 5})});
        const play = await fetch('/admin/playground/key', {method: 'POST', headers: {'x-csrf-token': s.csrf}});
        const read = await fetch('/admin/keys');
        return [s.role, post.status, (await post.json()).error.code, patch.status, play.status, read.status];
    }""")
    assert forged == ["read_only", 403, "read_only_session", 403, 403, 200]
    page.close()


def test_an_admin_token_can_create_a_key(oidc_gateway: Gatehouse, idp: KeyServer, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    token_sign_in(page, oidc_gateway.url, idp.token("k1", sub="ada", roles="gh-admins"))
    page.wait_for_selector("#nav:not([hidden])")
    assert not page.is_visible("#role-badge")
    page.goto(oidc_gateway.url + "/ui#/consumers")
    page.click("button[data-new-key=alice]")
    key = page.text_content("#new-key-value")
    assert key and key.startswith("gh-")
    client = openai.OpenAI(base_url=oidc_gateway.url + "/v1", api_key=key, max_retries=0)
    assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}]).choices
    audit = page.evaluate("() => fetch('/admin/audit').then(r => r.json())")["data"]
    assert [r["actor"] for r in audit if r["action"] == "key.create"] == ["oidc:ada"]  # who, not "admin-key"
    page.close()


def test_a_token_with_no_mapped_role_or_a_bad_token_is_refused(oidc_gateway: Gatehouse, idp: KeyServer,
                                                                browser: Any) -> None:
    page = browser.new_page()
    token_sign_in(page, oidc_gateway.url, idp.token("k1", sub="eve", roles=["eng"]))
    page.wait_for_selector("#sign-in-error:has-text('no admin UI role')")
    assert page.is_hidden("#nav")
    login = oidc_gateway.url + "/ui/login"
    wrong_audience = idp.token("k1", roles=["gh-admins"], aud="someone-else")
    assert httpx.post(login, json={"token": wrong_audience}).status_code == 401
    expired = idp.token("k1", roles=["gh-admins"], expires_in=-120)
    refused = httpx.post(login, json={"token": expired})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_expired"
    assert "set-cookie" not in refused.headers
    page.close()


def test_groups_show_spend_against_budgets(oidc_gateway: Gatehouse, browser: Any) -> None:
    client = openai.OpenAI(base_url=oidc_gateway.url + "/v1", api_key=DANA_KEY, max_retries=0)
    client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "a priced request"}])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(oidc_gateway.url + "/ui")
    page.fill("#admin-key", "test-admin-key")
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")

    def spent() -> str:
        page.goto(oidc_gateway.url + "/ui#/overview")
        page.goto(oidc_gateway.url + "/ui#/groups")
        page.wait_for_selector("p[data-spend=budgeted]")
        return page.text_content("p[data-spend=budgeted]") or ""
    wait_until(lambda: "$0.0000 /" not in spent(), 10.0)
    text = spent()
    assert page.query_selector("svg.chart") is None  # the overview, still loading, did not draw over this page
    assert "Spent today: $" in text and "/ $50.00" in text and "/ $500.00" in text, text
    shot(page, "groups-budgets")
    page.close()


def test_ui_roles_need_auth_jwt() -> None:
    from gatehouse.config import ConfigError, from_mapping

    cfg = base_config("http://127.0.0.1:9")
    cfg["ui"] = {"admin_values": ["gh-admins"]}
    with pytest.raises(ConfigError, match="ui.admin_values"):
        from_mapping(cfg)


def test_the_usage_explorer_filters_by_status(oidc_gateway: Gatehouse, browser: Any) -> None:
    admin = {"authorization": "Bearer test-admin-key"}
    client = openai.OpenAI(base_url=oidc_gateway.url + "/v1", api_key=DANA_KEY, max_retries=0)
    client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "counted as ok"}])
    bad = httpx.get(oidc_gateway.url + "/admin/usage?status=maybe", headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"

    def rows(status: str) -> list[str]:
        data = httpx.get(oidc_gateway.url + f"/admin/usage?by=consumer&since=1h&status={status}", headers=admin).json()
        return [r["consumer"] for r in data["data"]]
    wait_until(lambda: "dana" in rows("ok"), 10.0)
    assert "dana" not in rows("error")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(oidc_gateway.url + "/ui")
    page.fill("#admin-key", "test-admin-key")
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")
    page.goto(oidc_gateway.url + "/ui#/usage?by=consumer&since=1h&status=ok")
    page.wait_for_selector("td:text-is('dana')")
    page.select_option("#u-status", "error")
    page.click("#usage-filters button[type=submit]")
    page.wait_for_selector("#csv-export[href*='status=error']")  # drawn once the filtered rows are in
    assert page.query_selector("td:text-is('dana')") is None
    page.close()
