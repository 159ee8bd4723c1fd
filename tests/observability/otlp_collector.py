"""Small OTLP trace collectors for the tests: OTLP/HTTP (POST /v1/traces, protobuf or JSON by
Content-Type) and OTLP/gRPC (the TraceService/Export of opentelemetry-proto's generated stubs on
a real grpcio server). Every body is parsed with the generated opentelemetry-proto classes — a
body that does not parse is answered 400 (HTTP) or INVALID_ARGUMENT (gRPC) and fails the test."""
from __future__ import annotations

import base64
import json
import threading
import time
from concurrent import futures
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.upstreams.harness import Recorder, ServerThread, free_port


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP/JSON: the protobuf JSON mapping, except that ids are hex (not base64)."""
    doc = json.loads(body)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in s:
                        s[k] = base64.b64encode(bytes.fromhex(s[k])).decode()
    return json_format.ParseDict(doc, ExportTraceServiceRequest())  # unknown fields refused


def parse(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    if content_type.startswith("application/json"):
        return parse_json(body)
    assert content_type == "application/x-protobuf", content_type
    return ExportTraceServiceRequest.FromString(body)


def make_app(recorder: Recorder) -> web.Application:
    async def traces(request: web.Request) -> web.Response:
        try:
            parse(await request.read(), request.content_type)
        except Exception as e:
            return web.Response(status=400, text=str(e))
        if request.content_type == "application/json":
            return web.json_response({})
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    return app


class GrpcCollector:
    """OTLP/gRPC on 127.0.0.1:<free port>; `exports` are the requests received, with metadata."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as stubs

        self.port = free_port()
        self.exports: list[tuple[ExportTraceServiceRequest, dict[str, str]]] = []
        self._lock = threading.Lock()
        collector = self

        class Service(stubs.TraceServiceServicer):
            def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
                with collector._lock:
                    collector.exports.append((request, dict(context.invocation_metadata())))
                return ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        stubs.add_TraceServiceServicer_to_server(Service(), self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GrpcCollector:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(None)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def requests(collector: ServerThread | GrpcCollector) -> list[ExportTraceServiceRequest]:
    if isinstance(collector, GrpcCollector):
        with collector._lock:
            return [r for r, _ in collector.exports]
    return [parse(seen.body, seen.headers.get("content-type", ""))
            for seen in list(collector.recorder.requests) if seen.path == "/v1/traces"]


def spans(collector: ServerThread | GrpcCollector) -> list[dict[str, Any]]:
    """Every span received so far, flattened: ids as hex, attributes as a dict."""
    out = []
    for req in requests(collector):
        for rs in req.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append({
                        "name": s.name, "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(), "kind": s.kind, "status": s.status.code,
                        "start": s.start_time_unix_nano, "end": s.end_time_unix_nano,
                        "attributes": {a.key: _value(a.value) for a in s.attributes},
                        "events": [{"name": e.name, "time": e.time_unix_nano} for e in s.events],
                        "resource": resource, "scope": ss.scope.name, "raw": s.SerializeToString(),
                    })
    return out


def wait_for(collector: ServerThread | GrpcCollector, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = spans(collector)
        if predicate(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)
