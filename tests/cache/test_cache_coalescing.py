"""Request coalescing over real sockets: identical cacheable misses in flight at once make one
upstream call (the counting OpenAI-wire upstream answers after 0.5 s, `HALFSEC`); when the first
answer is not stored (a cut stream) or takes longer than `coalesce_seconds`, the others go upstream
themselves; `coalesce_seconds: 0` turns it off."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.cache.serving import post, serve
from tests.conftest import ALICE_KEY, base_config
from tests.support import ledger_rows as ledger

CHAT = "/v1/chat/completions"


def config(upstream: str, **cache: Any) -> dict[str, Any]:
    cfg = base_config(upstream, metering={"flush_seconds": 0.05})
    cfg["models"][0]["cache"] = {"ttl_seconds": 60, **cache}
    return cfg


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": text}], "temperature": 0, **extra}


def at_once(url: str, payloads: list[dict[str, Any]]) -> list[tuple[int, bytes, dict[str, str]]]:
    """The first request, then (while it waits on the upstream) the others, all in flight together."""
    with ThreadPoolExecutor(len(payloads)) as pool:
        first = pool.submit(post, url + CHAT, payloads[0], ALICE_KEY)
        time.sleep(0.15)
        rest = [pool.submit(post, url + CHAT, p, ALICE_KEY) for p in payloads[1:]]
        return [first.result(), *(f.result() for f in rest)]


def calls(recorder) -> int:
    return sum(1 for r in recorder.requests if r.path == CHAT)


def test_identical_misses_in_flight_make_one_upstream_call(openai_upstream, recorder, tmp_path: Path):
    with serve(config(openai_upstream.url), tmp_path / "gh") as url:
        stream = body("HALFSEC together", stream=True, stream_options={"include_usage": True})
        got = at_once(url, [body("HALFSEC together")] * 4 + [stream])
        assert [s for s, _, _ in got] == [200] * 5
        assert [h["x-gatehouse-cache"] for _, _, h in got] == ["miss", "hit", "hit", "hit", "hit"]
        assert all(b == got[0][1] for _, b, _ in got[1:4])  # the first one's bytes
        assert b"echo: HALFSEC together" in got[4][1] and got[4][1].endswith(b"data: [DONE]\n\n")
        assert calls(recorder) == 1
        rows = ledger(tmp_path / "gh", 5)
        assert sum(1 for r in rows if r["cache_hit"]) == 4


def test_an_answer_that_is_not_stored_sends_the_others_upstream(openai_upstream, recorder, tmp_path: Path):
    with serve(config(openai_upstream.url), tmp_path / "gh") as url:
        got = at_once(url, [body("HALFSEC one two three CUTSTREAM", stream=True)] * 3)
        assert all(b"[DONE]" not in b and b"upstream_error" in b for _, b, _ in got)
        assert [h["x-gatehouse-cache"] for _, _, h in got] == ["miss"] * 3
        assert calls(recorder) == 3


def test_the_wait_is_bounded_and_can_be_turned_off(openai_upstream, recorder, tmp_path: Path):
    with serve(config(openai_upstream.url, coalesce_seconds=0.1), tmp_path / "a") as url:
        got = at_once(url, [body("HALFSEC bounded")] * 3)
        assert [s for s, _, _ in got] == [200] * 3 and calls(recorder) == 3  # waited 0.1 s, then went
    recorder.clear()
    with serve(config(openai_upstream.url, coalesce_seconds=0), tmp_path / "b") as url:
        got = at_once(url, [body("HALFSEC off")] * 3)
        assert [h["x-gatehouse-cache"] for _, _, h in got] == ["miss"] * 3 and calls(recorder) == 3
