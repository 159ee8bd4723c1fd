"""POST /v1/responses forwarded untouched to a deployment that speaks the Responses API
itself (`responses_api: true` on an openai provider): only the model name is swapped, OpenAI's
encrypted reasoning items make the round trip, hosted tools reach it, usage is read from the
body or from `response.completed`, a cut stream ends with one `response.failed`, and requests
that need the gateway's stored responses are translated instead."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, ALICE_KEY
from tests.support import Gatehouse
from tests.upstreams import openai_responses_wire, openai_wire
from tests.upstreams.harness import ServerThread


@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerThread]:
    with ServerThread(openai_responses_wire.make_app) as srv:
        yield srv


@pytest.fixture(scope="module")
def gh(upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    g = Gatehouse({
        "admin": {"key": ADMIN_KEY},
        "responses": {"hosted_tools": "refuse"},
        "providers": {"oai": {"type": "openai", "base_url": f"{upstream.url}/v1", "api_key": openai_wire.API_KEY,
                              "responses_api": True},
                      "chat-only": {"type": "openai", "base_url": f"{upstream.url}/v1", "api_key": openai_wire.API_KEY}},
        "models": [{"name": "gpt", "deployments": [{"provider": "oai", "model": "gpt-up-9"}]},
                   {"name": "translated", "deployments": [{"provider": "chat-only", "model": "up-chat"}]}],
        "groups": {"dev": {"models": ["*"]}},
        "consumers": {"alice": {"group": "dev", "keys": [ALICE_KEY]}},
    }, tmp_path_factory.mktemp("gh")).start()
    yield g
    g.stop()


@pytest.fixture
def client(gh: Gatehouse) -> openai.OpenAI:
    return openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)


def events(gh: Gatehouse, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", gh.url + "/v1/responses", json={**body, "stream": True}, timeout=10,
                      headers={"authorization": f"Bearer {ALICE_KEY}"}) as resp:
        assert resp.status_code == 200
        text = "".join(resp.iter_text())
    return [json.loads(f.split("data: ", 1)[1]) for f in text.strip().split("\n\n")]


def test_the_body_is_forwarded_untouched_but_the_model(client: openai.OpenAI, upstream: ServerThread) -> None:
    upstream.recorder.clear()
    body = {"model": "gpt", "input": [{"role": "user", "content": "hello"}], "include": ["reasoning.encrypted_content"],
            "tools": [{"type": "web_search"}], "store": False, "reasoning": {"effort": "high", "summary": "auto"}}
    raw = client.responses.with_raw_response.create(**body)  # type: ignore[call-overload]
    first = raw.parse()
    assert first.model == "gpt" and first.output_text == "echo: hello"
    seen = upstream.recorder.last
    assert seen.path == "/v1/responses" and seen.json() == {**body, "model": "gpt-up-9"}  # web_search too
    assert raw.headers["x-gatehouse-tokens-input"] == "11" and raw.headers["x-gatehouse-tokens-output"] == "7"
    reasoning = next(o for o in first.output if o.type == "reasoning")
    assert reasoning.encrypted_content == "enc-0"
    again = client.responses.create(model="gpt", store=False, input=[
        {"role": "user", "content": "hello"}, reasoning.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "user", "content": "more"}])
    assert next(o for o in again.output if o.type == "reasoning").encrypted_content == "enc-1"  # it arrived


def test_what_only_the_upstream_understands_is_forwarded(client: openai.OpenAI, upstream: ServerThread) -> None:
    upstream.recorder.clear()
    turn = [{"role": "user", "content": [{"type": "input_text", "text": "read it"},
                                          {"type": "input_file", "file_id": "file-123"}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
            {"role": "user", "content": "and now?"}]
    answer = client.responses.create(model="gpt", input=turn, store=False)  # type: ignore[arg-type]
    assert answer.output_text == "echo: and now?" and upstream.recorder.last.json()["input"] == turn
    with pytest.raises(openai.BadRequestError):  # where it is translated, the same input cannot be sent
        client.responses.create(model="translated", input=turn, store=False)  # type: ignore[arg-type]


def metered(gh: Gatehouse) -> dict[str, Any]:
    time.sleep(0.6)  # the ledger is written within metering.flush_seconds
    usage = httpx.get(gh.url + "/admin/usage?by=model&since=1h", headers={"authorization": f"Bearer {ADMIN_KEY}"},
                      timeout=10).json()
    return next((r for r in usage["data"] if r["model"] == "gpt"), {"input_tokens": 0, "output_tokens": 0,
                                                                     "cached_tokens": 0, "estimated": 0})


def test_a_forwarded_stream_is_relayed_and_metered(gh: Gatehouse) -> None:
    before = metered(gh)
    evs = events(gh, {"model": "gpt", "input": "stream this", "store": False})
    kinds = [e["type"] for e in evs]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert all(e["response"]["model"] == "gpt" for e in evs if "response" in e)
    assert "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta").strip() == "echo: stream this"
    after = metered(gh)
    assert {k: after[k] - before[k] for k in ("input_tokens", "output_tokens", "cached_tokens", "estimated")} == {
        "input_tokens": 11, "output_tokens": 7, "cached_tokens": 4, "estimated": 0}  # from response.completed


def test_a_cut_forwarded_stream_ends_with_one_response_failed(gh: Gatehouse) -> None:
    kinds = [e["type"] for e in events(gh, {"model": "gpt", "input": "CUTSTREAM", "store": False})]
    assert kinds[0] == "response.created" and kinds[-1] == "response.failed"
    assert kinds.count("response.created") == 1
    assert sum(k in ("response.completed", "response.incomplete", "response.failed") for k in kinds) == 1


def test_stored_responses_and_other_deployments_are_translated(client: openai.OpenAI, upstream: ServerThread) -> None:
    upstream.recorder.clear()
    kept = client.responses.create(model="gpt", input="keep me", store=True)
    assert upstream.recorder.last.path == "/v1/chat/completions"  # the gateway keeps it: its own ids
    assert client.responses.retrieve(kept.id).output_text == "echo: keep me"
    client.responses.create(model="translated", input="hi", store=False)
    assert upstream.recorder.last.path == "/v1/chat/completions"
    with pytest.raises(openai.BadRequestError):  # translated: hosted tools refused (responses.hosted_tools)
        client.responses.create(model="translated", input="hi", tools=[{"type": "web_search"}])
