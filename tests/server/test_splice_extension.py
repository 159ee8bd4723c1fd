"""The splice is a capability our server offers in the scope's extensions (asgi_ext.SPLICE), not
something the app finds by the identity of `send`: a browser request (an `Origin` header, so the
CORS wrapper is around `send`) behind one more `send` wrapper (as an OpenTelemetry middleware
would add) is still spliced, and under uvicorn's own protocol, which offers no such extension,
the same app streams the same bytes the plain way.

The gateway runs in the test process (uvicorn in a thread, tests/server/serving.py) over the
OpenAI-wire test upstream; the wrapper records which message types it passed to the server.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatehouse.app import GatehouseApp
from gatehouse.asgi_ext import DISCONNECT, SPLICE
from gatehouse.config import from_mapping
from gatehouse.runtime import Runtime
from tests.conftest import ALICE_KEY, base_config
from tests.server.serving import serve_h1
from tests.upstreams.harness import ServerThread

ORIGIN = "https://chat.example.org"


class SendRecorder:
    """An ASGI middleware that wraps `send` and passes every message on unchanged."""

    def __init__(self, app: Any):
        self.app = app
        self.sent: list[str] = []
        self.extensions: list[set[str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.extensions.append(set(scope.get("extensions") or ()))

        async def recording_send(message: dict[str, Any]) -> None:
            self.sent.append(message["type"])
            await send(message)

        await self.app(scope, receive, recording_send)


def gateway(upstream: ServerThread, home: Path) -> SendRecorder:
    """The gateway app (CORS on for any origin) behind a recording `send` wrapper."""
    cfg = from_mapping(base_config(upstream.url, server={"max_body_bytes": 65536, "cors_origins": ["*"]}))

    async def build() -> Runtime:
        return await Runtime.build(cfg, data_dir=home)

    return SendRecorder(GatehouseApp(build, cfg.server.cors_origins))


def _stream(port: int, headers: dict[str, str]) -> tuple[httpx.Response, str, bool]:
    """(response, the streamed text, whether it ended with [DONE])."""
    body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "one two three"}]}
    text, done = [], False
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {ALICE_KEY}", **headers}) as r:
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    text += [c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"]]
    return r, "".join(text), done


@pytest.fixture(scope="module")
def ours(openai_upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SendRecorder, int]]:
    app = gateway(openai_upstream, tmp_path_factory.mktemp("gh"))
    with serve_h1(app) as port:
        yield app, port


@pytest.fixture(scope="module")
def uvicorns(openai_upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SendRecorder, int]]:
    app = gateway(openai_upstream, tmp_path_factory.mktemp("gh"))
    with serve_h1(app, http="httptools") as port:  # type: ignore[arg-type]  # uvicorn's own protocol
        yield app, port


@pytest.mark.parametrize("origin", [None, ORIGIN], ids=["sdk", "browser-cors"])
def test_our_server_splices_a_stream_through_send_wrappers(ours: tuple[SendRecorder, int],
                                                            origin: str | None) -> None:
    app, port = ours
    app.sent.clear()
    r, text, done = _stream(port, {"Origin": origin} if origin else {})
    assert r.status_code == 200 and text == "echo: one two three" and done
    assert (r.headers.get("access-control-allow-origin") == "*") == (origin is not None)
    assert {SPLICE, DISCONNECT} <= app.extensions[-1]
    # the app sent the splice message, and it reached the server through CORS and this wrapper
    assert app.sent[0] == "http.response.start" and SPLICE in app.sent
    assert app.sent[-1] == "http.response.body"


def test_an_http10_request_is_not_offered_the_splice_and_streams_the_plain_way(
        ours: tuple[SendRecorder, int]) -> None:
    app, port = ours
    app.sent.clear()
    body = json.dumps({"model": "chat", "stream": True, "messages": [{"role": "user", "content": "old"}]}).encode()

    async def post() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/chat/completions HTTP/1.0\r\nHost: gw\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer %b\r\nContent-Length: %d\r\n\r\n%b" % (ALICE_KEY.encode(), len(body), body))
        data = await reader.read()  # close-delimited
        writer.close()
        return data

    raw = asyncio.run(asyncio.wait_for(post(), 10))
    assert raw.startswith(b"HTTP/1.1 200") and raw.rstrip().endswith(b"data: [DONE]")
    assert SPLICE not in app.extensions[-1] and DISCONNECT in app.extensions[-1]
    assert SPLICE not in app.sent


def test_under_another_asgi_server_the_same_app_streams_without_the_splice(
        uvicorns: tuple[SendRecorder, int]) -> None:
    app, port = uvicorns
    app.sent.clear()
    r, text, done = _stream(port, {"Origin": ORIGIN})
    assert r.status_code == 200 and text == "echo: one two three" and done
    assert r.headers["access-control-allow-origin"] == "*"
    assert not app.extensions[-1] & {SPLICE, DISCONNECT}
    assert SPLICE not in app.sent and app.sent.count("http.response.body") >= 2  # chunks, then the end
