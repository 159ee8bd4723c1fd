"""Pooled HTTP per Runtime (our lean HTTP/1.1 client for http://, aiohttp for https://), and
the mapping of transport failures to errors.

Error messages name the public model, never the upstream URL or host: those are internal.
"""
from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_mod
from collections.abc import AsyncIterator
from types import SimpleNamespace

import aiohttp
from yarl import URL

from gatehouse.errors import UpstreamBusy, UpstreamError, UpstreamTimeout
from gatehouse.upstream import h1
from gatehouse.upstream.pool import ConnectionLimit, PoolTimeout
from gatehouse.upstream.transport import UpstreamResponse


def _new_session(limit: ConnectionLimit | None) -> aiohttp.ClientSession:
    trace: list[aiohttp.TraceConfig] = []
    if limit is not None:  # the connector queues; its queue time is the pool wait metric
        trace.append(_pool_wait_trace(limit))
    connector = aiohttp.TCPConnector(
        limit=limit.size if limit is not None else 0, ttl_dns_cache=300, keepalive_timeout=30,
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        trace_configs=trace or None,
    )


def _pool_wait_trace(limit: ConnectionLimit) -> aiohttp.TraceConfig:
    tc = aiohttp.TraceConfig()

    async def queued(session: object, ctx: SimpleNamespace, params: object) -> None:
        ctx.queued_at = asyncio.get_running_loop().time()
        limit.waits += 1

    async def dequeued(session: object, ctx: SimpleNamespace, params: object) -> None:
        started = getattr(ctx, "queued_at", None)
        if started is not None and limit.observe_wait is not None:
            limit.observe_wait(asyncio.get_running_loop().time() - started)

    tc.on_connection_queued_start.append(queued)
    tc.on_connection_queued_end.append(dequeued)
    return tc


class HttpPool:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._limited: dict[int, aiohttp.ClientSession] = {}  # per provider: id(limit) -> session
        self.h1 = h1.H1Pool()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session for occasional calls (model lists, JWKS): no connection cap."""
        if self._session is None or self._session.closed:
            self._session = _new_session(None)
        return self._session

    def session_for(self, limit: ConnectionLimit) -> aiohttp.ClientSession:
        """A provider's own session, whose connector holds at most `limit.size` connections."""
        session = self._limited.get(id(limit))
        if session is None or session.closed:
            session = self._limited[id(limit)] = _new_session(limit)
        return session

    async def request(self, method: str, url: str, data: bytes | None = None,
                      headers: dict[str, str] | None = None,
                      timeout: aiohttp.ClientTimeout | None = None, limit: ConnectionLimit | None = None,
                      first_byte: float | None = None,
                      ssl: ssl_mod.SSLContext | bool = True) -> UpstreamResponse:
        """Plain-http upstreams (in-cluster vLLM/Ollama/llama.cpp: the high-volume path) go through
        the lean h1 client; https (managed providers) through aiohttp. Both answer with an
        upstream/transport.UpstreamResponse.

        `limit`: the provider's connection cap (queueing up to its timeout); `first_byte`:
        seconds until the response head, apart from the read timeout between bytes; `ssl`: a
        provider's own TLS context for https (gatehouse/tls.py), else the system's."""
        if url.startswith("http://"):
            return await self.h1.request(method, url, data, headers, timeout, limit, first_byte)
        session = self.session if limit is None else self.session_for(limit)
        # A URL with percent-escapes is sent as written (yarl would decode %3A in a Bedrock model
        # ARN, and the SigV4 signature covers the path as written).
        target = URL(url, encoded=True) if "%" in url else url
        async with asyncio.timeout(first_byte):
            return await session.request(method, target, data=data, headers=headers, timeout=timeout, ssl=ssl)

    async def close(self) -> None:
        self.h1.close()
        for session in [self._session, *self._limited.values()]:
            if session is not None and not session.closed:
                await session.close()


def timeout(connect: float, read: float, pool: float | None = None) -> aiohttp.ClientTimeout:
    """`pool`: how long aiohttp may queue for a connection of a capped connector (it counts
    that in `connect`; our h1 client reads only sock_connect and sock_read)."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read,
                                 connect=None if pool is None else pool + connect)


@contextlib.asynccontextmanager
async def transport_errors(model: str) -> AsyncIterator[None]:
    """Turn aiohttp/asyncio transport failures into gateway errors that name only the model."""
    try:
        yield
    except TRANSPORT_ERRORS as e:
        raise upstream_error(e, model) from None


TRANSPORT_ERRORS = (asyncio.TimeoutError, aiohttp.ClientError, h1.H1Error, ConnectionResetError, PoolTimeout)


def upstream_error(exc: BaseException, model: str) -> UpstreamError:
    """The gateway error for a transport failure (one of TRANSPORT_ERRORS)."""
    if isinstance(exc, PoolTimeout):
        return UpstreamBusy(f"The upstream for model '{model}' is at its connection limit; retry later.",
                            headers={"retry-after": "1"})
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout(f"The upstream for model '{model}' timed out.")
    if isinstance(exc, (aiohttp.ClientConnectorError, h1.ConnectFailed)):
        return UpstreamError(f"The upstream for model '{model}' is unreachable.", code="upstream_unreachable")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError,
                        ConnectionResetError, h1.Disconnected)):
        return UpstreamError(f"The upstream for model '{model}' closed the connection unexpectedly.",
                             code="upstream_disconnected")
    return UpstreamError(f"The upstream for model '{model}' failed.")


async def read_body(resp: UpstreamResponse, model: str) -> bytes:
    """The whole body of an upstream reply; the connection goes back to the pool either way."""
    try:
        async with transport_errors(model):
            return await resp.read()
    finally:
        resp.release()


async def iter_body(resp: UpstreamResponse, model: str) -> AsyncIterator[bytes]:
    """An upstream reply's body as it arrives, chunk by chunk, with no buffering."""
    try:
        async with transport_errors(model):
            async for chunk in resp.content.iter_any():
                yield chunk
    finally:
        resp.release()


def malformed(model: str) -> UpstreamError:
    return UpstreamError(f"The upstream for model '{model}' sent a malformed response.", code="upstream_malformed")
