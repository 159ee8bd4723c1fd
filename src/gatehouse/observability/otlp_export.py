"""Where and how traces go: the settings (YAML, then the standard OTEL_* variables, then the
OTLP defaults) and the export thread.

The request path only appends finished spans (tuples of references, tracing.py) to a bounded
deque (full: the span is dropped and counted, never waited for). One daemon thread wakes every
`schedule_delay` or when a batch is full, encodes the batch (otlp_items.py, otlp_encode.py) and
sends it: OTLP/HTTP (protobuf or JSON, one kept-alive connection, stdlib http.client) or
OTLP/gRPC (grpcio, the encoded bytes sent as the TraceService/Export request as they are). A
failed export is logged (at most once a minute) and its spans are dropped: a trace collector
that is down must not grow the gateway.
"""
from __future__ import annotations

import gzip
import http.client
import logging
import os
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatehouse import __version__
from gatehouse.config import ConfigError, TracingConfig
from gatehouse.observability.otlp_encode import AttrValue, Encoder, JsonEncoder, Layout, ProtobufEncoder

log = logging.getLogger("gatehouse.tracing")
PROTOCOLS = ("http/protobuf", "http/json", "grpc")
GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass(frozen=True)
class Sampler:
    ratio: float = 1.0  # share of new traces kept (by trace id, as TraceIdRatioBased)
    parent_based: bool = True  # a client's traceparent decides for its trace


@dataclass(frozen=True)
class ExportSettings:
    protocol: str = "http/protobuf"
    endpoint: str = "http://localhost:4318/v1/traces"
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    compression: str = "none"
    schedule_delay: float = 5.0
    max_queue: int = 8192
    max_batch: int = 512
    resource: dict[str, AttrValue] = field(default_factory=dict)
    sampler: Sampler = Sampler()


def _env(name: str, env: dict[str, str]) -> str | None:
    """OTEL_EXPORTER_OTLP_TRACES_<name>, else OTEL_EXPORTER_OTLP_<name>."""
    v = env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or env.get(f"OTEL_EXPORTER_OTLP_{name}")
    return v.strip() if v and v.strip() else None


def _pairs(s: str | None) -> dict[str, str]:
    """`k=v,k2=v2` with URL-encoded values (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES)."""
    out = {}
    for part in (s or "").split(","):
        k, sep, v = part.partition("=")
        if sep and k.strip():
            out[urllib.parse.unquote(k.strip())] = urllib.parse.unquote(v.strip())
    return out


def _number(env: dict[str, str], name: str, default: float) -> float:
    try:
        return float(env[name])
    except (KeyError, ValueError):
        return default


def _sampler(cfg: TracingConfig, env: dict[str, str]) -> Sampler:
    if cfg.sample_ratio is not None:
        return Sampler(cfg.sample_ratio, True)
    name = (env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower()
    parent_based = name.startswith("parentbased_")
    base = name.removeprefix("parentbased_")
    if base == "always_off":
        return Sampler(0.0, parent_based)
    if base == "traceidratio":
        ratio = min(1.0, max(0.0, _number(env, "OTEL_TRACES_SAMPLER_ARG", 1.0)))
        return Sampler(ratio, parent_based)
    if base != "always_on":
        log.warning("OTEL_TRACES_SAMPLER=%s is not supported here; sampling every trace", name)
    return Sampler(1.0, parent_based)


def settings(cfg: TracingConfig, env: dict[str, str] | None = None) -> ExportSettings:
    """The YAML's values, else the OTEL_* variables, else the OTLP defaults."""
    env = dict(os.environ) if env is None else env
    protocol = cfg.protocol or _env("PROTOCOL", env) or "http/protobuf"
    if protocol not in PROTOCOLS:
        raise ConfigError(f"tracing: protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    grpc = protocol == "grpc"
    endpoint = cfg.endpoint or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not endpoint:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        if grpc:
            endpoint = base or "http://localhost:4317"
        else:  # the generic variable is a base URL: the signal's path is appended
            endpoint = base.rstrip("/") + "/v1/traces" if base else "http://localhost:4318/v1/traces"
    headers = {**_pairs(_env("HEADERS", env)), **cfg.headers}
    resource: dict[str, AttrValue] = {"service.name": cfg.service_name, "telemetry.sdk.name": "gatehouse",
                                      "telemetry.sdk.language": "python", "telemetry.sdk.version": __version__}
    resource.update(_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES")))
    if env.get("OTEL_SERVICE_NAME", "").strip():
        resource["service.name"] = env["OTEL_SERVICE_NAME"].strip()
    timeout = _env("TIMEOUT", env)
    return ExportSettings(
        protocol=protocol, endpoint=endpoint, headers=headers,
        timeout=float(timeout) / 1000 if timeout and timeout.replace(".", "", 1).isdigit() else 10.0,
        compression="gzip" if (_env("COMPRESSION", env) or "").lower() == "gzip" else "none",
        schedule_delay=_number(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
        # 8192, not the SDK's 2048: at 7,000 requests/s (two spans each) 2048 spans are 150 ms,
        # less than one slow export to a busy collector; 8192 queued spans are ~5 MB
        max_queue=max(1, int(_number(env, "OTEL_BSP_MAX_QUEUE_SIZE", 8192))),
        max_batch=max(1, int(_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512))),
        resource=resource, sampler=_sampler(cfg, env))


class _HttpSender:
    def __init__(self, s: ExportSettings, content_type: str):
        u = urllib.parse.urlsplit(s.endpoint)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError(f"tracing: endpoint {s.endpoint!r} is not an http(s) URL")
        self._https, self._host, self._port = u.scheme == "https", u.hostname, u.port
        self._path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self._headers = {**s.headers, "Content-Type": content_type}
        if s.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self._gzip, self._timeout = s.compression == "gzip", s.timeout
        self._conn: http.client.HTTPConnection | None = None

    def send(self, body: bytes) -> None:
        if self._gzip:
            body = gzip.compress(body, 1)
        for retry in (True, False):  # a kept-alive connection the collector closed: once more on a new one
            if self._conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._conn = cls(self._host, self._port, timeout=self._timeout)
            try:
                self._conn.request("POST", self._path, body, self._headers)
                resp = self._conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if retry:
                    continue
                raise
            if resp.status >= 300:
                raise OSError(f"HTTP {resp.status}")
            return

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _GrpcSender:
    def __init__(self, s: ExportSettings):
        try:
            import grpc  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            raise ConfigError("tracing.protocol grpc: grpcio is not installed "
                              "(pip install 'llm-gatehouse[otel]')") from None
        self._grpc = grpc
        u = urllib.parse.urlsplit(s.endpoint if "://" in s.endpoint else f"http://{s.endpoint}")
        self._target = f"{u.hostname}:{u.port or 4317}"
        self._secure = u.scheme == "https"
        self._metadata = tuple((k.lower(), v) for k, v in s.headers.items())
        self._compression = grpc.Compression.Gzip if s.compression == "gzip" else None
        self._timeout = s.timeout
        self._channel: Any = None
        self._call: Any = None

    def send(self, body: bytes) -> None:
        if self._call is None:  # made on the export thread, after any fork
            grpc = self._grpc
            self._channel = (grpc.secure_channel(self._target, grpc.ssl_channel_credentials()) if self._secure
                             else grpc.insecure_channel(self._target))
            self._call = self._channel.unary_unary(GRPC_METHOD)  # no (de)serializer: bytes as they are
        try:
            self._call(body, timeout=self._timeout, metadata=self._metadata, compression=self._compression)
        except self._grpc.RpcError as e:
            raise OSError(f"gRPC {e.code()}") from None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = self._call = None


class Exporter:
    """The bounded queue the request path appends to, and the thread that empties it."""

    def __init__(self, s: ExportSettings, layouts: dict[int, Layout],
                 encode_items: Callable[[Encoder, list[Any]], bytes]):
        scope = ("gatehouse", __version__)
        self.encode_items = encode_items  # queued items -> one request (observability/otlp_items.py)
        encoder = JsonEncoder if s.protocol == "http/json" else ProtobufEncoder
        self.encoder: Encoder = encoder(s.resource, scope, layouts)
        self.sender = _GrpcSender(s) if s.protocol == "grpc" else _HttpSender(s, self.encoder.content_type)
        self.queue: deque[Any] = deque()
        self.max_queue, self.max_batch, self.delay = s.max_queue, s.max_batch, s.schedule_delay
        self.wake = threading.Event()  # set by the request path when a batch is full
        self.dropped = 0  # queue full (counted on the request path)
        self.failed = 0  # spans of exports that failed
        self.exported = 0
        self._stop = False
        self._warned = 0.0
        self._thread = threading.Thread(target=self._run, name="gatehouse-otlp-export", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            full = self.wake.wait(self.delay)  # True: a batch is full; False: the delay is over
            self.wake.clear()
            stop = self._stop
            self._export_queued(full_only=full and not stop)
            if stop:
                self.sender.close()
                return

    def _export_queued(self, full_only: bool = False) -> None:
        """Send what is queued, in batches of `max_batch`. Woken by a full batch, only full
        batches: what the request path adds meanwhile waits for the next full batch or the
        delay. (Sending it at once, as this did, made under load a train of small exports, each
        with its HTTP request and response, thread wake-ups and GIL hand-offs: ~200 spans per
        export instead of 512 in bench (k) at 2,700 requests/s.)"""
        q, size = self.queue, self.max_batch
        while len(q) >= size or (q and not full_only):
            n = min(len(q), size)
            pop = q.popleft
            batch = [pop() for _ in range(n)]
            try:
                self.sender.send(self.encode_items(self.encoder, batch))
                self.exported += n
            except Exception as e:
                self.failed += n
                self._warn(f"export to the trace collector failed ({e}); {n} spans dropped")
        if self.dropped:
            self._warn(f"the trace queue was full: {self.dropped} spans dropped so far "
                       "(OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_SCHEDULE_DELAY)")

    def _warn(self, msg: str) -> None:
        now = time.monotonic()
        if now - self._warned >= 60:
            self._warned = now
            log.warning("tracing: %s", msg)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued and stop the thread (blocking: call it off the event loop)."""
        self._stop = True
        self.wake.set()
        self._thread.join(timeout)
