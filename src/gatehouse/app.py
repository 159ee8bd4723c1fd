"""ASGI wiring: the route table, error rendering at the edge, draining, CORS and lifespan.

A model route's target is an Endpoint: gateway/handle.py walks its whole path (authenticate ->
parse -> resolve -> admit -> attempts -> relay -> settle). Other routes are plain handlers; those
marked `consumer` get the caller authenticated here first (`ex.principal`)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gatehouse.api import (
    admin,
    admin_cache,
    admin_deployments,
    admin_directory,
    admin_requests,
    anthropic,
    migration,
    ollama,
    openai,
    ops,
    responses,
    responses_state,
    ui,
    usage,
)
from gatehouse.api.cors import Cors
from gatehouse.api.errors import render, status_for
from gatehouse.api.http import ClientGone, Receive, Request, Scope, Send, header_list, send_bytes
from gatehouse.errors import GatehouseError, MethodNotAllowed, NotFound, ServiceUnavailable
from gatehouse.gateway.endpoint import Endpoint
from gatehouse.gateway.exchange import Exchange
from gatehouse.gateway.handle import handle
from gatehouse.observability.safe import describe
from gatehouse.reload import ConfigReloader
from gatehouse.runtime import Runtime

log = logging.getLogger("gatehouse.app")

Handler = Callable[[Runtime, Request, Exchange], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # may hold {name} parameters
    target: Handler | Endpoint  # an Endpoint: a model route (gateway/handle.py)
    surface: str
    dialect: str = "openai"
    consumer: bool = False  # a plain handler that needs the caller's key (ex.principal)


ROUTES: list[Route] = [
    Route("POST", "/v1/chat/completions", openai.CHAT, "chat"),
    Route("POST", "/v1/completions", openai.COMPLETIONS, "completions"),
    Route("POST", "/v1/embeddings", openai.EMBEDDINGS, "embeddings"),
    Route("GET", "/v1/models", openai.list_models, "models", consumer=True),
    Route("POST", "/v1/responses", responses.CREATE, "responses"),
    Route("GET", "/v1/responses/{response_id}", responses_state.retrieve, "stored_responses"),
    Route("DELETE", "/v1/responses/{response_id}", responses_state.delete, "stored_responses"),
    Route("GET", "/v1/responses/{response_id}/input_items", responses_state.input_items, "stored_responses"),
    Route("GET", "/v1/models/{model}", openai.get_model, "models", consumer=True),
    Route("GET", "/healthz", ops.healthz, "ops"),
    Route("GET", "/readyz", ops.readyz, "ops"),
    Route("POST", "/admin/keys", admin.create_key, "admin"),
    Route("GET", "/admin/keys", admin.list_keys, "admin"),
    Route("POST", "/admin/keys/{key_id}/revoke", admin.revoke_key, "admin"),
    Route("DELETE", "/admin/keys/{key_id}", admin.revoke_key, "admin"),
    Route("POST", "/v1/messages", anthropic.MESSAGES, "messages", "anthropic"),
    Route("POST", "/v1/messages/count_tokens", anthropic.COUNT_TOKENS, "count_tokens", "anthropic"),
    Route("POST", "/api/chat", ollama.CHAT, "chat", "ollama"),
    Route("POST", "/api/generate", ollama.GENERATE, "completions", "ollama"),
    Route("POST", "/api/embed", ollama.EMBED, "embeddings", "ollama"),
    Route("POST", "/api/embeddings", ollama.EMBEDDINGS, "embeddings", "ollama"),
    Route("GET", "/api/tags", ollama.tags, "models", "ollama", consumer=True),
    Route("POST", "/api/show", ollama.show, "models", "ollama", consumer=True),
    Route("GET", "/api/version", ollama.version, "ops", "ollama"),
    Route("GET", "/metrics", usage.metrics, "metrics"),
    Route("GET", "/admin/usage", usage.admin_usage, "admin"),
    Route("GET", "/v1/usage/me", usage.my_usage, "usage"),
    Route("GET", "/admin/keys/{key_id}", admin.show_key, "admin"),
    Route("POST", "/admin/keys/{key_id}/rotate", admin.rotate_key, "admin"),
    Route("POST", "/admin/groups", admin_directory.create_group, "admin"),
    Route("GET", "/admin/groups", admin_directory.list_groups, "admin"),
    Route("GET", "/admin/groups/{name}", admin_directory.show_group, "admin"),
    Route("PATCH", "/admin/groups/{name}", admin_directory.update_group, "admin"),
    Route("DELETE", "/admin/groups/{name}", admin_directory.delete_group, "admin"),
    Route("POST", "/admin/consumers", admin_directory.create_consumer, "admin"),
    Route("GET", "/admin/consumers", admin_directory.list_consumers, "admin"),
    Route("GET", "/admin/consumers/{name}", admin_directory.show_consumer, "admin"),
    Route("PATCH", "/admin/consumers/{name}", admin_directory.update_consumer, "admin"),
    Route("DELETE", "/admin/consumers/{name}", admin_directory.delete_consumer, "admin"),
    Route("GET", "/admin/limits", admin_directory.limits_status, "admin"),
    Route("GET", "/admin/deployments", admin_deployments.list_deployments, "admin"),
    Route("GET", "/admin/audit", admin.audit_log, "admin"),
    Route("POST", "/admin/reload", admin.reload_config, "admin"),
    Route("DELETE", "/admin/cache", admin_cache.clear_cache, "admin"),
    Route("GET", "/admin/models", ui.models, "admin"),
    Route("POST", "/admin/playground/key", ui.playground_key, "admin"),
    Route("GET", "/admin/deployments", admin_deployments.list_deployments, "admin"),
    Route("GET", "/admin/requests/{request_id}", admin_requests.request_summary, "admin"),
    Route("GET", "/ui", ui.page, "ui"),
    Route("GET", "/ui/{asset}", ui.page, "ui"),
    Route("POST", "/ui/login", ui.login, "ui"),
    Route("GET", "/ui/login", ui.login_options, "ui"),
    Route("POST", "/ui/logout", ui.logout, "ui"),
    Route("GET", "/ui/session", ui.session, "ui"),
    # Routes other gateways' users call (docs/migration.md); more are ALIASES below.
    Route("POST", "/chat", migration.SIMPLE_CHAT, "chat"),
    Route("GET", "/providers", migration.providers, "admin"),
    Route("GET", "/config", migration.effective_config, "admin"),
    Route("GET", "/api/ps", ollama.ps, "models", "ollama", consumer=True),
    Route("POST", "/api/pull", ollama.pull, "models", "ollama", consumer=True),
]
# Clients configured with a base URL without /v1 (some editors do this) reach the same routes.
ALIASES = {"/chat/completions": "/v1/chat/completions", "/completions": "/v1/completions",
           "/responses": "/v1/responses",
           "/embeddings": "/v1/embeddings", "/models": "/v1/models",
           # migration (docs/migration.md): Kong AI Gateway-style routes, a FastAPI gateway's /health
           "/ai/chat": "/v1/chat/completions", "/v1/chat": "/v1/chat/completions",
           "/ai/completions": "/v1/completions", "/health": "/healthz"}
ALWAYS_SERVED = frozenset({"/healthz", "/readyz", "/health"})
UNCAPPED = ALWAYS_SERVED | {"/metrics"}  # probes and scrapes still answer at server.max_in_flight


class Router:
    def __init__(self, routes: list[Route]):
        self.exact: dict[tuple[str, str], Route] = {}
        self.paths: set[str] = set()
        self.patterns: list[tuple[re.Pattern[str], Route]] = []
        for r in routes:
            if "{" in r.path:
                rx = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(r.path))
                self.patterns.append((re.compile(f"^{rx}$"), r))
            else:
                self.exact[(r.method, r.path)] = r
                self.paths.add(r.path)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        path = ALIASES.get(path, path)
        route = self.exact.get((method, path))
        if route is not None:
            return route, {}
        known_path = path in self.paths
        for rx, r in self.patterns:
            m = rx.match(path)
            if m:
                if r.method == method:
                    return r, m.groupdict()
                known_path = True
        if known_path:
            raise MethodNotAllowed(f"Method {method} is not allowed on {path}.")
        raise NotFound(f"Unknown route {method} {path}.", code="unknown_route")


class GatehouseApp:
    """The ASGI application. `runtime` is built in lifespan startup (or handed in by tests)."""

    def __init__(self, build: Callable[[], Awaitable[Runtime]], cors_origins: list[str] | None = None,
                 config_path: Path | None = None, config_sha256: str = "",
                 on_started: Callable[[], None] | None = None):
        self._build = build
        self._on_started = on_started  # `gatehouse serve`'s process settings (cli/serve.py): after the build
        self.cors = Cors(cors_origins or [])
        self._cors_origins = list(cors_origins or [])
        self.runtime: Runtime | None = None
        self.router = Router(ROUTES)
        self.inflight = 0
        self.config_path, self.config_sha256 = config_path, config_sha256
        self.reloader: ConfigReloader | None = None  # with a config file: SIGHUP, /admin/reload, watch
        self._retiring: asyncio.Task[None] | None = None  # closing the runtimes reloads replaced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    self.runtime = await self._build()
                except Exception as e:  # startup errors must not print secrets or traces
                    log.error("startup failed: %s", describe(e))
                    await send({"type": "lifespan.startup.failed", "message": describe(e)})
                    return
                if self.runtime.meter is not None:
                    self.runtime.meter.metrics.track_inflight(lambda: self.inflight)
                self._start_reloading(self.runtime)
                if self._on_started is not None:
                    self._on_started()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self._stop_reloading()
                if self.runtime is not None:
                    await self.runtime.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- reload (gatehouse/reload.py) ------------------------------------------------------

    def _start_reloading(self, rt: Runtime) -> None:
        rt.config_sha256 = self.config_sha256
        if self.config_path is not None:
            self.reloader = ConfigReloader(self.config_path, lambda: self.runtime, self.swap)
            rt.reloader = self.reloader
            self.reloader.start(self.config_sha256)
        rt.activate()
        # Not in the main thread (a server run in-process by a test or `gatehouse eval`): no SIGHUP.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        if self.reloader is None:
            log.error("SIGHUP: started without --config, there is no config file to reload")
        else:
            self.reloader.on_signal()

    def swap(self, new: Runtime) -> None:
        """Make `new` the live runtime; the one it replaces closes once its requests are done."""
        old, self.runtime = self.runtime, new  # requests starting from here on run on `new`
        if new.cfg.server.cors_origins != self._cors_origins:
            self._cors_origins = list(new.cfg.server.cors_origins)
            self.cors = Cors(self._cors_origins)
        logging.getLogger().setLevel(new.cfg.logging.level.upper())
        if old is not None:
            self._retiring = asyncio.get_running_loop().create_task(self._retire(old, self._retiring))

    async def _retire(self, old: Runtime, before: asyncio.Task[None] | None) -> None:
        if before is not None:  # in order: what `old` shares with an older one is closed by the later
            await asyncio.shield(before)
        while old.inflight > 0:  # polled, so the request path pays nothing for it
            await asyncio.sleep(0.05)
        try:
            await old.close()
        except Exception as e:
            log.error("closing the replaced runtime: %s", describe(e))
        else:
            log.info("config generation %d closed after its last request", old.generation)

    async def _stop_reloading(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self.reloader is not None:
            await self.reloader.stop()
        if self._retiring is not None:  # requests are over: uvicorn drained them before shutdown
            grace = self.runtime.cfg.server.shutdown_grace_seconds if self.runtime is not None else 30.0
            try:
                await asyncio.wait_for(asyncio.shield(self._retiring), grace)
            except TimeoutError:
                log.error("a replaced runtime still had requests after %.0fs; closing anyway", grace)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self.runtime
        req = Request(scope, receive, send)
        if self.cors.enabled and (origin := req.headers.get("origin")) is not None:
            if req.method == "OPTIONS" and "access-control-request-method" in req.headers:
                status, headers, body = self.cors.preflight(origin, req.headers.get("access-control-request-headers"))
                await send({"type": "http.response.start", "status": status,
                            "headers": [*headers, (b"content-length", b"%d" % len(body))]})
                await send({"type": "http.response.body", "body": body})
                return
            send = self.cors.wrap(origin, send)
        dialect = "anthropic" if req.path.startswith("/v1/messages") else \
            "ollama" if req.path.startswith("/api/") else "openai"
        ex = Exchange(req.request_id, "unknown", dialect, req.gateway_id, req.client_request_id)
        if rt is not None and rt.meter is not None and rt.meter.tracing is not None:
            rt.meter.tracing.start(ex, req.headers.get("traceparent"))
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if not started:
                started = True
                ex.status = ex.status or message.get("status", 0)  # for metrics and the access log
                req.send = send  # the rest of the response (stream chunks) goes straight out
            await send(message)

        req.send = tracking_send
        self.inflight += 1
        if rt is not None:
            rt.inflight += 1  # no await since `rt` was read: a reload cannot close it under us
        try:
            route, params = self.router.match(req.method, req.path)
            ex.surface, ex.dialect = route.surface, route.dialect
            req.path_params = params
            if rt is None or (rt.draining and req.path not in ALWAYS_SERVED):
                raise ServiceUnavailable("The gateway is shutting down; retry on another instance.",
                                         code="draining", headers={"connection": "close"})
            if self.inflight > rt.cfg.server.max_in_flight > 0 and req.path not in UNCAPPED:
                raise ServiceUnavailable("The gateway is at capacity; retry shortly.", code="overloaded",
                                         headers={"retry-after": "1"})
            target = route.target
            if isinstance(target, Endpoint):
                await handle(rt, req, ex, target)
            else:
                if route.consumer:
                    ex.principal = await rt.auth.authenticate(req.headers)
                await target(rt, req, ex)
        except GatehouseError as err:
            ex.status, ex.error_type = err.status, err.code
            if not started:
                await send_bytes(send, status_for(ex.dialect, err), render(ex.dialect, err),
                                 header_list(ex.request_id, {**ex.response_headers, **err.headers}))
        except ClientGone:
            ex.status, ex.error_type = 499, "client_closed"
        except asyncio.CancelledError:
            ex.status, ex.error_type = 499, "cancelled"
            raise
        except Exception as e:
            log.error("unhandled error in request %s: %s", ex.request_id, describe(e))
            ex.status, ex.error_type = 500, "internal"
            if not started:
                internal = GatehouseError(f"Internal gateway error (request id {ex.request_id}).")
                await send_bytes(send, 500, render(ex.dialect, internal), header_list(ex.request_id))
        finally:
            self.inflight -= 1
            try:
                if rt is not None and rt.meter is not None:
                    rt.meter.observe(ex, req.method, req.path)
            finally:
                if rt is not None:
                    rt.inflight -= 1
