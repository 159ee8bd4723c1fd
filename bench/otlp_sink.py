"""A trace collector that accepts and discards OTLP, for the bench's scenario (k).

OTLP/HTTP on --http-port (POST /v1/traces, any Content-Type: 200 with an empty response,
which is an empty ExportTraceServiceResponse in protobuf and `{}` in JSON) and, when grpcio is
installed, OTLP/gRPC on --grpc-port (TraceService/Export answered with an empty response).
GET /stats answers the requests and bytes received, so the bench can say spans arrived.
"""
from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATS = {"http_requests": 0, "http_bytes": 0, "grpc_requests": 0, "grpc_bytes": 0}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with LOCK:
            STATS["http_requests"] += 1
            STATS["http_bytes"] += len(body)
        reply = b"{}" if self.headers.get("Content-Type", "").startswith("application/json") else b""
        self.send_response(200)
        self.send_header("Content-Type", self.headers.get("Content-Type", "application/x-protobuf"))
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self) -> None:
        with LOCK:
            body = json.dumps(STATS).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve_grpc(port: int) -> object | None:
    try:
        from concurrent import futures

        import grpc
    except ImportError:
        return None

    def export(request: bytes, context: object) -> bytes:
        with LOCK:
            STATS["grpc_requests"] += 1
            STATS["grpc_bytes"] += len(request)
        return b""

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)})  # bytes in, bytes out
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, default=0)
    args = p.parse_args()
    server = serve_grpc(args.grpc_port) if args.grpc_port else None  # noqa: F841 - kept alive
    ThreadingHTTPServer(("127.0.0.1", args.http_port), Handler).serve_forever()


if __name__ == "__main__":
    main()
