"""Upstream credentials. Translators ask an UpstreamAuth to sign; they never see the secret."""
from __future__ import annotations

from typing import Protocol


class UpstreamAuth(Protocol):
    def apply(self, headers: dict[str, str], method: str, url: str, body: bytes) -> None: ...


class NoAuth:
    def apply(self, headers: dict[str, str], method: str, url: str, body: bytes) -> None:
        return None


class HeaderAuth:
    """A static secret in one header: `Authorization: Bearer K`, `x-api-key: K`, `x-goog-api-key: K`."""

    __slots__ = ("_name", "_value")

    def __init__(self, name: str, value: str):
        self._name = name
        self._value = value

    def apply(self, headers: dict[str, str], method: str, url: str, body: bytes) -> None:
        headers[self._name] = self._value

    def __repr__(self) -> str:  # never show the secret
        return f"HeaderAuth({self._name}=***)"


def bearer(api_key: str | None) -> UpstreamAuth:
    return HeaderAuth("Authorization", f"Bearer {api_key}") if api_key else NoAuth()
