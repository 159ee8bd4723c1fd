"""Bearer JWTs validated against a live JWKS endpoint: claims, algorithms, group mapping,
per-subject limits and key rotation at the identity provider."""
from __future__ import annotations

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import ALICE_KEY, base_config
from tests.support import Gatehouse
from tests.upstreams.harness import ServerThread
from tests.upstreams.jwks import AUDIENCE, ISSUER, KeyServer, hmac_token, unsigned_token


@pytest.fixture(scope="module")
def idp():
    keys = KeyServer()
    keys.new_key("k1")
    with ServerThread(keys.make_app) as srv:
        keys.url = srv.url
        yield keys


@pytest.fixture(scope="module")
def gh(openai_upstream, idp, tmp_path_factory):
    cfg = base_config(openai_upstream.url)
    cfg["groups"]["engineers"] = {"models": ["chat"], "tokens_per_minute": 1000, "max_tokens": 10}
    cfg["auth"] = {"jwt": {
        "jwks_url": idp.url + "/jwks", "issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"],
        "group_claim": "roles", "groups": {"eng": "engineers", "staff": "dev"},
        "jwks_refresh_seconds": 1, "jwks_cooldown_seconds": 0, "leeway_seconds": 5,
    }}
    g = Gatehouse(cfg, tmp_path_factory.mktemp("jwt")).start()
    yield g
    g.stop()


def chat(gh, token: str, model: str = "chat") -> httpx.Response:
    return httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"}, timeout=10,
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_valid_token_maps_the_claim_to_a_group(gh, idp):
    r = chat(gh, idp.token("k1", roles=["eng"]))
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == "1000"
    assert chat(gh, idp.token("k1", roles=["eng"]), model="echo").status_code == 403, "engineers: chat only"
    staff = chat(gh, idp.token("k1", roles=["staff"]), model="echo")
    assert staff.status_code == 200 and "x-ratelimit-limit-tokens" not in staff.headers
    assert chat(gh, idp.token("k1", roles="eng")).status_code == 200, "a string claim works too"


def test_subject_is_the_consumer_with_its_own_allowance(gh, idp):
    first = chat(gh, idp.token("k1", sub="ann"))
    second = chat(gh, idp.token("k1", sub="ann"))
    other = chat(gh, idp.token("k1", sub="ben"))
    assert int(second.headers["x-ratelimit-remaining-tokens"]) < int(first.headers["x-ratelimit-remaining-tokens"])
    assert other.headers["x-ratelimit-remaining-tokens"] == first.headers["x-ratelimit-remaining-tokens"]


@pytest.mark.parametrize("case", ["expired", "issuer", "audience", "alg_none", "hs256_confusion",
                                  "foreign_key", "garbage", "no_exp"])
def test_bad_tokens_are_refused(gh, idp, case):
    if case == "expired":
        token = idp.token("k1", expires_in=-60)
    elif case == "issuer":
        token = idp.token("k1", iss="https://evil.example.test")
    elif case == "audience":
        token = idp.token("k1", aud="someone-else")
    elif case == "alg_none":
        token = unsigned_token()
    elif case == "hs256_confusion":  # the public key used as an HMAC secret
        pem = idp.private["k1"].public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        token = hmac_token(pem, "k1")
    elif case == "foreign_key":  # right kid, signed by a key the IdP never published
        idp.new_key("forged", serve=False)
        token = idp.token("k1", sign_with="forged")
    elif case == "garbage":
        token = "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"
    else:
        token = jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "roles": ["eng"]}, idp.private["k1"],
                           algorithm="RS256", headers={"kid": "k1"})
    r = chat(gh, token)
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert err["type"] == "authentication_error"
    assert err["code"] == ("token_expired" if case == "expired" else "invalid_token")
    assert idp.url not in r.text


def test_token_without_a_mapped_group_is_forbidden(gh, idp):
    r = chat(gh, idp.token("k1", roles=["visitors"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "no_group"


def test_keys_keep_working_and_jwts_never_open_admin_routes(gh, idp):
    assert chat(gh, ALICE_KEY).status_code == 200
    r = httpx.get(gh.url + "/admin/groups", headers={"Authorization": f"Bearer {idp.token('k1')}"}, timeout=10)
    assert r.status_code == 401


def test_key_rotation_at_the_identity_provider(gh, idp):
    old = idp.token("k1", sub="rotator")
    assert chat(gh, old).status_code == 200
    idp.new_key("k2", serve=False)
    idp.serve_only("k2")
    assert chat(gh, idp.token("k2", sub="rotator")).status_code == 200, "an unknown kid triggers a refetch"
    deadline = time.monotonic() + 10
    while chat(gh, old).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert chat(gh, old).status_code == 401, "a key the IdP no longer publishes stops working"
