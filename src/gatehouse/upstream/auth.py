"""Upstream credentials, built from a provider's config in one place (`auth_from_config`).

A provider type declares only its scheme (which header an `api_key` goes in, or AWS SigV4);
the provider base builds the UpstreamAuth and applies it to each request after translation,
so translators never see a secret. Reprs never show one.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("gatehouse.upstream.auth")


class UpstreamAuth(Protocol):
    @property
    def refreshes(self) -> bool:
        """True when `ready()` must be awaited before `apply()` (credentials that expire)."""
        ...

    def apply(self, headers: dict[str, str], method: str, url: str, body: bytes) -> None: ...

    async def ready(self) -> None:
        """Make sure usable credentials are at hand; raise CredentialsUnavailable if not."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class CredentialsUnavailable(Exception):
    """The gateway has no usable upstream credentials; the message names no secret."""


class _Static:
    __slots__ = ()
    refreshes = False

    async def ready(self) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class NoAuth(_Static):
    def apply(self, headers: dict[str, str], method: str, url: str, body: bytes) -> None:
        return None

    def __repr__(self) -> str:
        return "NoAuth()"


class HeaderAuth(_Static):
    """A static secret in one header: `Authorization: Bearer K`, `x-api-key: K`, `x-goog-api-key: K`."""

    __slots__ = ("_name", "_value")

    def __init__(self, name: str, value: str):
        self._name = name
        self._value = value

    def apply(self, headers: dict[str, str], method: str, url: str, body: bytes) -> None:
        headers[self._name] = self._value

    def __repr__(self) -> str:  # never show the secret
        return f"HeaderAuth({self._name}=***)"


@dataclass(frozen=True, slots=True)
class AuthScheme:
    """How a provider type authenticates to its upstream: `header` (with `prefix`) carries a
    configured `api_key`; without a key, `aws_service` names the service to sign for (SigV4)."""

    header: str | None = None
    prefix: str = ""
    aws_service: str | None = None


NO_AUTH = AuthScheme()
BEARER = AuthScheme("Authorization", "Bearer ")


def aws_region(cfg: Any) -> str | None:
    """The configured AWS region, else the gateway's environment's."""
    return getattr(cfg, "region", None) or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def auth_from_config(scheme: AuthScheme, cfg: Any) -> UpstreamAuth:
    """The UpstreamAuth for a provider's config (`api_key`; for AWS `region`, `profile`)."""
    api_key = getattr(cfg, "api_key", None)
    if api_key and scheme.header:
        return HeaderAuth(scheme.header, scheme.prefix + api_key)
    if scheme.aws_service:
        return SigV4Auth(scheme.aws_service, aws_region(cfg) or "us-east-1", getattr(cfg, "profile", None))
    return NoAuth()


# ---- AWS SigV4 ----------------------------------------------------------------------------

NO_CREDENTIALS = ("No AWS credentials were found for this gateway (looked in: environment, shared "
                  "profile, web identity / EKS IRSA, EKS Pod Identity / container, instance metadata).")


class AwsCredentialsUnavailable(CredentialsUnavailable):
    """Raised by SigV4Auth.ready(); the message names the source that failed, never a secret."""


def _error_kind(e: Exception) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(e).__name__


class SigV4Auth:
    """AWS Signature V4 with botocore's standard credential chain.

    Credentials are resolved in a worker thread (the chain may call STS, the container
    endpoint or instance metadata) and cached frozen. Refreshable credentials are re-checked
    in the background once a minute; botocore refreshes them 10-15 minutes before they
    expire, so after the first call no request waits on the network for credentials.
    """

    refreshes = True
    RECHECK_SECONDS = 60.0
    RETRY_AFTER_FAILURE_SECONDS = 5.0

    def __init__(self, service: str, region: str, profile: str | None = None):
        # botocore is imported only by gateways that sign for AWS
        from botocore.auth import SigV4Auth as BotoSigner
        from botocore.awsrequest import AWSRequest

        self._signer_class, self._request_class = BotoSigner, AWSRequest
        self.service = service
        self.region = region
        self.profile = profile
        self._source = None  # botocore Credentials or RefreshableCredentials
        self._frozen = None  # botocore ReadOnlyCredentials, what requests are signed with
        self._check_at = 0.0  # monotonic: next background freshness check
        self._failed: str | None = None
        self._retry_at = 0.0
        self._lock: asyncio.Lock | None = None
        self._refreshing: asyncio.Task[Any] | None = None

    def __repr__(self) -> str:  # never show credentials
        return f"SigV4Auth(service={self.service}, region={self.region})"

    def _load(self) -> None:
        """Resolve (the first time) and freeze credentials. Blocking: runs in a thread."""
        import botocore.session

        try:
            if self._source is None:
                self._source = botocore.session.Session(profile=self.profile).get_credentials()
                if self._source is None:
                    raise AwsCredentialsUnavailable(NO_CREDENTIALS)
            frozen = self._source.get_frozen_credentials()
        except AwsCredentialsUnavailable:
            raise
        except Exception as e:  # botocore messages may hold ARNs or paths: report only the kind
            method = getattr(self._source, "method", None) or "credential chain"
            raise AwsCredentialsUnavailable(
                f"Could not obtain AWS credentials from the {method} ({_error_kind(e)}).") from None
        if not frozen.access_key or not frozen.secret_key:
            raise AwsCredentialsUnavailable(NO_CREDENTIALS)
        self._frozen = frozen
        refreshable = hasattr(self._source, "refresh_needed")
        self._check_at = time.monotonic() + (self.RECHECK_SECONDS if refreshable else float("inf"))

    async def start(self) -> None:
        """Warm the credentials at startup; a failure is logged, not fatal (retried on use)."""
        try:
            await self.ready()
        except AwsCredentialsUnavailable as e:
            log.warning("AWS credentials for %s (%s) are not available yet: %s", self.service, self.region, e)

    async def ready(self) -> None:
        """Make sure usable credentials are cached; costs one clock read when they are."""
        now = time.monotonic()
        if self._frozen is not None:
            if now >= self._check_at:
                self._check_at = now + self.RECHECK_SECONDS
                if self._refreshing is None or self._refreshing.done():
                    self._refreshing = asyncio.create_task(self._refresh_quietly())
            return
        if self._failed is not None and now < self._retry_at:
            raise AwsCredentialsUnavailable(self._failed)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one resolution at a time; the others wait for its result
            if self._frozen is not None:
                return
            try:
                await asyncio.to_thread(self._load)
            except AwsCredentialsUnavailable as e:
                self._failed = str(e)
                self._source = None  # the environment may be fixed later (a token file mounted)
                self._retry_at = time.monotonic() + self.RETRY_AFTER_FAILURE_SECONDS
                raise
            self._failed = None

    async def _refresh_quietly(self) -> None:
        try:
            await asyncio.to_thread(self._load)
        except AwsCredentialsUnavailable as e:
            log.warning("refreshing AWS credentials failed (keeping the current ones): %s", e)

    def apply(self, headers: dict[str, str], method: str, url: str, body: bytes) -> None:
        request = self._request_class(method=method, url=url, data=body, headers=headers)
        self._signer_class(self._frozen, self.service, self.region).add_auth(request)
        headers.update(request.headers.items())

    async def close(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
