"""Who a key is: a key whose consumer is defined nowhere gets nothing (offboarding), a consumer
without a group gets the configured default group (never "everything, unlimited"), and only
the operator can opt orphaned keys into that default group."""
from __future__ import annotations

import httpx

from tests.conftest import ADMIN_KEY, base_config

GUEST_KEY = "guest-key-0123456789"


def chat(url: str, key: str, model: str = "chat") -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def admin(url: str, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10, **kw)


def offboarding_config(upstream_url: str, with_leaver: bool, **extra) -> dict:
    cfg = base_config(upstream_url, **extra)
    cfg["groups"]["limited"] = {"models": ["chat"], "requests_per_minute": 30}
    if with_leaver:
        cfg["consumers"]["leaver"] = {"group": "limited"}
    return cfg


def test_removing_a_consumer_from_the_config_disables_its_keys(start_gatehouse, openai_upstream, tmp_path):
    home = tmp_path / "home"
    first = start_gatehouse(offboarding_config(openai_upstream.url, True), home=home)
    created = admin(first.url, "POST", "/admin/keys", json={"consumer": "leaver"}).json()
    key = created["key"]
    before = chat(first.url, key)
    assert before.status_code == 200 and before.headers["x-ratelimit-limit-requests"] == "30"
    assert chat(first.url, key, "echo").status_code == 403
    first.stop()

    # The consumer is removed from the file; its admin-made key is still in the store.
    after = start_gatehouse(offboarding_config(openai_upstream.url, False), home=home)
    for model in ("chat", "echo", "restricted"):
        r = chat(after.url, key, model)
        assert r.status_code == 401, (model, r.text)
        assert r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(after.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10) \
        .status_code == 401
    anthropic = httpx.post(after.url + "/v1/messages", headers={"x-api-key": key}, timeout=10,
                           json={"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert anthropic.status_code == 401 and anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "authentication_error"
    ollama = httpx.post(after.url + "/api/chat", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    assert ollama.status_code == 401 and isinstance(ollama.json()["error"], str)
    assert httpx.get(after.url + "/v1/usage/me", headers={"Authorization": f"Bearer {key}"}, timeout=10) \
        .status_code == 401
    rotated = admin(after.url, "POST", f"/admin/keys/{created['id']}/rotate", json={"grace_seconds": 0})
    assert rotated.status_code == 404 and rotated.json()["error"]["code"] == "consumer_not_found", \
        "rotation never mints a key for a consumer defined nowhere"
    assert admin(after.url, "POST", "/admin/keys", json={"consumer": "leaver"}).status_code == 404
    logs = after.logs()
    assert f"refused key {created['id']}" in logs and "'leaver'" in logs and key not in logs
    after.stop()

    # Only an operator who opts in serves such keys - and then in the named default group.
    opted = start_gatehouse(offboarding_config(openai_upstream.url, False, access={
        "default_group": "limited", "unknown_consumers": "default_group"}), home=home)
    r = chat(opted.url, key)
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-requests"] == "30"
    assert chat(opted.url, key, "echo").status_code == 403


def test_a_consumer_without_a_group_gets_the_default_group(start_gatehouse, openai_upstream):
    cfg = base_config(openai_upstream.url, access={"default_group": "guest"})
    cfg["groups"]["guest"] = {"models": ["echo"], "requests_per_minute": 5}
    cfg["consumers"]["drifter"] = {"keys": [GUEST_KEY]}
    gh = start_gatehouse(cfg)
    r = chat(gh.url, GUEST_KEY, "echo")
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-requests"] == "5"
    for model in ("chat", "restricted"):
        assert chat(gh.url, GUEST_KEY, model).status_code == 403
    shown = admin(gh.url, "GET", "/admin/consumers/drifter").json()
    assert shown["group"] == "guest" and shown["allowed_models"] == ["echo"]

    made = admin(gh.url, "POST", "/admin/consumers", json={"name": "newcomer"})
    assert made.status_code == 201 and made.json()["group"] == "guest", made.text
    key = admin(gh.url, "POST", "/admin/keys", json={"consumer": "newcomer"}).json()["key"]
    assert chat(gh.url, key, "echo").headers["x-ratelimit-limit-requests"] == "5"
    assert chat(gh.url, key, "chat").status_code == 403
