"""A small OTLP/HTTP trace collector for the tests: POST /v1/traces with a protobuf
ExportTraceServiceRequest (what the OpenTelemetry SDK's OTLP/HTTP exporter sends)."""
from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.upstreams.harness import Recorder, ServerThread


def make_app(recorder: Recorder) -> web.Application:
    async def traces(request: web.Request) -> web.Response:
        ExportTraceServiceRequest.FromString(await request.read())  # must parse
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    return app


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def spans(collector: ServerThread) -> list[dict[str, Any]]:
    """Every span received so far, flattened: ids as hex, attributes as a dict."""
    out = []
    for seen in list(collector.recorder.requests):
        if seen.path != "/v1/traces":
            continue
        req = ExportTraceServiceRequest.FromString(seen.body)
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
                        "resource": resource, "raw": s.SerializeToString(),
                    })
    return out


def wait_for(collector: ServerThread, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = spans(collector)
        if predicate(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)
