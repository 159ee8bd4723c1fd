"""The official anthropic SDK (sync and async) against a running gatehouse, over the
OpenAI-wire test upstream (model "chat": translated) and over the Anthropic-wire test
upstream (model "claude": passed through)."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import anthropic
import pytest

from tests.anthropic_setup import CLAUDE_MAIN_ID, CLAUDE_SMALL_ID, anthropic_config
from tests.conftest import ALICE_KEY
from tests.support import Gatehouse

MODELS = ["chat", "claude"]  # OpenAI-wire upstream, Anthropic-wire upstream
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def gh(openai_upstream, anthropic_upstream, tmp_path_factory) -> Iterator[Gatehouse]:
    g = Gatehouse(anthropic_config(openai_upstream.url, anthropic_upstream.url), tmp_path_factory.mktemp("gh")).start()
    yield g
    g.stop()


@pytest.fixture
def client(gh) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gh.url, api_key=ALICE_KEY, max_retries=0)


@pytest.fixture
def aclient(gh) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gh.url, api_key=ALICE_KEY, max_retries=0)


@pytest.fixture
def seen(openai_upstream, anthropic_upstream):
    """What reached each upstream during the test."""
    openai_upstream.recorder.clear()
    anthropic_upstream.recorder.clear()
    return {"chat": openai_upstream.recorder, "claude": anthropic_upstream.recorder}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("model", MODELS)
def test_create(client, model):
    resp = client.messages.create(model=model, max_tokens=100, messages=user("hello world"))
    assert resp.type == "message" and resp.role == "assistant"
    assert [b.type for b in resp.content] == ["text"] and resp.content[0].text == "echo: hello world"
    assert resp.stop_reason == "end_turn" and resp.stop_sequence is None
    assert resp.usage.input_tokens == 2 and resp.usage.output_tokens == 3
    assert resp.id.startswith("msg_")


@pytest.mark.parametrize("model", MODELS)
def test_stream_text_stream_and_final_message(client, model):
    with client.messages.stream(model=model, max_tokens=100, messages=user("one two three four")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: one two three four"
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 4 and final.usage.output_tokens == 5


@pytest.mark.parametrize("model", MODELS)
def test_raw_event_sequence(client, model):
    events = list(client.messages.create(model=model, max_tokens=100, messages=user("a b"), stream=True))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2].delta.stop_reason == "end_turn" and events[-2].usage.output_tokens == 3


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_round_trip(client, model, seen):
    messages = user("TOOL what is the weather in Paris?")
    resp = client.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=messages)
    assert resp.stop_reason == "tool_use"
    call = next(b for b in resp.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in resp.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]}]
    final = client.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=messages)
    assert final.stop_reason == "end_turn" and final.content[0].text == "echo: sunny, 21C"
    sent = seen[model].last.json()
    if model == "chat":
        assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}
    else:
        assert sent["tools"] == [WEATHER] and sent["messages"][-1]["content"][0]["tool_use_id"] == call.id


@pytest.mark.parametrize("model", MODELS)
def test_streamed_parallel_tool_calls_and_error_results(client, model, seen):
    messages = user("TOOL2 weather in Paris and Rome")
    with client.messages.stream(model=model, max_tokens=200, tools=[WEATHER], messages=messages) as stream:
        deltas = [e for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = stream.get_final_message()
    assert deltas, "tool arguments arrive as input_json_delta"
    calls = [b for b in final.content if b.type == "tool_use"]
    assert [c.input for c in calls] == [{"city": "Paris"}, {"city": "Rome"}] and final.stop_reason == "tool_use"
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny"},
            {"type": "tool_result", "tool_use_id": calls[1].id, "is_error": True,
             "content": [{"type": "text", "text": "service down"}]}]}]
    resp = client.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=messages)
    assert resp.stop_reason == "end_turn"
    if model == "chat":
        tool_msgs = [m for m in seen["chat"].last.json()["messages"] if m["role"] == "tool"]
        assert [m["content"] for m in tool_msgs] == ["sunny", "Error: service down"]


@pytest.mark.parametrize("model", MODELS)
def test_thinking_blocks(client, model):
    with client.messages.stream(model=model, max_tokens=100, messages=user("THINK hard")) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "thinking about it" and final.content[1].text == "echo: THINK hard"
    deltas = {e.delta.type for e in events if e.type == "content_block_delta"}
    assert "thinking_delta" in deltas
    if model == "claude":
        assert final.content[0].signature == "sig-123" and "signature_delta" in deltas


@pytest.mark.parametrize("model", MODELS)
def test_stop_sequences_and_max_tokens(client, model):
    resp = client.messages.create(model=model, max_tokens=100, stop_sequences=["world"], messages=user("hello world"))
    assert resp.content[0].text.rstrip() == "echo: hello"
    if model == "claude":
        assert resp.stop_reason == "stop_sequence" and resp.stop_sequence == "world"
    else:  # plain OpenAI `stop` cannot say which ended it (vLLM's stop_reason can: see the wire tests)
        assert resp.stop_reason == "end_turn"
    resp = client.messages.create(model=model, max_tokens=2, messages=user("one two three four"))
    assert resp.stop_reason == "max_tokens"


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens(client, model):
    raw = client.messages.with_raw_response.count_tokens(
        model=model, system="be brief", tools=[WEATHER], messages=user("count these four words"))
    count = raw.parse()
    assert count.input_tokens > 0
    if model == "claude":
        assert raw.headers["x-gatehouse-token-count"] == "exact" and count.input_tokens == 6
    else:
        assert raw.headers["x-gatehouse-token-count"] == "estimated"


def test_system_blocks_images_and_sampling_reach_an_openai_upstream(client, seen):
    png = "iVBORw0KGgo="
    client.messages.create(
        model="chat", max_tokens=50, extra_body={"temperature": 0.3, "top_p": 0.9, "top_k": 20},
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}],
        metadata={"user_id": "u-1"})
    sent = seen["chat"].last.json()
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    assert [p.get("image_url", {}).get("url") for p in sent["messages"][1]["content"]] == [
        None, f"data:image/png;base64,{png}", "https://example.com/cat.png"]
    assert (sent["temperature"], sent["top_p"], sent["top_k"], sent["max_tokens"]) == (0.3, 0.9, 20, 50)
    assert "metadata" not in sent and "cache_control" not in json.dumps(sent)


def test_pass_through_swaps_only_the_model_and_forwards_betas(client, seen):
    body = dict(model="claude", max_tokens=50, messages=user("hi"), metadata={"user_id": "u-1"},
                system=[{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}])
    client.messages.create(**body, extra_headers={"anthropic-beta": "prompt-caching-2024-07-31,made-up-beta-1",
                                                  "anthropic-version": "2023-06-01"})
    got = seen["claude"].last
    assert got.json() == {**json.loads(json.dumps(body)), "model": "claude-up"}
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["x-api-key"] == "test-anthropic-key" and headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31,made-up-beta-1"
    assert ALICE_KEY not in json.dumps(headers), "the client's key never goes upstream"


def test_beta_allow_list_and_pinned_version(client, seen):
    client.messages.create(model="claude-strict", max_tokens=50, messages=user("hi"),
                           extra_headers={"anthropic-beta": "prompt-caching-2024-07-31,made-up-beta-1",
                                          "anthropic-version": "2099-01-01"})
    headers = {k.lower(): v for k, v in seen["claude"].last.headers.items()}
    assert headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert headers["anthropic-version"] == "2023-06-01"


def test_betas_toward_an_openai_upstream_are_dropped_not_errors(client, seen):
    resp = client.messages.create(model="chat", max_tokens=50, messages=user("hi"),
                                  extra_headers={"anthropic-beta": "totally-unknown-beta-2030"})
    assert resp.content[0].text == "echo: hi"
    headers = {k.lower() for k in seen["chat"].last.headers}
    assert not any(h.startswith("anthropic") for h in headers)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK warns about retired Claude ids
@pytest.mark.parametrize("requested,served", [(CLAUDE_MAIN_ID, "chat"), ("claude-sonnet-4-5-20250929", "chat"),
                                              (CLAUDE_SMALL_ID, "echo"), ("claude-3-5-haiku-20241022", "chat")])
def test_claude_code_model_ids_map_through_aliases(client, requested, served):
    resp = client.messages.create(model=requested, max_tokens=50, messages=user("hi there"))
    assert resp.model == served and resp.content[0].text == "echo: hi there"


def test_count_tokens_of_a_whole_messages_body(gh):
    """Clients often count the very body they are about to send; generation-only fields go."""
    import urllib.request

    body = {"model": "claude", "max_tokens": 100, "stream": True, "temperature": 0.5, "metadata": {"user_id": "u"},
            "messages": user("three words here")}
    req = urllib.request.Request(gh.url + "/v1/messages/count_tokens", json.dumps(body).encode(), method="POST",
                                 headers={"x-api-key": ALICE_KEY, "content-type": "application/json",
                                          "anthropic-version": "2023-06-01"})
    with urllib.request.urlopen(req, timeout=20) as resp:
        assert json.loads(resp.read()) == {"input_tokens": 3}
        assert resp.headers["x-gatehouse-token-count"] == "exact"


async def test_async_client_streams_concurrently(aclient):
    async def one(model: str, i: int) -> str:
        async with aclient.messages.stream(model=model, max_tokens=50, messages=user(f"n{i} x")) as stream:
            return "".join([t async for t in stream.text_stream])

    results = await asyncio.gather(*(one(MODELS[i % 2], i) for i in range(12)))
    assert results == [f"echo: n{i} x" for i in range(12)]
    resp = await aclient.messages.create(model="claude", max_tokens=50, messages=user("hi"))
    assert resp.content[0].text == "echo: hi"
    count = await aclient.messages.count_tokens(model="claude", messages=user("a b c"))
    assert count.input_tokens == 3


async def test_async_tool_round_trip(aclient):
    for model in MODELS:
        messages = user("TOOL please")
        async with aclient.messages.stream(model=model, max_tokens=100, tools=[WEATHER], messages=messages) as s:
            first = await s.get_final_message()
        call = first.content[-1]
        assert call.type == "tool_use" and call.input == {"city": "Paris"}
        messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "ok"}]}]
        final = await aclient.messages.create(model=model, max_tokens=100, tools=[WEATHER], messages=messages)
        assert final.content[0].text == "echo: ok"
