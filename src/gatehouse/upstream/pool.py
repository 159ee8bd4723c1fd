"""The cap on connections to one provider's upstream (`max_connections`), with a queue.

Why: 2,000 concurrent slow requests opened 2,000 connections to one upstream. Each request
in flight holds one connection from before it is sent until its response is released (or
the connection dies), so holding at most `size` slots bounds the connections: a new one is
opened only when no idle one is pooled. (A slot is also freed once the whole response has
arrived: the upstream's work is done, and a response its reader never releases must not hold
a slot for ever.) Requests beyond the cap wait in FIFO order, at most
`timeout` seconds, then fail with PoolTimeout (503 `upstream_busy`, tried on the next
deployment). The fast path (a slot free, nobody waiting) is two comparisons and an add.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class PoolTimeout(Exception):
    """No connection to the upstream became free within the provider's pool_timeout."""


class ConnectionLimit:
    __slots__ = ("active", "observe_wait", "size", "timeout", "waiters", "waits")

    def __init__(self, size: int, timeout: float):
        self.size = size
        self.timeout = timeout
        self.active = 0  # slots held
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.observe_wait: Callable[[float], None] | None = None  # pool wait metric (set by the Runtime)
        self.waits = 0  # acquisitions that had to queue

    def try_acquire(self) -> bool:
        """Take a free slot without waiting (nobody queued before us)."""
        if self.active < self.size and not self.waiters:
            self.active += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.waiters.append(fut)
        self.waits += 1
        started = loop.time()
        try:
            async with asyncio.timeout(self.timeout):
                await fut
        except BaseException as e:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we gave up: pass it on
            else:
                fut.cancel()
                try:
                    self.waiters.remove(fut)
                except ValueError:
                    pass
            if isinstance(e, TimeoutError):
                raise PoolTimeout() from None
            raise
        finally:
            if self.observe_wait is not None:
                self.observe_wait(loop.time() - started)

    def release(self) -> None:
        """Free a slot: handed straight to the first live waiter, if any."""
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.active -= 1
