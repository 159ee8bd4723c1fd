"""Same-dialect streams relayed from the upstream socket to the client socket (server/splice.py):
a client that reads slower than the upstream writes gets every byte, in order, and usage is
still read on the way; the response is well-formed chunked HTTP that the SDK can parse."""
from __future__ import annotations

import json
import socket
import time

import httpx
import openai

from tests.conftest import ALICE_KEY, base_config

# ~2 MB of SSE read late through a 64 kB receive buffer. (It does not force the gateway's own
# write buffer past its high-water mark, which would take more than the 4 MB the kernel's send
# buffer grows to here; the pause/resume path is exercised only when that happens.)
WORDS = 15_000


def test_a_slow_reader_gets_the_whole_stream_and_usage_under_backpressure(start_gatehouse, openai_upstream):
    gatehouse = start_gatehouse(base_config(openai_upstream.url, server={"max_body_bytes": 1_000_000}))
    prompt = " ".join(f"w{i}" for i in range(WORDS))
    body = {"model": "chat", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": prompt}]}
    text, usage = [], None
    small_window = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)])
    with httpx.Client(timeout=60, transport=small_window) as client:
        with client.stream("POST", gatehouse.url + "/v1/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {ALICE_KEY}"}) as r:
            assert r.status_code == 200
            time.sleep(1.5)  # not reading: the gateway must hold the upstream back, not buffer it all
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk["choices"]:
                    text.append(choice["delta"].get("content") or "")
    assert "".join(text) == "echo: " + prompt
    assert usage is not None and usage["completion_tokens"] == WORDS + 1


def test_the_sdk_reads_a_spliced_stream_and_it_hides_the_usage_chunk_it_did_not_ask_for(gatehouse):
    client = openai.OpenAI(base_url=gatehouse.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    chunks = list(client.chat.completions.create(
        model="chat", stream=True, messages=[{"role": "user", "content": "one two three"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two three"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def _read_chunked(sock: socket.socket) -> tuple[bytes, bytes]:
    """(response head, de-chunked body) read from a raw socket until the terminating chunk."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    body, pos = [], 0
    while True:
        while b"\r\n" not in rest[pos:]:
            rest += sock.recv(65536)
        eol = rest.index(b"\r\n", pos)
        size = int(rest[pos:eol], 16)
        while len(rest) < eol + 2 + size + 2:
            rest += sock.recv(65536)
        if size == 0:
            return head, b"".join(body)
        body.append(rest[eol + 2:eol + 2 + size])
        pos = eol + 2 + size + 2


def test_the_spliced_chunked_framing_is_exact_for_a_client_that_reads_late(start_gatehouse, openai_upstream):
    """Raw HTTP/1.1: every chunk the relay writes itself is a well-formed chunk, the cycle's own
    terminating chunk follows, and nothing is lost while the client is not reading (a 4 kB
    receive window at first; here the kernel still absorbs the stream, so this does not reach
    the pause-the-upstream path, which needs more than the 4 MB a send buffer grows to)."""
    gatehouse = start_gatehouse(base_config(openai_upstream.url, server={"max_body_bytes": 1_000_000}))
    prompt = " ".join(f"w{i}" for i in range(8_000))
    body = json.dumps({"model": "chat", "stream": True, "messages": [{"role": "user", "content": prompt}]}).encode()
    port = int(gatehouse.url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + ALICE_KEY.encode() + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(1.5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        head, data = _read_chunked(sock)
    finally:
        sock.close()
    assert head.startswith(b"HTTP/1.1 200")
    text = []
    for frame in data.split(b"\n\n"):
        if frame.startswith(b"data: {"):
            text += [c["delta"].get("content") or "" for c in json.loads(frame[6:])["choices"]]
    assert "".join(text) == "echo: " + prompt
