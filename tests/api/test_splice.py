"""Same-dialect streams relayed from the upstream socket to the client socket (api/splice.py):
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
