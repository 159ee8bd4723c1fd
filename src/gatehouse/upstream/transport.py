"""What a provider holds after an upstream call: `UpstreamResponse`, the part of a response both
of our HTTP clients offer (upstream/h1.Response for plain-http upstreams, aiohttp's
ClientResponse for https ones; see upstream/client.HttpPool).

Why a Protocol: the providers were annotated with aiohttp.ClientResponse while half of the
traffic (the in-cluster upstreams) came back as h1.Response, and the splice was found by
probing for a `splice` attribute. Here both clients meet one small typed surface, and the one
ability only the lean client has, handing the body on from the connection's data callback
(asgi_ext.SpliceSource), is asked for through `splice_source`.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from gatehouse.asgi_ext import SpliceSource
from gatehouse.upstream import h1


class BodyReader(Protocol):
    def iter_any(self) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk, with no buffering."""
        ...


class UpstreamResponse(Protocol):
    """An upstream's answer: its head, and its body to read whole or as it arrives. `release()`
    pools the connection after a complete body and closes it otherwise."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> BodyReader: ...

    async def read(self) -> bytes: ...

    def release(self) -> Any: ...


def splice_source(resp: UpstreamResponse) -> SpliceSource | None:
    """The response as a SpliceSource when its client can splice (the lean h1 client), else
    None (aiohttp: the body is iterated)."""
    return resp if isinstance(resp, h1.Response) else None
