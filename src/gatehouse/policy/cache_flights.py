"""Request coalescing: identical cacheable misses in flight at once make one upstream call.

The first miss for a key `take_off`s a flight (a future); an identical request that misses while
it is in the air `wait`s for it — at most `coalesce_seconds` — and is answered with the entry the
first one stored, as a hit. The first request `land`s its flight in its settle, with the entry, or
with None when its answer was not one to store (an error, a cut or filtered answer, a request that
ended early): the waiters then go upstream themselves, as they do when the wait times out. In one
process only (replicas sharing Redis each make their own first call).
"""
from __future__ import annotations

import asyncio


class Flights:
    __slots__ = ("_air",)

    def __init__(self) -> None:
        self._air: dict[str, asyncio.Future[bytes | None]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._air

    def take_off(self, key: str) -> asyncio.Future[bytes | None] | None:
        """A flight for `key`, or None when one is in the air already (this request then goes
        upstream on its own: it waited for that one and got nothing)."""
        if key in self._air:
            return None
        flight: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._air[key] = flight
        return flight

    async def wait(self, key: str, timeout: float) -> bytes | None:
        """The entry of the flight in the air for `key`; None when there is none, it landed without
        one, or it took longer than `timeout` seconds."""
        flight = self._air.get(key)
        if flight is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(flight), timeout)
        except TimeoutError:
            return None

    def land(self, key: str, flight: asyncio.Future[bytes | None], payload: bytes | None) -> None:
        if self._air.get(key) is flight:
            del self._air[key]
        if not flight.done():
            flight.set_result(payload)
