"""Pooled HTTP per Runtime (our lean HTTP/1.1 client for http://, aiohttp for https://), and
the mapping of transport failures to errors.

Error messages name the public model, never the upstream URL or host: those are internal.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import aiohttp

from gatehouse.errors import UpstreamError, UpstreamTimeout
from gatehouse.upstream import h1


class HttpPool:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.h1 = h1.H1Pool()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0, ttl_dns_cache=300, keepalive_timeout=30, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                json_serialize=None,  # we always send bytes
            )
        return self._session

    async def request(self, method: str, url: str, data: bytes | None = None,
                      headers: dict[str, str] | None = None,
                      timeout: aiohttp.ClientTimeout | None = None) -> h1.Response | aiohttp.ClientResponse:
        """Plain-http upstreams (in-cluster vLLM/Ollama/llama.cpp: the high-volume path) go through
        the lean h1 client; https (managed providers) through aiohttp. Both answer with an object
        offering .status, .headers, read(), content.iter_any() and release()."""
        if url.startswith("http://"):
            return await self.h1.request(method, url, data, headers, timeout)
        return await self.session.request(method, url, data=data, headers=headers, timeout=timeout)

    async def close(self) -> None:
        self.h1.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()


def timeout(connect: float, read: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)


@contextlib.asynccontextmanager
async def transport_errors(model: str) -> AsyncIterator[None]:
    """Turn aiohttp/asyncio transport failures into gateway errors that name only the model."""
    try:
        yield
    except TRANSPORT_ERRORS as e:
        raise upstream_error(e, model) from None


TRANSPORT_ERRORS = (asyncio.TimeoutError, aiohttp.ClientError, h1.H1Error, ConnectionResetError)


def upstream_error(exc: BaseException, model: str) -> UpstreamError:
    """The gateway error for a transport failure (one of TRANSPORT_ERRORS)."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout(f"The upstream for model '{model}' timed out.")
    if isinstance(exc, (aiohttp.ClientConnectorError, h1.ConnectFailed)):
        return UpstreamError(f"The upstream for model '{model}' is unreachable.", code="upstream_unreachable")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError,
                        ConnectionResetError, h1.Disconnected)):
        return UpstreamError(f"The upstream for model '{model}' closed the connection unexpectedly.",
                             code="upstream_disconnected")
    return UpstreamError(f"The upstream for model '{model}' failed.")


async def read_body(resp: aiohttp.ClientResponse, model: str) -> bytes:
    """The whole body of an upstream reply; the connection goes back to the pool either way."""
    try:
        async with transport_errors(model):
            return await resp.read()
    finally:
        resp.release()


async def iter_body(resp: aiohttp.ClientResponse, model: str) -> AsyncIterator[bytes]:
    """An upstream reply's body as it arrives, chunk by chunk, with no buffering."""
    try:
        async with transport_errors(model):
            async for chunk in resp.content.iter_any():
                yield chunk
    finally:
        resp.release()


def malformed(model: str) -> UpstreamError:
    return UpstreamError(f"The upstream for model '{model}' sent a malformed response.", code="upstream_malformed")
