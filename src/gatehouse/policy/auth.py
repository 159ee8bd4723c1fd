"""Authenticate a request to a Principal through a chain of authenticators.

The chain reads the credential once - `Authorization: Bearer K`, `x-api-key: K` or `apikey: K`
- and asks each authenticator in turn; the first that recognises the credential's kind
decides: it returns the Principal or raises (401 AuthenticationFailed, 403, 503). Runtime
builds the chain from config: `[BearerJwt, KeyAuth]` with `auth.jwt`, else `[KeyAuth]`.
API keys (key_auth.py) come last and claim every credential, so a credential nobody knows
gets the same 401 as an unknown key. A new kind of credential (another token issuer, say)
is one more Authenticator in the list.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from gatehouse.errors import AuthenticationFailed
from gatehouse.policy.principal import Principal

INVALID_KEY = "Invalid API key: provide a valid key in the Authorization header (Bearer), x-api-key or apikey."


class Authenticator(Protocol):
    async def authenticate(self, credential: str) -> Principal | None:
        """The Principal for a credential of this authenticator's kind; None when the credential
        is not of its kind (the chain asks the next one). Raises when it is, but is not valid.
        `credential` is "" when the request carries none."""
        ...


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or headers.get("apikey") or None


class AuthChain:
    __slots__ = ("authenticators",)

    def __init__(self, authenticators: Sequence[Authenticator]):
        self.authenticators = tuple(authenticators)

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        credential = key_from_headers(headers) or ""
        for authenticator in self.authenticators:
            principal = await authenticator.authenticate(credential)
            if principal is not None:
                return principal
        raise AuthenticationFailed(INVALID_KEY)
