"""Hostile and awkward connections against a real `gatehouse serve`: a stalled body or head is
answered 408 and closed within the configured deadlines (and holds no concurrency slot), broken
chunked framing gets 400 and a close, and a client that sends a whole oversized body before
reading (urllib, `Connection: close`) reads the 413."""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

from tests.conftest import ALICE_KEY, base_config
from tests.server.test_protocol import read_response

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def head(path: str, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ALICE_KEY}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


def test_urllib_reads_the_413_for_an_11_mb_body(gatehouse, recorder):
    body = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * (11 * 1024 * 1024)}]}).encode()
    req = urllib.request.Request(gatehouse.url + "/v1/chat/completions", data=body, headers={
        "Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json"})
    for _ in range(3):  # not a lucky race: every time
        try:
            urllib.request.urlopen(req, timeout=20)
            raise AssertionError("an oversized body was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 413
            assert json.loads(e.read())["error"]["type"] == "request_too_large"
    assert recorder.requests == []


def test_stalled_bodies_and_heads_get_408_and_hold_no_slot(start_gatehouse, openai_upstream, recorder):
    cfg = base_config(openai_upstream.url)
    cfg["server"].update({"header_timeout": 1, "body_timeout": 1.5})
    cfg["groups"]["dev"]["max_concurrent"] = 1
    gh = start_gatehouse(cfg)
    port = int(gh.url.rsplit(":", 1)[1])
    stalled = []
    for _ in range(3):  # three stalled requests from a consumer allowed one at a time
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(head("/v1/chat/completions", "Content-Length: 500\r\n") + b'{"model": "chat", ')
        stalled.append(s)
    slow_head = socket.create_connection(("127.0.0.1", port), timeout=10)
    slow_head.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n")
    t0 = time.monotonic()
    for s in [slow_head, *stalled]:
        status, headers, _ = read_response(s, bytearray())
        assert status.startswith(b"HTTP/1.1 408") and headers["connection"] == "close"
        assert s.recv(10) == b""
    assert time.monotonic() - t0 < 4
    req = urllib.request.Request(gh.url + "/v1/chat/completions", data=json.dumps(CHAT).encode(), headers={
        "Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:  # the consumer's one slot is free
        assert r.status == 200
    assert len(recorder.requests) == 1


def test_broken_chunked_body_gets_400_and_a_close(gatehouse, recorder):
    port = int(gatehouse.url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(head("/v1/chat/completions", "Transfer-Encoding: chunked\r\n") + b"10\r\n{\"model\": \"chat\"\r\nzz\r\n")
    status, headers, body = read_response(s, bytearray())
    assert status.startswith(b"HTTP/1.1 400") and headers["connection"] == "close"
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert s.recv(10) == b""
    assert recorder.requests == []
