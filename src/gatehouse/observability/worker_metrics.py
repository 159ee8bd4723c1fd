"""/metrics under `serve --workers N`: every worker's series in one answer, labelled `worker`.

Why: the workers share one port, so a Prometheus scrape lands on any one of them; if each
answered with its own counters only, the series would jump between workers' values from
scrape to scrape and every rate() would be wrong. Instead each worker also answers on a unix
socket in the data directory (`run/metrics-<i>.sock`, mode 0600: only this user); the worker
that takes a scrape reads its siblings' expositions there and merges them, family by family,
with a `worker="<i>"` label on each sample. Sums over the label (`sum(rate(...))`) give the
gateway's totals; the eval results, which come from the shared store, are exported once,
without the label. A worker that does not answer within a second (restarting) is left out of
that scrape. All of this costs nothing per request: it runs only when scraped, and a
single-process gateway renders its registry as before.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from gatehouse.observability.metrics import Metrics

log = logging.getLogger("gatehouse.metrics")

PEER_TIMEOUT_SECONDS = 1.0
SHARED_PREFIXES = (b"gatehouse_eval_",)  # from the store, the same on every worker: exported once


def socket_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"metrics-{index}.sock"


def _families(text: bytes) -> list[tuple[bytes, list[bytes], list[bytes]]]:
    """(name, # lines, sample lines) per metric family, in order (Prometheus text format 0.0.4)."""
    out: list[tuple[bytes, list[bytes], list[bytes]]] = []
    current: tuple[bytes, list[bytes], list[bytes]] | None = None
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith(b"# HELP ") or line.startswith(b"# TYPE "):
            name = line.split(b" ", 3)[2]
            if current is None or current[0] != name:
                current = (name, [], [])
                out.append(current)
            current[1].append(line)
        elif line.startswith(b"#"):
            continue
        elif current is not None:
            current[2].append(line)
    return out


def _labelled(sample: bytes, label: bytes) -> bytes:
    """`name{a="b"} 1` -> `name{worker="0",a="b"} 1`; `name 1` -> `name{worker="0"} 1`."""
    brace, space = sample.find(b"{"), sample.find(b" ")
    if brace != -1 and (space == -1 or brace < space):
        return sample[:brace + 1] + label + b"," + sample[brace + 1:]
    return sample[:space] + b"{" + label + b"}" + sample[space:]


def merge(expositions: list[tuple[int, bytes]]) -> bytes:
    """One exposition from several workers' (index, text): each family once, every worker's
    samples labelled; shared families only from the first worker, unlabelled."""
    order: list[bytes] = []
    headers: dict[bytes, list[bytes]] = {}
    samples: dict[bytes, list[bytes]] = {}
    for n, (index, text) in enumerate(expositions):
        label = b'worker="%d"' % index
        for name, head, lines in _families(text):
            shared = name.startswith(SHARED_PREFIXES)
            if name not in headers:
                order.append(name)
                headers[name] = head
                samples[name] = []
            if shared:
                if n == 0:
                    samples[name].extend(lines)
            else:
                samples[name].extend(_labelled(s, label) for s in lines)
    out: list[bytes] = []
    for name in order:
        out.extend(headers[name])
        out.extend(samples[name])
    return b"\n".join(out) + b"\n"


class WorkerMetrics:
    """This worker's socket for its siblings, and the merged /metrics answer."""

    def __init__(self, metrics: Metrics, run_dir: Path, index: int, workers: int):
        self.metrics = metrics
        self.run_dir = run_dir
        self.index = index
        self.workers = workers
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = socket_path(self.run_dir, self.index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by this worker's previous life (SIGKILL)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._answer, path=str(path))
        finally:
            os.umask(old)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.metrics.render())
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _peer(self, index: int) -> tuple[int, bytes] | None:
        try:
            async with asyncio.timeout(PEER_TIMEOUT_SECONDS):
                reader, writer = await asyncio.open_unix_connection(str(socket_path(self.run_dir, index)))
                try:
                    return index, await reader.read()
                finally:
                    writer.close()
        except (TimeoutError, OSError) as e:
            log.debug("worker %d's metrics were not read: %s", index, type(e).__name__)
            return None

    async def render(self) -> bytes:
        peers = await asyncio.gather(*(self._peer(i) for i in range(self.workers) if i != self.index))
        return merge([(self.index, self.metrics.render()), *(p for p in peers if p is not None)])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(OSError):
                socket_path(self.run_dir, self.index).unlink()
            self._server = None
