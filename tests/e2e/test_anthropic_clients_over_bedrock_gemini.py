"""The official `anthropic` SDK against gatehouse's /v1/messages, over the Bedrock and Gemini test
upstreams: text, system prompts with cache control, streaming, tools, signed thinking, errors.

Skipped while this build has no Anthropic ingress (the route answers 404).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import anthropic
import pytest

from tests.provider_fixtures import (
    BEDROCK_ENV_KEYS,
    CLAUDE,
    start_aws_isolated,
)
from tests.upstreams import gemini_wire

KEY = "anthropic-e2e-key"
TOOLS = [{"name": "get_weather", "description": "weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
BACKENDS = ["claude", "flash"]  # Bedrock, Gemini


@pytest.fixture(scope="module")
def gh(bedrock_upstream, gemini_upstream, tmp_path_factory):
    cfg = {
        "providers": {
            "br": {"type": "bedrock", "region": "us-west-2", "endpoint_url": bedrock_upstream.url},
            "gem": {"type": "gemini", "api_key": gemini_wire.API_KEY, "base_url": gemini_upstream.url + "/v1beta"},
        },
        "models": [
            {"name": "claude", "deployments": [{"provider": "br", "model": CLAUDE}]},
            {"name": "denied", "deployments": [{"provider": "br", "model": "anthropic.claude-denied-v1:0"}]},
            {"name": "flash", "deployments": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
        ],
        "groups": {"all": {"models": ["*"]}}, "consumers": {"dev": {"group": "all", "keys": [KEY]}},
    }
    gh = start_aws_isolated(cfg, tmp_path_factory.mktemp("gh-anthropic-e2e"), BEDROCK_ENV_KEYS)
    yield gh
    gh.stop()


@pytest.fixture(scope="module")
def messages_route(gh):
    body = json.dumps({"model": "claude", "max_tokens": 20, "messages": [{"role": "user", "content": "probe"}]})
    request = urllib.request.Request(gh.url + "/v1/messages", data=body.encode(), method="POST", headers={
        "x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
    except urllib.error.HTTPError as e:
        if e.code == 404:
            pytest.skip("this build has no Anthropic ingress (/v1/messages)")
        raise


@pytest.fixture
def client(gh, messages_route):
    return anthropic.Anthropic(base_url=gh.url, api_key=KEY, max_retries=0)


@pytest.fixture
def seen(bedrock_upstream, gemini_upstream):
    bedrock_upstream.recorder.clear()
    gemini_upstream.recorder.clear()
    return {"claude": bedrock_upstream.recorder, "flash": gemini_upstream.recorder}


@pytest.mark.parametrize("model", BACKENDS)
def test_text_with_system_prompt(client, model):
    msg = client.messages.create(model=model, max_tokens=100, system="be brief",
                                 messages=[{"role": "user", "content": "hello there"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.model == model
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "echo: hello there"
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 3


@pytest.mark.parametrize("model", BACKENDS)
def test_streaming_text(client, model):
    with client.messages.stream(model=model, max_tokens=100,
                                messages=[{"role": "user", "content": "one two three"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: one two three" and final.stop_reason == "end_turn" and final.usage.output_tokens == 4


@pytest.mark.parametrize("model", BACKENDS)
def test_max_tokens_stop_reason(client, model):
    msg = client.messages.create(model=model, max_tokens=2, messages=[{"role": "user", "content": "a b c d"}])
    assert msg.stop_reason == "max_tokens"


@pytest.mark.parametrize("model", BACKENDS)
def test_tool_use_round_trip(client, seen, model):
    messages = [{"role": "user", "content": "TOOL2 weather"}]
    first = client.messages.create(model=model, max_tokens=200, tools=TOOLS, messages=messages)
    uses = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use"
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    messages += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": text}
                                              for u, text in zip(uses, ["sunny", "rainy"])]}]
    second = client.messages.create(model=model, max_tokens=200, tools=TOOLS, messages=messages)
    assert second.content[0].text == "echo: sunny rainy"
    assert seen[model].requests  # the upstream validated the pairing of calls and results


@pytest.mark.parametrize("model", BACKENDS)
def test_streamed_tool_use(client, model):
    with client.messages.stream(model=model, max_tokens=200, tools=TOOLS,
                                messages=[{"role": "user", "content": "TOOL now"}]) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "Paris"})]
    assert final.stop_reason == "tool_use"


def test_signed_thinking_from_bedrock_goes_back_with_its_signature(client, seen):
    messages = [{"role": "user", "content": "THINK then TOOL"}]
    first = client.messages.create(model="claude", max_tokens=2000, tools=TOOLS, messages=messages,
                                   thinking={"type": "enabled", "budget_tokens": 1024})
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].thinking == "thinking about it" and first.content[0].signature == "sig-123"
    assert seen["claude"].last.json()["additionalModelRequestFields"]["thinking"] == {
        "type": "enabled", "budget_tokens": 1024}
    messages += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id,
                                               "content": "sunny"}]}]
    client.messages.create(model="claude", max_tokens=2000, tools=TOOLS, messages=messages,
                           thinking={"type": "enabled", "budget_tokens": 1024})
    replayed = seen["claude"].last.json()["messages"][1]["content"][0]
    assert replayed == {"reasoningContent": {"reasoningText": {"text": "thinking about it", "signature": "sig-123"}}}


def test_streamed_thinking_from_bedrock(client):
    with client.messages.stream(model="claude", max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[{"role": "user", "content": "THINK a"}]) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature == "sig-123" and final.content[1].text == "echo: THINK a"


def test_cached_system_prompt_becomes_a_bedrock_cache_point(client, seen):
    system = [{"type": "text", "text": "a long and stable system prompt", "cache_control": {"type": "ephemeral"}}]
    args = dict(model="claude", max_tokens=50, system=system, messages=[{"role": "user", "content": "hi"}])
    client.messages.create(**args)
    assert seen["claude"].last.json()["system"] == [{"text": system[0]["text"]}, {"cachePoint": {"type": "default"}}]
    second = client.messages.create(**args)
    assert second.usage.cache_read_input_tokens == 6


@pytest.mark.parametrize("model,prompt,error", [
    ("claude", "FAIL429", anthropic.RateLimitError), ("flash", "FAIL429", anthropic.RateLimitError),
    ("claude", "FAIL503", anthropic.APIStatusError), ("denied", "hi", anthropic.APIStatusError),
])
def test_errors_are_anthropic_shaped(client, model, prompt, error):
    with pytest.raises(error) as info:
        client.messages.create(model=model, max_tokens=20, messages=[{"role": "user", "content": prompt}])
    assert info.value.body["type"] == "error" and info.value.body["error"]["message"]
    if model == "denied":
        assert info.value.status_code == 502 and "bedrock:InvokeModel" in info.value.body["error"]["message"]


@pytest.mark.parametrize("model", BACKENDS)
def test_mid_stream_error(client, model):
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(model=model, max_tokens=100,
                                    messages=[{"role": "user", "content": "one two STREAMERR"}]) as stream:
            for _ in stream.text_stream:
                pass
