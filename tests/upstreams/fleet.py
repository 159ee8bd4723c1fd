"""A fleet of OpenAI-wire replicas for routing tests: each one a real server on its own port, with
a name, a latency, and a failure mode the test sets and changes while it runs.

Each replica answers POST /v1/chat/completions (JSON, or SSE when `stream` is true) with the text
`served by <name>`, counts the requests that reached it and how many it holds at once, and answers
GET /v1/models (its readiness), GET /health (`health`: the status it answers) and GET /metrics
(`engine()`: what it reports, in one engine's metric names). `fail` makes it answer that status instead (with `retry_after` as
its Retry-After header when set); `latency` waits before the response head.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from tests.upstreams.harness import Recorder, ServerThread


class Replica:
    def __init__(self, name: str, latency: float = 0.0, fail: int | None = None, retry_after: str | None = None):
        self.name = name
        self.latency = latency
        self.fail = fail
        self.retry_after = retry_after
        self.count = 0
        self.models: list[str] = []  # the `model` of each chat request, in order
        self.in_flight = 0
        self.max_in_flight = 0
        self.metrics = ""  # GET /metrics answers this (Prometheus text); "" = 404
        self.health = 200  # GET /health answers this status
        self.fail_next = 0  # the next this-many chat requests answer 502, then it recovers
        self.error_body: dict | None = None  # the body a `fail` answer carries (default: a server_error)
        self.server = ServerThread(self._make_app)

    def engine(self, style: str, waiting: float, running: float, kv: float | None) -> None:
        """What /metrics reports, in one engine's names: vllm | llamacpp | sglang; kv None: not
        exported (current llama.cpp)."""
        names = {"vllm": ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"),
                 "vllm-old": ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:gpu_cache_usage_perc"),
                 "llamacpp": ("llamacpp:requests_deferred", "llamacpp:requests_processing",
                              "llamacpp:kv_cache_usage_ratio"),
                 "sglang": ("sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage")}[style]
        labels = '{model_name="m",engine="0 1"}' if style.startswith("vllm") else ""
        self.metrics = "".join(f"# HELP {n} x\n# TYPE {n} gauge\n{n}{labels} {v}\n"
                               for n, v in zip(names, (waiting, running, kv)) if v is not None)

    @property
    def url(self) -> str:
        return self.server.url

    def _make_app(self, recorder: Recorder) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=self.health)

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self.metrics:
            return web.Response(status=404)
        return web.Response(text=self.metrics, content_type="text/plain")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.count += 1
        self.models.append(body.get("model", ""))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            if self.fail_next > 0:
                self.fail_next -= 1
                return web.json_response({"error": {"message": "flake", "type": "server_error"}}, status=502)
            if self.fail is not None:
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return web.json_response(self.error_body or {"error": {"message": "no", "type": "server_error"}},
                                         status=self.fail, headers=headers)
            text = f"served by {self.name}"
            usage = {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
            if not body.get("stream"):
                return web.json_response({
                    "id": "c1", "object": "chat.completion", "created": 1, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}], "usage": usage})
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for chunk in (
                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {"choices": [], "usage": usage},
            ):
                chunk.update({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]})
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        finally:
            self.in_flight -= 1


@contextmanager
def fleet(*replicas: Replica) -> Iterator[tuple[Replica, ...]]:
    started: list[Replica] = []
    try:
        for r in replicas:
            r.server.start()
            started.append(r)
        yield replicas
    finally:
        for r in started:
            r.server.stop()


def dead_url() -> str:
    """A loopback URL nobody listens on (connection refused)."""
    from tests.upstreams.harness import free_port

    return f"http://127.0.0.1:{free_port()}"
