"""Upstream error frames inside relayed streams never reach the client as they came."""
from __future__ import annotations

import json

import pytest

from gatehouse.wire.openai_stream import PassthroughRelay


@pytest.mark.parametrize("error", [
    b'{"error":{"message":"key sk-live-123456789 at http://10.0.0.5:8000","type":"server_error","code":"x 10.0.0.5"}}',
    b'{"object":"error","message":"key sk-live-123456789 at http://10.0.0.5:8000","type":"BadRequestError","code":400}',
    b'{"error":"key sk-live-123456789 at http://10.0.0.5:8000","error_type":"generation"}',
    b'{"error": broken json sk-live-123456789 http://10.0.0.5:8000',
], ids=["openai", "vllm", "tgi", "unreadable"])
def test_relay_replaces_upstream_error_frames(error):
    """Error frames inside a relayed stream (OpenAI, vLLM and TGI shapes) go out as our own."""
    relay = PassthroughRelay(False, "coder")
    out = relay.feed(b"data: " + error + b"\n\n")
    assert b"sk-live" not in out and b"10.0.0.5" not in out
    frame = json.loads(out.removeprefix(b"data: "))
    assert set(frame["error"]) == {"message", "type", "param", "code"}
    assert frame["error"]["message"].startswith("The upstream for model 'coder' failed (in the stream")
