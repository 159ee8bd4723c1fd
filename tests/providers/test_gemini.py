"""Provider `gemini` end to end: the openai SDK -> gatehouse -> the Gemini test upstream, which
validates requests like the real API (proto field names, roles, function-response pairing,
the OpenAPI schema subset) and answers JSON or SSE."""
from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from gatehouse.types import ChatRequest, Message, TextPart, Tool, ToolCallPart, ToolResultPart
from gatehouse.wire import gemini as wire
from tests.support import Gatehouse
from tests.upstreams import gemini_wire
from tests.upstreams.conventions import embedding

KEY = "gemini-test-key"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather in a city", "strict": True,
    "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
                   "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"], "enum": ["C", "F"]}},
                   "required": ["city"]}}}]


@pytest.fixture(scope="module")
def gh(gemini_upstream, tmp_path_factory):
    base = gemini_upstream.url + "/v1beta"
    cfg = {
        "providers": {
            "gem": {"type": "gemini", "api_key": gemini_wire.API_KEY, "base_url": base},
            "gem-bad-key": {"type": "gemini", "api_key": "not-the-key", "base_url": base},
            "gem-thinking": {"type": "gemini", "api_key": gemini_wire.API_KEY, "base_url": base,
                             "options": {"thinkingConfig": {"thinkingBudget": 0}}},
        },
        "models": [
            {"name": "flash", "deployments": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
            {"name": "unknown", "deployments": [{"provider": "gem", "model": "palm-2"}]},
            {"name": "bad-key", "deployments": [{"provider": "gem-bad-key", "model": "gemini-2.5-flash"}]},
            {"name": "no-thinking", "deployments": [{"provider": "gem-thinking", "model": "gemini-2.5-flash"}]},
            {"name": "gemini-embed", "embeddings": True,
             "deployments": [{"provider": "gem", "model": "text-embedding-004"}]},
        ],
        "groups": {"all": {"models": ["*"]}}, "consumers": {"dev": {"group": "all", "keys": [KEY]}},
    }
    gh = Gatehouse(cfg, tmp_path_factory.mktemp("gh-gemini")).start()
    yield gh
    gh.stop()


@pytest.fixture
def client(gh):
    return openai.OpenAI(base_url=gh.url + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def seen(gemini_upstream):
    gemini_upstream.recorder.clear()
    return gemini_upstream.recorder


def test_generate_content_with_system_instruction(client, seen):
    resp = client.chat.completions.create(model="flash", messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}])
    assert resp.choices[0].message.content == "echo: hello there"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.choices[0].finish_reason) == (4, 3, "stop")
    call = seen.last
    assert call.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert call.headers["x-goog-api-key"] == gemini_wire.API_KEY and "key" not in call.query
    body = call.json()
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hello there"}]}]


def test_stream_generate_content_sse_with_thoughts_and_usage(client, seen):
    chunks = list(client.chat.completions.create(
        model="flash", messages=[{"role": "user", "content": "THINK a b"}], stream=True, reasoning_effort="low",
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    thinking = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert (text, thinking) == ("echo: THINK a b", "thinking about it")
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens) == (3, 7, 3)
    assert seen.last.path.endswith(":streamGenerateContent") and seen.last.query == {"alt": "sse"}
    assert seen.last.json()["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}


def test_function_calls_and_responses_with_schema_reduced_to_geminis_subset(client, seen):
    first = client.chat.completions.create(model="flash", tools=TOOLS, tool_choice="required",
                                           messages=[{"role": "user", "content": "TOOL2 weather"}])
    calls = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    body = seen.last.json()
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["parameters"] == {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "nullable": True, "enum": ["C", "F"]}}}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    history = [{"role": "user", "content": "TOOL2 weather"}, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
               {"role": "tool", "tool_call_id": calls[1].id, "content": "rainy"}]
    second = client.chat.completions.create(model="flash", tools=TOOLS, messages=history)
    assert second.choices[0].message.content == "echo: sunny rainy"
    contents = seen.last.json()["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert [p["functionResponse"] for p in contents[2]["parts"]] == [
        {"name": "get_weather", "response": {"result": "sunny"}}, {"name": "get_weather", "response": {"result": "rainy"}}]


def test_named_tool_choice_and_streamed_call(client, seen):
    name, args = None, ""
    for c in client.chat.completions.create(
            model="flash", tools=TOOLS, stream=True, tool_choice={"type": "function", "function": {"name": "get_weather"}},
            messages=[{"role": "user", "content": "TOOL now"}]):
        for tc in c.choices[0].delta.tool_calls or [] if c.choices else []:
            name = name or tc.function.name
            args += tc.function.arguments or ""
    assert (name, json.loads(args)) == ("get_weather", {"city": "Paris"})
    assert seen.last.json()["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}


def test_json_mode_limits_stops_images_and_option_defaults(client, seen):
    resp = client.chat.completions.create(model="flash", response_format={"type": "json_object"},
                                          messages=[{"role": "user", "content": "give json"}])
    assert json.loads(resp.choices[0].message.content) == {"echo": "give json"}
    short = client.chat.completions.create(model="flash", max_tokens=2, messages=[{"role": "user", "content": "a b c"}])
    assert short.choices[0].finish_reason == "length"
    client.chat.completions.create(model="flash", stop=["zz"], seed=7, messages=[{"role": "user", "content": [
        {"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    body = seen.last.json()
    assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert body["generationConfig"] == {"stopSequences": ["zz"], "seed": 7}
    client.chat.completions.create(model="no-thinking", messages=[{"role": "user", "content": "x"}])
    assert seen.last.json()["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 0}}


def test_embeddings(client, seen):
    resp = client.embeddings.create(model="gemini-embed", input=["alpha", "beta gamma"], encoding_format="float")
    assert [d.embedding for d in resp.data] == [embedding("alpha"), embedding("beta gamma")]
    assert seen.last.path == "/v1beta/models/text-embedding-004:batchEmbedContents"


@pytest.mark.parametrize("model,prompt,status,needle", [
    ("flash", "FAIL429", 429, "rate limiting"),
    ("flash", "FAIL503", 503, "unavailable"),
    ("flash", "FAIL500", 502, "(INTERNAL)"),  # Google's status name; its message text is not shown
    ("unknown", "hi", 502, "does not know the model"),
    ("bad-key", "hi", 502, "credentials"),
])
def test_gemini_errors_map_to_gateway_statuses(client, model, prompt, status, needle):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    assert info.value.status_code == status
    assert needle in info.value.body["message"] and "not-the-key" not in info.value.body["message"]


def test_mid_stream_error_reaches_the_client(client):
    text = ""
    with pytest.raises(openai.APIError, match=r"Gemini failed for model 'flash' \(INTERNAL\)"):
        for c in client.chat.completions.create(model="flash", stream=True,
                                                messages=[{"role": "user", "content": "one two STREAMERR"}]):
            text += c.choices[0].delta.content or "" if c.choices else ""
    assert text == "echo: one "


def test_thought_signatures_round_trip_through_tool_call_ids():
    signature = "CpUBAb4+9vv/Q1kX2Zx+Rz=="
    part = wire.part_to_canonical(wire.GPart(thoughtSignature=signature,
                                             functionCall=wire.GFunctionCall("get_weather", {"city": "Paris"})))
    assert isinstance(part, ToolCallPart) and all(c.isalnum() or c in "_-" for c in part.id)
    req = ChatRequest("m", [Message("user", [TextPart("x")]), Message("assistant", [part]),
                            Message("tool", [ToolResultPart(part.id, [TextPart("sunny")])])], tools=[Tool("get_weather")])
    contents = wire.generate_body(req, {})["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == signature
    assert contents[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


def test_config_requires_an_api_key(tmp_path: Path):
    from gatehouse.config import ConfigError, from_mapping

    with pytest.raises(ConfigError, match=r"providers\.g\.api_key: required for gemini"):
        from_mapping({"providers": {"g": {"type": "gemini"}}}, {})
