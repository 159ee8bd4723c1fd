"""Consumer key lifecycle: config keys (plaintext and sha256), CLI- and admin-API-created keys,
revocation with immediate effect, expiry, and that only hashes are stored."""
from __future__ import annotations

import hashlib
import sqlite3

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, base_config
from tests.in_process import CliResult, run_cli


def chat(url: str, key: str, header: str = "Authorization") -> int:
    value = f"Bearer {key}" if header == "Authorization" else key
    r = httpx.post(url + "/v1/chat/completions", headers={header: value},
                      json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
    return r.status_code


def cli(gh, *args: str) -> CliResult:
    return run_cli("keys", *args, "--config", str(gh.config_path), env=gh.env)


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    from tests.support import Gatehouse

    cfg = base_config(openai_upstream.url)
    cfg["consumers"]["carol"] = {"group": "open",
                                 "keys": ["sha256:" + hashlib.sha256(b"carol-plain-key").hexdigest()]}
    cfg["consumers"].update({name: {"group": "open"} for name in ("dave", "erin", "frank", "gina")})
    g = Gatehouse(cfg, tmp_path_factory.mktemp("keys")).start()
    yield g
    g.stop()


def test_config_keys_in_every_header_form(gh):
    assert chat(gh.url, "alice-secret-key-1") == 200
    assert chat(gh.url, "alice-secret-key-1", "x-api-key") == 200
    assert chat(gh.url, "alice-secret-key-1", "apikey") == 200
    assert chat(gh.url, "carol-plain-key") == 200  # configured as a sha256 hash
    assert chat(gh.url, "carol-plain-key-x") == 401


def test_cli_created_key_works_and_revocation_is_immediate(gh):
    out = cli(gh, "create", "dave", "--description", "laptop")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    key_id = out.stdout.split()[2]
    assert key.startswith("gh-")
    assert chat(gh.url, key) == 200
    listing = cli(gh, "list").stdout
    assert key_id in listing and key not in listing
    assert cli(gh, "revoke", key_id).returncode == 0
    # Another process revoked it: this replica's cache forgets within half a second.
    import time

    deadline = time.monotonic() + 1.0
    while chat(gh.url, key) != 401:
        assert time.monotonic() < deadline, "revoked key still accepted after 1 s"
        time.sleep(0.05)


def test_only_hashes_are_stored(gh):
    out = cli(gh, "create", "erin")
    key = out.stdout.strip().splitlines()[-1]
    db = sqlite3.connect(gh.home / "gatehouse.db")
    rows = db.execute("SELECT key_hash, prefix FROM api_keys").fetchall()
    dump = "\n".join("".join(str(c) for c in r) for r in rows)
    assert key not in dump
    assert all(len(h) == 64 for h, _ in rows)


def test_admin_api_key_lifecycle(gh):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.post(gh.url + "/admin/keys", headers=admin, json={"consumer": "frank"}, timeout=10)
    assert r.status_code == 201
    created = r.json()
    key, key_id = created["key"], created["id"]
    assert chat(gh.url, key) == 200
    listed = httpx.get(gh.url + "/admin/keys?consumer=frank", headers=admin, timeout=10).json()["data"]
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]
    r = httpx.post(gh.url + f"/admin/keys/{key_id}/revoke", headers=admin, timeout=10)
    assert r.status_code == 200 and r.json()["active"] is False
    assert chat(gh.url, key) == 401  # same replica: immediate
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_admin_routes_deny_by_default(gh):
    for headers in ({}, {"Authorization": "Bearer alice-secret-key-1"}, {"Authorization": "Bearer wrong"}):
        r = httpx.get(gh.url + "/admin/keys", headers=headers, timeout=10)
        assert r.status_code == 401, headers
        assert r.json()["error"]["type"] == "authentication_error"
        r = httpx.post(gh.url + "/admin/keys", headers=headers, json={"consumer": "x"}, timeout=10)
        assert r.status_code == 401


def test_admin_disabled_without_admin_key(start_gatehouse, openai_upstream):
    cfg = base_config(openai_upstream.url)
    cfg.pop("admin")
    g = start_gatehouse(cfg)
    r = httpx.get(g.url + "/admin/keys", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"


def test_expired_key_is_rejected(gh):
    out = cli(gh, "create", "gina", "--expires-in", "1")
    key = out.stdout.strip().splitlines()[-1]
    import time

    time.sleep(1.2)
    assert chat(gh.url, key) == 401


@pytest.mark.parametrize("secret", ["s", "0123456789abcdef" * 4, "x" * 65, "a much longer secret " * 9, "sécret"])
def test_key_hashes_are_hmac_sha256_with_the_secret(secret):
    # (KeyHasher precomputes the padded HMAC states: the hashes stored for keys must not change)
    import hmac

    from gatehouse.policy.keys import KeyHasher

    hasher = KeyHasher(secret)
    for key in ("gh-abc", "", "k" * 200, "ключ"):
        assert hasher.hash(key) == hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()
