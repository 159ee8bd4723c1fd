"""Bearer JWTs validated against a live JWKS endpoint: claims, algorithms, group mapping,
per-subject limits and key rotation at the identity provider."""
from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import ADMIN_KEY, ALICE_KEY, base_config
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


# ---- JWT users and key consumers are distinct identities ----------------------------------------


@pytest.fixture(scope="module")
def shared_names(openai_upstream, idp, redis_server, tmp_path_factory):
    """A key consumer and JWT subjects with the same name, limits kept in a real Redis."""
    run = uuid.uuid4().hex[:8]  # the Redis server outlives this module
    name = f"alice-{run}"
    made = []
    if "ns" not in idp.served:  # (an earlier test rotated the IdP's keys)
        idp.new_key("ns")

    def start(prefix: str | None) -> Gatehouse:
        cfg = base_config(openai_upstream.url, metering={"flush_seconds": 0.05})
        cfg["store"] = {"redis_url": redis_server.url}
        cfg["groups"]["engineers"] = {"models": ["chat"], "requests_per_minute": 3}
        cfg["consumers"][name] = {"group": "engineers", "keys": [f"key-of-{name}"]}
        jwt_cfg = {"jwks_url": idp.url + "/jwks", "issuer": ISSUER, "audience": AUDIENCE, "group_claim": "roles",
                   "groups": {"eng": "engineers"}}
        if prefix is not None:
            jwt_cfg["consumer_prefix"] = prefix
        cfg["auth"] = {"jwt": jwt_cfg}
        g = Gatehouse(cfg, tmp_path_factory.mktemp(f"jwt-ns-{len(made)}")).start()
        made.append(g)
        return g

    yield name, start
    for g in made:
        g.stop()


def usage_of(gh, credential: str, minimum: int) -> dict:
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(gh.url + "/v1/usage/me?by=model&since=1h", headers={"Authorization": f"Bearer {credential}"},
                      timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["total"]["attempts"] >= minimum or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_a_token_subject_is_not_the_key_consumer_of_the_same_name(shared_names, idp):
    name, start = shared_names
    gh = start(None)
    token, key = idp.token("ns", sub=name, roles=["eng"]), f"key-of-{name}"
    for i in range(3):  # the token's identity uses up its own 3 requests a minute...
        r = chat(gh, token)
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == str(2 - i)
    assert chat(gh, token).status_code == 429
    first = chat(gh, key)  # ...and the key consumer of the same name still has all of hers
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "2"

    mine, theirs = usage_of(gh, key, 1), usage_of(gh, token, 4)
    assert mine["total"]["attempts"] == 1, "the key consumer sees only her own request"
    assert theirs["total"]["attempts"] == 3, "the token user sees only its own (the 429 called no upstream)"
    by_consumer = httpx.get(gh.url + "/admin/usage?by=consumer&since=1h", timeout=10,
                            headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["data"]
    counts = {row["consumer"]: row["requests"] for row in by_consumer}
    assert counts[name] == 1 and counts[f"jwt:{name}"] == 3


def test_an_operator_may_map_subjects_onto_key_consumers_on_purpose(shared_names, idp):
    name, start = shared_names
    gh = start("")  # consumer_prefix: "" - the documented, explicit mapping
    token = idp.token("ns", sub=name, roles=["eng"])
    before = chat(gh, f"key-of-{name}")
    after = chat(gh, token)
    assert before.status_code == after.status_code == 200
    assert int(after.headers["x-ratelimit-remaining-requests"]) < int(before.headers["x-ratelimit-remaining-requests"])


def test_an_unusable_subject_is_refused(shared_names, idp):
    _, start = shared_names
    gh = start(None)
    for sub in ("line\nbreak", "x" * 129):
        r = chat(gh, idp.token("ns", sub=sub, roles=["eng"]))
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
