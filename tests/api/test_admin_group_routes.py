"""A group created through the admin API has a `default_model` and a `data_class` like a config
file's group (docs/policy-routing.md): set on create and patch, validated (a known model the group
may use; a declared class), effective on the request path at once, over real sockets."""
from __future__ import annotations

import httpx
import pytest

from tests.conftest import ADMIN_KEY, base_config
from tests.support import Gatehouse


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    cfg = base_config(openai_upstream.url)
    cfg["models"].append({"name": "local", "private": True, "deployments": [{"provider": "echo", "model": "echo"}]})
    cfg["compliance"] = {"classes": ["public", "internal", "phi"], "policies": {"phi": {"reroute": "local"}}}
    g = Gatehouse(cfg, tmp_path_factory.mktemp("admin-group-routes")).start()
    yield g
    g.stop()


def admin(gh: Gatehouse, method: str, path: str, **kw: object) -> httpx.Response:
    return httpx.request(method, gh.url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10,
                         **kw)  # type: ignore[arg-type]


def ask(gh: Gatehouse, key: str, path: str = "/v1/chat/completions", **body: object) -> httpx.Response:
    payload = {"messages": [{"role": "user", "content": "hi"}]} if path != "/v1/responses" else {"input": "hi"}
    return httpx.post(gh.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10, json={**payload, **body})


def test_default_model_and_data_class_of_a_store_group_apply_at_once(gh, openai_upstream):
    r = admin(gh, "POST", "/admin/groups", json={"name": "clinic", "models": ["chat", "local"],
                                                  "default_model": "chat", "data_class": "phi"})
    assert r.status_code == 201, r.text
    assert r.json()["default_model"] == "chat" and r.json()["data_class"] == "phi"
    assert admin(gh, "POST", "/admin/consumers", json={"name": "doc", "group": "clinic"}).status_code == 201
    key = admin(gh, "POST", "/admin/keys", json={"consumer": "doc"}).json()["key"]

    openai_upstream.recorder.clear()
    r = ask(gh, key)  # no model: the group's default, then its class reroutes it to the private model
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "local" and r.headers["x-gatehouse-data-class"] == "phi"
    r = ask(gh, key, "/v1/responses", store=False)
    assert r.status_code == 200 and r.json()["model"] == "local", r.text
    assert openai_upstream.recorder.requests == [], "a phi group's requests never reach the managed upstream"

    r = admin(gh, "PATCH", "/admin/groups/clinic", json={"data_class": None})
    assert r.status_code == 200 and r.json()["data_class"] is None, r.text
    r = ask(gh, key)
    assert r.status_code == 200 and r.json()["model"] == "chat", r.text
    assert r.headers["x-gatehouse-data-class"] == "public"
    assert len(openai_upstream.recorder.requests) == 1

    r = admin(gh, "PATCH", "/admin/groups/clinic", json={"default_model": "local"})
    assert r.status_code == 200 and admin(gh, "GET", "/admin/groups/clinic").json()["default_model"] == "local"
    assert ask(gh, key, model="default").json()["model"] == "local"


@pytest.mark.parametrize(("body", "param", "text"), [
    ({"models": ["*"], "default_model": "nope"}, "default_model", "Unknown model 'nope'"),
    ({"models": ["chat"], "default_model": "embed"}, "default_model", "may not use model 'embed'"),
    ({"models": ["*"], "data_class": "secret"}, "data_class", "Unknown data class 'secret' (declared: public"),
])
def test_default_model_and_data_class_are_validated(gh, body, param, text):
    r = admin(gh, "POST", "/admin/groups", json={"name": "bad", **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and text in err["message"], err
    assert admin(gh, "GET", "/admin/groups/bad").status_code == 404
    assert admin(gh, "POST", "/admin/groups", json={"name": "ok-group", "models": ["chat"]}).status_code in (201, 409)
    r = admin(gh, "PATCH", "/admin/groups/ok-group", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
