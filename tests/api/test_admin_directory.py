"""Admin API for groups, consumers and keys: deny by default on every route, CRUD with
config entries read-only, literal storage of awkward input, key rotation, and the CLI."""
from __future__ import annotations

import json
import sqlite3
import time
from urllib.parse import quote

import httpx
import pytest

from gatehouse.app import ROUTES
from tests.conftest import ADMIN_KEY, ALICE_KEY, base_config
from tests.in_process import CliResult, run_cli
from tests.support import Gatehouse


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    cfg = base_config(openai_upstream.url)
    cfg["groups"]["limited"] = {"models": ["chat"], "tokens_per_minute": 5000, "max_tokens": 50}
    g = Gatehouse(cfg, tmp_path_factory.mktemp("admin")).start()
    yield g
    g.stop()


def admin(gh, method: str, path: str, key: str | None = ADMIN_KEY, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, gh.url + path, headers=headers, timeout=10, **kw)


def chat(gh, key: str, model: str = "chat") -> httpx.Response:
    return httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


ADMIN_ROUTES = [r for r in ROUTES if r.surface == "admin"]


def test_every_admin_route_is_covered_below():
    assert len(ADMIN_ROUTES) >= 17
    # (GET /providers and /config: admin views at the paths migrating teams call, docs/migration.md)
    assert all(r.path.startswith("/admin/") or r.path in ("/providers", "/config") for r in ADMIN_ROUTES)


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_admin_routes_deny_without_the_admin_key(gh, route):
    path = route.path.format(key_id="key_x", name="limited", request_id="req_x")
    for key in (None, ALICE_KEY, "wrong-admin-key", ADMIN_KEY + "x"):
        r = admin(gh, route.method, path, key=key, json={})
        assert r.status_code == 401, (key, r.status_code, r.text)
        assert r.json()["error"]["code"] == "invalid_admin_key"
    r = admin(gh, route.method, path, json={})
    assert r.status_code not in (401, 403, 404, 405) or r.json()["error"]["code"] in (
        "key_not_found", "group_not_found", "consumer_not_found", "defined_in_config", "unknown_request"), r.text


def test_admin_routes_are_off_without_an_admin_key_configured(start_gatehouse, openai_upstream):
    g = start_gatehouse(base_config(openai_upstream.url, admin={}))
    for r in ADMIN_ROUTES:
        for key in (None, ALICE_KEY, ADMIN_KEY, ""):
            got = admin(g, r.method, r.path.format(key_id="k", name="n", request_id="r"), key=key, json={})
            assert got.status_code == 403 and got.json()["error"]["code"] == "admin_disabled", (r.path, key)


def test_group_and_consumer_lifecycle(gh):
    r = admin(gh, "POST", "/admin/groups", json={"name": "analyst", "models": ["chat", "emb*"],
                                                  "tokens_per_minute": 5000, "budget_usd_per_month": 20})
    assert r.status_code == 201, r.text
    g = r.json()
    assert g["source"] == "store" and g["allowed_models"] == ["chat", "embed"] and g["tokens_per_minute"] == 5000
    assert admin(gh, "POST", "/admin/groups", json={"name": "analyst"}).status_code == 409
    assert admin(gh, "GET", "/admin/groups/analyst").json()["budget_usd_per_month"] == 20

    r = admin(gh, "POST", "/admin/consumers", json={"name": "ana", "group": "analyst", "tokens_per_minute": 7000})
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["limits"]["tokens_per_minute"] == 7000 and c["limits"]["budget_usd_per_month"] == 20
    assert c["overrides"] == {"tokens_per_minute": 7000}
    key = admin(gh, "POST", "/admin/keys", json={"consumer": "ana"}).json()["key"]
    r = chat(gh, key)
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == "7000", "applied at once here"
    assert chat(gh, key, model="echo").status_code == 403

    r = admin(gh, "PATCH", "/admin/consumers/ana", json={"tokens_per_minute": None, "models": ["chat"]})
    assert r.status_code == 200 and r.json()["limits"]["tokens_per_minute"] == 5000
    assert r.json()["allowed_models"] == ["chat"]
    assert chat(gh, key).headers["x-ratelimit-limit-tokens"] == "5000"
    assert admin(gh, "PATCH", "/admin/groups/analyst", json={"tokens_per_minute": "unlimited"}).status_code == 200
    assert "x-ratelimit-limit-tokens" not in chat(gh, key).headers

    names = [c["name"] for c in admin(gh, "GET", "/admin/consumers", params={"group": "analyst"}).json()["data"]]
    assert names == ["ana"]
    assert admin(gh, "DELETE", "/admin/groups/analyst").status_code == 409, "still has a consumer"
    assert admin(gh, "DELETE", "/admin/consumers/ana").status_code == 200
    assert chat(gh, key).status_code == 401, "deleting a consumer revokes its keys"
    assert admin(gh, "DELETE", "/admin/groups/analyst").status_code == 200
    assert admin(gh, "GET", "/admin/groups/analyst").status_code == 404


@pytest.mark.parametrize("method,path,body,status,code", [
    ("PATCH", "/admin/groups/limited", {"tokens_per_minute": 1}, 409, "defined_in_config"),
    ("DELETE", "/admin/groups/dev", None, 409, "defined_in_config"),
    ("POST", "/admin/groups", {"name": "dev"}, 409, "defined_in_config"),
    ("PATCH", "/admin/consumers/alice", {"group": "limited"}, 409, "defined_in_config"),
    ("POST", "/admin/consumers", {"name": "zed", "group": "nope"}, 400, "invalid_value"),
    ("POST", "/admin/consumers", {"name": "zed"}, 400, "invalid_value"),
    ("POST", "/admin/consumers", {"name": "zed", "group": "dev", "keys": ["k"]}, 400, "invalid_value"),
    ("POST", "/admin/groups", {"name": "g1", "tokens_per_minute": -5}, 400, "invalid_value"),
    ("POST", "/admin/groups", {"name": "g1", "tokens_per_minute": "lots"}, 400, "invalid_value"),
    ("POST", "/admin/groups", {"name": "g1", "colour": "red"}, 400, "invalid_value"),
    ("POST", "/admin/groups", {"name": "a/b"}, 400, "invalid_value"),
    ("POST", "/admin/groups", {"models": ["chat"]}, 400, "invalid_value"),
    ("GET", "/admin/consumers/nobody", None, 404, "consumer_not_found"),
    ("POST", "/admin/keys/key_missing/rotate", None, 404, "key_not_found"),
])
def test_admin_input_errors(gh, method, path, body, status, code):
    r = admin(gh, method, path, json=body) if body is not None else admin(gh, method, path)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_config_entries_are_listed_and_shown(gh):
    groups = {g["name"]: g for g in admin(gh, "GET", "/admin/groups").json()["data"]}
    assert groups["limited"]["source"] == "config" and groups["limited"]["tokens_per_minute"] == 5000
    alice = admin(gh, "GET", "/admin/consumers/alice").json()
    assert alice["group"] == "dev" and alice["allowed_models"] == ["chat", "echo", "embed"]
    assert "keys" not in alice and ALICE_KEY not in str(alice)


AWKWARD = "o'brien\"; DROP TABLE access_consumers;-- {{7*7}} ${HOME} %s <b>"
# Names: 1-64 of letters, digits and . _ @ -, starting with a letter or digit (no ':', '/',
# spaces or control characters); the cases first.
BAD_NAMES = ["line\nbreak", "a/b", "", "x" * 129, "x" * 65, " lead", "tab\t", "jwt:alice", "-dash", "o'brien",
             "semi;colon", "{{7*7}}", "caf\u00e9", 7, None]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_names_are_refused_wherever_a_name_is_made(gh, name):
    for path, body, param in (("/admin/groups", {"name": name, "models": ["chat"]}, "name"),
                              ("/admin/consumers", {"name": name, "group": "dev"}, "name"),
                              ("/admin/keys", {"consumer": name}, "consumer")):
        r = admin(gh, "POST", path, json=body)
        assert r.status_code == 400, (path, r.text)
        err = r.json()["error"]
        if name is not None:
            assert err["code"] == "invalid_value" and err["param"] == param, r.text
        if isinstance(name, str):  # (a missing or non-string field is refused by its type first)
            assert "letters, digits and . _ @ -" in err["message"], r.text
    names = {c["name"] for c in admin(gh, "GET", "/admin/consumers").json()["data"]}
    names |= {g["name"] for g in admin(gh, "GET", "/admin/groups").json()["data"]}
    assert name not in names


def test_longest_allowed_name_is_accepted(gh):
    name = "a" + "b.c_d@e-f" * 7  # 64 characters
    assert len(name) == 64
    assert admin(gh, "POST", "/admin/groups", json={"name": name, "models": ["chat"]}).status_code == 201
    assert admin(gh, "POST", "/admin/consumers", json={"name": name, "group": name}).status_code == 201
    assert admin(gh, "POST", "/admin/keys", json={"consumer": name}).status_code == 201


def test_descriptions_with_sql_and_template_metacharacters_are_stored_and_shown_literally(gh):
    desc = "{{ config.admin.key }} ${GATEHOUSE_ADMIN_KEY} {% raw %} '); DELETE FROM api_keys; -- " + AWKWARD
    r = admin(gh, "POST", "/admin/groups", json={"name": "odd-group", "models": ["chat"], "description": desc})
    assert r.status_code == 201, r.text
    r = admin(gh, "POST", "/admin/consumers", json={"name": "odd.one@x", "group": "odd-group", "description": desc})
    assert r.status_code == 201, r.text
    shown = admin(gh, "GET", "/admin/consumers/" + quote("odd.one@x", safe="")).json()
    assert shown["name"] == "odd.one@x" and shown["group"] == "odd-group" and shown["description"] == desc
    created = admin(gh, "POST", "/admin/keys", json={"consumer": "odd.one@x", "description": desc}).json()
    assert created["description"] == desc
    assert chat(gh, created["key"]).status_code == 200
    assert admin(gh, "GET", "/admin/groups/odd-group").json()["description"] == desc


def test_keys_are_made_only_for_consumers_that_exist(gh):
    r = admin(gh, "POST", "/admin/keys", json={"consumer": "ghost"})
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["code"] == "consumer_not_found" and err["param"] == "consumer"
    assert admin(gh, "GET", "/admin/keys", params={"consumer": "ghost"}).json()["data"] == []
    out = cli(gh, "keys", "create", "ghost")
    assert out.returncode == 1 and "No consumer named 'ghost'" in out.stderr and "gh-" not in out.stdout
    assert admin(gh, "POST", "/admin/keys", json={"consumer": "alice"}).status_code == 201, "config consumer"


def test_key_rotation_keeps_the_old_key_for_the_grace_period(gh):
    created = admin(gh, "POST", "/admin/keys", json={"consumer": "alice", "description": "laptop"}).json()
    r = admin(gh, "POST", f"/admin/keys/{created['id']}/rotate", json={"grace_seconds": 3600})
    assert r.status_code == 201, r.text
    rotated = r.json()
    assert rotated["replaces"] == created["id"] and rotated["consumer"] == "alice"
    assert rotated["description"] == "laptop" and rotated["old_key_expires_at"] > time.time() + 3500
    assert chat(gh, rotated["key"]).status_code == 200
    assert chat(gh, created["key"]).status_code == 200, "still valid during the grace period"
    shown = admin(gh, "GET", f"/admin/keys/{created['id']}").json()
    assert shown["active"] is True and "key" not in shown
    again = admin(gh, "POST", f"/admin/keys/{rotated['id']}/rotate", json={"grace_seconds": 0}).json()
    assert chat(gh, rotated["key"]).status_code == 401, "grace 0: the old key stops at once"
    assert chat(gh, again["key"]).status_code == 200
    assert admin(gh, "POST", f"/admin/keys/{rotated['id']}/rotate").status_code == 409


def test_limits_status(gh):
    s = admin(gh, "GET", "/admin/limits").json()
    assert s["backend"] == "memory" and s["store_up"] is True and s["on_store_error"] == "open"


def cli(gh, *args: str) -> CliResult:
    return run_cli(*args, "--config", str(gh.config_path), env=gh.env)


def test_cli_manages_groups_consumers_and_rotation_and_the_server_follows(gh):
    bad = cli(gh, "consumers", "create", "bad/name", "--group", "dev")
    assert bad.returncode == 1 and "invalid name 'bad/name'" in bad.stderr
    out = cli(gh, "groups", "create", "cli-team", "--models", "chat,echo", "--tokens-per-minute", "4000",
              "--description", AWKWARD)
    assert out.returncode == 0, out.stderr
    out = cli(gh, "consumers", "create", "cli-user", "--group", "cli-team", "--max-tokens", "30")
    assert out.returncode == 0, out.stderr
    assert '"max_tokens": 30' in out.stdout
    assert "cli-team" in cli(gh, "groups", "list").stdout
    assert json.loads(cli(gh, "groups", "show", "cli-team").stdout)["description"] == AWKWARD
    key_out = cli(gh, "keys", "create", "cli-user").stdout
    key, key_id = key_out.strip().splitlines()[-1], key_out.split()[2]
    time.sleep(1.0)  # the running server sees the store's version move
    r = chat(gh, key)
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == "4000"
    assert cli(gh, "groups", "update", "cli-team", "--tokens-per-minute", "unlimited").returncode == 0
    assert cli(gh, "consumers", "update", "cli-user", "--max-tokens", "none").returncode == 0
    time.sleep(1.0)
    assert "x-ratelimit-limit-tokens" not in chat(gh, key).headers
    rotated = cli(gh, "keys", "rotate", key_id, "--grace", "0")
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.strip().splitlines()[-1]
    time.sleep(1.0)
    assert chat(gh, key).status_code == 401 and chat(gh, new_key).status_code == 200
    assert cli(gh, "groups", "delete", "cli-team").returncode == 1, "it still has a consumer"
    assert cli(gh, "consumers", "delete", "cli-user").returncode == 0
    assert cli(gh, "groups", "delete", "cli-team").returncode == 0
    err = cli(gh, "groups", "update", "limited", "--max-tokens", "1")
    assert err.returncode == 1 and "config file" in err.stderr


def test_admin_actions_are_audited_and_queryable_without_any_key(gh):
    group, consumer = "audited-team", "audited-user"
    assert admin(gh, "POST", "/admin/groups", json={"name": group, "models": ["chat"]}).status_code == 201
    assert admin(gh, "POST", "/admin/consumers", json={"name": consumer, "group": group}).status_code == 201
    created = admin(gh, "POST", "/admin/keys", json={"consumer": consumer, "description": "ci"}).json()
    rotated = admin(gh, "POST", f"/admin/keys/{created['id']}/rotate", json={"grace_seconds": 0}).json()
    assert admin(gh, "POST", f"/admin/keys/{rotated['id']}/revoke").status_code == 200
    assert admin(gh, "PATCH", f"/admin/consumers/{consumer}", json={"max_tokens": 9}).status_code == 200
    assert admin(gh, "DELETE", f"/admin/consumers/{consumer}").status_code == 200
    assert admin(gh, "DELETE", f"/admin/groups/{group}").status_code == 200
    assert admin(gh, "POST", "/admin/keys", json={"consumer": "ghost"}).status_code == 404  # refused: no record

    r = admin(gh, "GET", "/admin/audit", params={"since": "1h", "limit": "1000"})
    assert r.status_code == 200, r.text
    mine = [e for e in r.json()["data"] if e["target"] in (group, consumer, created["id"], rotated["id"])]
    assert [(e["action"], e["target"]) for e in reversed(mine)] == [
        ("group.create", group), ("consumer.create", consumer), ("key.create", created["id"]),
        ("key.rotate", created["id"]), ("key.revoke", rotated["id"]), ("consumer.update", consumer),
        ("consumer.delete", consumer), ("group.delete", group)]
    assert all(e["actor"] == "admin-key" and e["source"] == "127.0.0.1" and e["ts"] > time.time() - 600
               for e in mine)
    assert mine[-1]["detail"] == {"models": ["chat"]}
    rotate = next(e for e in mine if e["action"] == "key.rotate")
    assert rotate["detail"]["consumer"] == consumer and rotate["detail"]["new_key_id"] == rotated["id"]
    assert "ghost" not in {e["target"] for e in r.json()["data"]}

    keys = admin(gh, "GET", "/admin/audit", params={"action": "key.*", "since": "1h"}).json()["data"]
    assert {e["action"] for e in keys} <= {"key.create", "key.rotate", "key.revoke"} and len(keys) >= 3
    only = admin(gh, "GET", "/admin/audit", params={"target": consumer, "action": "consumer.delete"}).json()
    assert [e["detail"] for e in only["data"]] == [{"keys_revoked": True}]

    with sqlite3.connect(gh.home / "gatehouse.db") as db:
        hashes = [h for (h,) in db.execute("SELECT key_hash FROM api_keys")]
    for text in (r.text, gh.logs()):
        for secret in (created["key"], rotated["key"], ADMIN_KEY, *hashes):
            assert secret not in text
    assert f'"action": "key.revoke", "target": "{rotated["id"]}"' in gh.logs(), "one log line per action"

    for params in ({"colour": "red"}, {"limit": "0"}, {"limit": "1001"}, {"since": "yesterday"}):
        bad = admin(gh, "GET", "/admin/audit", params=params)
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error", params


def test_cli_changes_are_audited_and_the_cli_reads_the_log(gh):
    assert cli(gh, "groups", "create", "cli-audited", "--models", "chat").returncode == 0
    out = cli(gh, "audit", "--target", "cli-audited", "--json")
    assert out.returncode == 0, out.stderr
    [entry] = [json.loads(line) for line in out.stdout.splitlines()]
    assert entry["action"] == "group.create" and entry["actor"].startswith("cli:")
    table = cli(gh, "audit", "--action", "group.*", "--since", "1h")
    assert table.returncode == 0 and "group.create" in table.stdout and "'cli-audited'" in table.stdout
    seen = admin(gh, "GET", "/admin/audit", params={"target": "cli-audited"}).json()["data"]
    assert [e["actor"] for e in seen] == [entry["actor"]]
    assert cli(gh, "audit", "--since", "soon").returncode == 2
