"""The HTTP/1.1 server side: uvicorn runs the process (sockets, lifespan, signals, graceful
shutdown) and `H1Protocol`, plugged in as uvicorn's `http` protocol class, parses requests
with httptools and speaks ASGI to the app.

Why our own protocol: in a minimal proxy on one pinned core, uvicorn's httptools protocol
added 0.12 ms per request at concurrency 1 where a bare httptools protocol added 0.075 ms.
The difference is per-request machinery the gateway does not need: an asyncio.Event and a
keep-alive timer per request, a FlowControl object, a URL re-parse, and the response head
and body written in separate syscalls. See protocol.py and cycle.py for what is kept.
"""
from gatehouse.server.protocol import H1Protocol

__all__ = ["H1Protocol"]
