"""A test OIDC key server: GET /jwks serves the public half of whichever RSA keys the test has
made current, so tests can rotate keys at the "identity provider" while gatehouse runs."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://idp.example.test"
AUDIENCE = "gatehouse"


class KeyServer:
    def __init__(self) -> None:
        self.private: dict[str, rsa.RSAPrivateKey] = {}
        self.served: list[str] = []

    def new_key(self, kid: str, serve: bool = True) -> None:
        self.private[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if serve:
            self.served.append(kid)

    def serve_only(self, *kids: str) -> None:
        self.served = list(kids)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.served:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private[kid].public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def token(self, kid: str, sub: str = "user-1", roles: Any = ("eng",), *, iss: str = ISSUER,
              aud: str = AUDIENCE, expires_in: float = 300, alg: str = "RS256", sign_with: str | None = None,
              **claims: Any) -> str:
        now = int(time.time())
        payload = {"sub": sub, "iss": iss, "aud": aud, "iat": now, "exp": now + int(expires_in),
                   "roles": list(roles) if isinstance(roles, (list, tuple)) else roles, **claims}
        return jwt.encode(payload, self.private[sign_with or kid], algorithm=alg, headers={"kid": kid})

    def make_app(self, recorder) -> web.Application:
        async def jwks(request: web.Request) -> web.Response:
            return web.json_response(self.jwks())

        app = web.Application()
        app.router.add_get("/jwks", jwks)
        return app


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims() -> bytes:
    return json.dumps({"sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300,
                       "roles": ["eng"]}).encode()


def unsigned_token() -> str:
    """`alg: none` with no signature - must never be accepted."""
    return _b64(b'{"alg":"none","typ":"JWT"}') + "." + _b64(_claims()) + "."


def hmac_token(secret: bytes, kid: str) -> str:
    """HS256 keyed with `secret` (e.g. the public key's PEM: the classic algorithm confusion).
    Built by hand: PyJWT itself refuses to use a public key as an HMAC secret."""
    signing_input = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "." + _b64(_claims())
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(sig)
