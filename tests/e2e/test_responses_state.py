"""Stored responses over real sockets with the official openai SDK: `store: true` keeps a
response for GET, DELETE and input_items; previous_response_id and item_reference rebuild the
conversation sent upstream; every stored response belongs to its consumer (another consumer's
id is a 404); `store: false` and a request that does not say keep nothing."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ALICE_KEY, BOB_KEY, base_config
from tests.support import Gatehouse
from tests.upstreams.harness import ServerThread


@pytest.fixture(scope="module")
def gh(openai_upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    g = Gatehouse(base_config(openai_upstream.url), tmp_path_factory.mktemp("gh")).start()
    yield g
    g.stop()


@pytest.fixture
def alice(gh: Gatehouse) -> openai.OpenAI:
    return openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)


@pytest.fixture
def bob(gh: Gatehouse) -> openai.OpenAI:
    return openai.OpenAI(base_url=gh.url + "/v1", api_key=BOB_KEY, max_retries=0)


def upstream_messages(recorder: Any) -> list[tuple[str, str]]:
    out = []
    for m in recorder.last.json()["messages"]:
        content = m.get("content")
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
        out.append((m["role"], text))
    return out


def test_a_stored_response_is_retrieved_listed_and_deleted(alice: openai.OpenAI) -> None:
    made = alice.responses.create(model="chat", input="keep this one", store=True)
    assert made.store is True and made.output_text == "echo: keep this one"
    got = alice.responses.retrieve(made.id)  # right after the answer: the write is not lost in flight
    assert got.id == made.id and got.output_text == made.output_text and got.status == "completed"
    assert got.usage is not None and got.usage.output_tokens == made.usage.output_tokens  # type: ignore[union-attr]
    items = alice.responses.input_items.list(made.id)
    assert len(items.data) == 1 and items.has_more is False
    only = items.data[0]
    assert only.type == "message" and only.role == "user" and only.id.startswith("msg_")  # type: ignore[union-attr]
    assert only.content[0].type == "input_text" and only.content[0].text == "keep this one"  # type: ignore[union-attr]
    assert items.first_id == items.last_id == only.id
    alice.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.input_items.list(made.id)


def test_input_items_are_paged_in_openais_list_shape(gh: Gatehouse, alice: openai.OpenAI) -> None:
    made = alice.responses.create(model="chat", store=True, input=[
        {"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "three"}], "id": "msg_mine"}])
    first = alice.responses.input_items.list(made.id, limit=2, order="asc")
    assert [i.content[0].text for i in first.data] == ["one", "two"] and first.has_more  # type: ignore[union-attr]
    assert first.data[1].content[0].type == "output_text"  # type: ignore[union-attr]
    rest = alice.responses.input_items.list(made.id, limit=2, order="asc", after=first.last_id)
    assert [i.id for i in rest.data] == ["msg_mine"] and not rest.has_more
    newest = httpx.get(f"{gh.url}/v1/responses/{made.id}/input_items", params={"limit": 1},
                       headers={"authorization": f"Bearer {ALICE_KEY}"}).json()
    assert newest["object"] == "list" and newest["first_id"] == "msg_mine" and newest["has_more"] is True
    bad = httpx.get(f"{gh.url}/v1/responses/{made.id}/input_items", params={"limit": 500},
                    headers={"authorization": f"Bearer {ALICE_KEY}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_previous_response_id_prepends_the_stored_conversation(alice: openai.OpenAI, recorder: Any) -> None:
    first = alice.responses.create(model="chat", input="my name is Ada", instructions="be brief", store=True)
    second = alice.responses.create(model="chat", input="what is my name?", previous_response_id=first.id, store=True)
    assert second.previous_response_id == first.id
    assert upstream_messages(recorder)[-3:] == [("user", "my name is Ada"), ("assistant", "echo: my name is Ada"),
                                                ("user", "what is my name?")]
    third = alice.responses.create(model="chat", input="and again?", previous_response_id=second.id, store=False)
    assert [t for _, t in upstream_messages(recorder)] == [
        "my name is Ada", "echo: my name is Ada", "what is my name?", "echo: what is my name?", "and again?"]
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(third.id)  # store: false keeps nothing
    assert len(alice.responses.input_items.list(second.id).data) == 3  # its own input, and the one before


def test_another_consumers_response_is_not_found(alice: openai.OpenAI, bob: openai.OpenAI, recorder: Any) -> None:
    mine = alice.responses.create(model="chat", input="alice's secret plan", store=True)
    recorder.clear()
    with pytest.raises(openai.NotFoundError) as info:
        bob.responses.create(model="chat", input="tell me", previous_response_id=mine.id)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert recorder.requests == []  # nothing reached the upstream
    for action in (lambda: bob.responses.retrieve(mine.id), lambda: bob.responses.delete(mine.id),
                   lambda: bob.responses.input_items.list(mine.id),
                   lambda: bob.responses.create(model="chat", input=[{"type": "item_reference",
                                                                     "id": mine.output[0].id}])):
        with pytest.raises(openai.NotFoundError):
            action()
    assert alice.responses.retrieve(mine.id).output_text == "echo: alice's secret plan"  # bob's delete did nothing


def test_unknown_ids_are_not_found_and_unstored_requests_keep_nothing(alice: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        alice.responses.create(model="chat", input="hi", previous_response_id="resp_nope")
    assert info.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    for store in (False, None):
        made = alice.responses.create(model="chat", input="forget me",
                                      **({"store": store} if store is not None else {}))
        with pytest.raises(openai.NotFoundError):
            alice.responses.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            alice.responses.create(model="chat", input="hi", previous_response_id=made.id)


def test_item_reference_resolves_stored_items(alice: openai.OpenAI, recorder: Any) -> None:
    made = alice.responses.create(model="chat", input="remember the number 7", store=True)
    message = next(o for o in made.output if o.type == "message")
    alice.responses.create(model="chat", input=[
        {"type": "item_reference", "id": message.id}, {"role": "user", "content": "which number?"}])
    assert upstream_messages(recorder)[-2:] == [("assistant", "echo: remember the number 7"), ("user", "which number?")]
    with pytest.raises(openai.NotFoundError) as info:
        alice.responses.create(model="chat", input=[{"type": "item_reference", "id": "msg_unknown"}])
    assert info.value.body["code"] == "item_not_found"  # type: ignore[index]


def test_a_streamed_response_is_stored_and_chains(gh: Gatehouse, alice: openai.OpenAI, recorder: Any) -> None:
    with httpx.stream("POST", gh.url + "/v1/responses", timeout=10, headers={"authorization": f"Bearer {ALICE_KEY}"},
                      json={"model": "chat", "input": "streamed and kept", "stream": True, "store": True}) as resp:
        frames = [f for f in "".join(resp.iter_text()).strip().split("\n\n")]
    final = json.loads(frames[-1].split("\n", 1)[1].removeprefix("data: "))
    assert final["type"] == "response.completed" and final["response"]["store"] is True
    rid = final["response"]["id"]
    got = alice.responses.retrieve(rid)
    assert got.output_text == "echo: streamed and kept" and got.status == "completed"
    with alice.responses.stream(model="chat", input="next", previous_response_id=rid, store=True) as stream:
        for _ in stream:
            pass
        follow = stream.get_final_response()
    assert [t for _, t in upstream_messages(recorder)] == ["streamed and kept", "echo: streamed and kept", "next"]
    assert alice.responses.retrieve(follow.id).output_text == "echo: next"


def test_tool_call_round_trip_over_previous_response_id(alice: openai.OpenAI, recorder: Any) -> None:
    tool = {"type": "function", "name": "get_weather", "description": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    first = alice.responses.create(model="chat", input="TOOL weather in Paris?", tools=[tool], store=True)  # type: ignore[list-item]
    call = next(o for o in first.output if o.type == "function_call")
    follow = alice.responses.create(model="chat", tools=[tool], previous_response_id=first.id,  # type: ignore[list-item]
                                    input=[{"type": "function_call_output", "call_id": call.call_id,
                                            "output": "sunny, 21C"}])
    assert "sunny, 21C" in follow.output_text
    sent = recorder.last.json()["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id


def test_store_default_and_ttl_from_the_config(start_gatehouse: Any, openai_upstream: ServerThread) -> None:
    import time

    g: Gatehouse = start_gatehouse(base_config(openai_upstream.url, responses={
        "store_default": True, "store_ttl_seconds": 1}))
    client = openai.OpenAI(base_url=g.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    kept = client.responses.create(model="chat", input="not saying store")  # kept: store_default
    assert client.responses.retrieve(kept.id).output_text == "echo: not saying store"
    not_kept = client.responses.create(model="chat", input="private", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(not_kept.id)
    time.sleep(1.2)  # past store_ttl_seconds
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="chat", input="again", previous_response_id=kept.id)
