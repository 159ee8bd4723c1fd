"""POST /v1/responses through a real gateway with the official openai SDK: text, streams with the
full event sequence, a tool-call round trip, json_schema, an Anthropic backend, a cut stream
ending in response.failed, and policies (keys, access) as on chat completions."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.anthropic_setup import anthropic_config
from tests.conftest import ALICE_KEY
from tests.support import Gatehouse
from tests.upstreams.harness import ServerThread

TOOL = {"type": "function", "name": "get_weather", "description": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def gh(openai_upstream: ServerThread, anthropic_upstream: ServerThread,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    g = Gatehouse(anthropic_config(openai_upstream.url, anthropic_upstream.url), tmp_path_factory.mktemp("gh")).start()
    yield g
    g.stop()


@pytest.fixture
def client(gh: Gatehouse) -> openai.OpenAI:
    return openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)


def events_of(gh: Gatehouse, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", gh.url + "/v1/responses", json={**body, "stream": True}, timeout=10,
                      headers={"authorization": f"Bearer {ALICE_KEY}"}) as resp:
        assert resp.status_code == 200
        text = "".join(resp.iter_text())
    assert "[DONE]" not in text
    out = []
    for frame in text.strip().split("\n\n"):
        kind, data = frame.split("\n", 1)
        event = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {event['type']}"
        out.append(event)
    return out


@pytest.mark.parametrize("model", ["chat", "claude", "echo"])
def test_text_answer_on_every_backend(client: openai.OpenAI, model: str) -> None:
    resp = client.responses.create(model=model, input="hello there", instructions="be brief")
    assert resp.status == "completed" and resp.model == model
    assert "hello there" in resp.output_text
    assert resp.usage is not None and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_stream_event_sequence_has_one_terminal_event(gh: Gatehouse, model: str) -> None:
    events = events_of(gh, {"model": model, "input": "stream me please"})
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert kinds[-1] == "response.completed"
    assert sum(k in ("response.completed", "response.incomplete", "response.failed") for k in kinds) == 1
    for needed in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
                   "response.output_text.done", "response.content_part.done", "response.output_item.done"):
        assert needed in kinds, needed
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "echo: stream me please"
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == text and final["usage"]["output_tokens"] > 0


def test_sdk_stream_helper_and_tool_call_round_trip(client: openai.OpenAI) -> None:
    with client.responses.stream(model="chat", input="TOOL weather in Paris?", tools=[TOOL]) as stream:
        for _ in stream:
            pass
        first = stream.get_final_response()
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    follow = client.responses.create(model="chat", tools=[TOOL], input=[
        {"role": "user", "content": "TOOL weather in Paris?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"},
    ])
    assert "sunny, 21C" in follow.output_text


def test_json_schema_reaches_the_upstream(client: openai.OpenAI, recorder: Any) -> None:
    client.responses.create(model="chat", input="give json", text={"format": {
        "type": "json_schema", "name": "city", "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        "strict": True}})
    sent = recorder.last.json()
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "city"


def test_a_cut_stream_ends_with_response_failed(gh: Gatehouse) -> None:
    events = events_of(gh, {"model": "chat", "input": "CUTSTREAM now"})
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "response.failed"
    assert sum(k in ("response.completed", "response.incomplete", "response.failed") for k in kinds) == 1


def test_keys_and_access_apply(gh: Gatehouse) -> None:
    no_key = openai.OpenAI(base_url=gh.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        no_key.responses.create(model="chat", input="hi")
    alice = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):  # not in alice's group
        alice.responses.create(model="restricted", input="hi")
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="no-such-model", input="hi")
    with pytest.raises(openai.NotFoundError) as info:  # stored responses: tests/e2e/test_responses_state.py
        alice.responses.create(model="chat", input="hi", previous_response_id="resp_x")
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_hosted_tools_are_dropped_and_named(gh: Gatehouse) -> None:
    resp = httpx.post(gh.url + "/v1/responses", headers={"authorization": f"Bearer {ALICE_KEY}"}, timeout=10,
                      json={"model": "chat", "input": "hi", "tools": [{"type": "web_search"}, TOOL]})
    assert resp.status_code == 200 and resp.headers["x-gatehouse-dropped-tools"] == "web_search"
