"""The public model name put back into relayed bytes: in whole frames and lines, whatever the
JSON spacing, and when the upstream's reads cut the `"model":"<id>"` token in two."""
from __future__ import annotations

import json

import pytest

from gatehouse.wire.model_swap import ModelSwap, for_deployment
from gatehouse.wire.ollama_stream import NDJSONRelay
from gatehouse.wire.openai_stream import PassthroughRelay

UPSTREAM = "Qwen/Qwen3-Coder-32B-Instruct"


def _frames(compact: bool) -> bytes:
    sep = (",", ":") if compact else None
    chunks = [{"id": "c", "model": UPSTREAM, "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
              for t in ("Hel", "lo")]
    chunks.append({"id": "c", "model": UPSTREAM, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + json.dumps(c, separators=sep).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def test_no_swap_when_the_names_match():
    assert for_deployment("llama3", "llama3") is None
    assert isinstance(for_deployment("coder", UPSTREAM), ModelSwap)


@pytest.mark.parametrize("encoded", [
    b'{"model":"Qwen/Qwen3-Coder-32B-Instruct","x":1}',
    b'{"model": "Qwen/Qwen3-Coder-32B-Instruct", "x": 1}',
    b'{"model":"Qwen\\/Qwen3-Coder-32B-Instruct","x":1}',
])
def test_swap_covers_compact_spaced_and_escaped_json(encoded):
    out = ModelSwap(UPSTREAM, "coder").apply(encoded)
    assert json.loads(out)["model"] == "coder"


def test_only_the_model_field_is_swapped():
    body = json.dumps({"model": UPSTREAM, "choices": [{"message": {"content": f'the "model":"{UPSTREAM}" id'}}]},
                      separators=(",", ":")).encode()
    out = json.loads(ModelSwap(UPSTREAM, "coder").apply(body))
    assert out["model"] == "coder" and UPSTREAM in out["choices"][0]["message"]["content"]


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "spaced"])
def test_relay_swaps_at_every_cut_of_the_reads(compact):
    """Every split point of the stream in two reads, including inside the model token."""
    data = _frames(compact)
    for cut in range(1, len(data)):
        relay = PassthroughRelay(False, "coder", ModelSwap(UPSTREAM, "coder"))
        out = relay.feed(data[:cut]) + relay.feed(data[cut:]) + relay.flush()
        assert UPSTREAM.encode() not in out, cut
        assert out.count(b'"coder"') == 3 and relay.finished


def test_relay_fast_path_is_untouched_without_a_swap():
    data = _frames(True)[:-len(b"data: [DONE]\n\n")]
    data = data[:data.index(b"data: ", 10)]  # one ordinary content frame: the fast path
    relay = PassthroughRelay(False)
    assert relay.feed(data) is data


def test_ndjson_relay_swaps_each_line():
    async def run() -> bytes:
        async def chunks():
            yield b'{"model":"' + UPSTREAM.encode()[:10]
            yield UPSTREAM.encode()[10:] + b'","message":{"content":"hi"},"done":false}\n'
            yield b'{"model":"' + UPSTREAM.encode() + b'","done":true,"done_reason":"length","eval_count":1}\n'
        relay = NDJSONRelay("coder", ModelSwap(UPSTREAM, "coder"))
        out = b"".join([line async for line in relay.relay(chunks())])
        assert relay.finish_reason == "length"  # the final line's done_reason, for traces
        return out

    import asyncio
    out = asyncio.run(run())
    assert UPSTREAM.encode() not in out and out.count(b'"model":"coder"') == 2

