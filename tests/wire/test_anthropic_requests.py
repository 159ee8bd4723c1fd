"""Table-driven tests of the request mappings: Anthropic -> canonical -> OpenAI body (what a
vLLM/Ollama/llama.cpp upstream receives for a Claude Code request), OpenAI -> canonical ->
Anthropic body (what Anthropic receives for an OpenAI client), and the 400s for what cannot
be translated."""
from __future__ import annotations

from typing import Any

import pytest

from gatehouse.errors import InvalidRequest
from gatehouse.wire import anthropic as wa, openai as wo

PNG = "iVBORw0KGgo="
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def a2o(body: dict[str, Any]) -> dict[str, Any]:
    body = {"model": "m", "max_tokens": 100, **body}
    canonical = wa.to_canonical(wa.parse_request(body), wa.extra_fields(body))
    return wo.from_canonical(canonical, "up")


def o2a(body: dict[str, Any]) -> dict[str, Any]:
    body = {"model": "m", **body}
    oreq = wo.parse_chat(body)
    canonical = wo.to_canonical(oreq, {k: v for k, v in body.items() if k not in wo.CHAT_FIELDS})
    return wa.from_canonical(canonical, "claude-up")


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


TOOL_USE_TURNS = [
    user("weather in Paris and Rome?"),
    assistant([
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]),
    user([
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
         "content": [{"type": "text", "text": "service down"}]},
        {"type": "text", "text": "and then?"},
    ]),
]

# (case, Anthropic request fields, expected subset of the OpenAI body)
ANTHROPIC_TO_OPENAI = [
    ("system string", {"system": "be brief", "messages": [user("hi")]},
     {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
    ("system blocks lose cache_control",
     {"system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}],
      "messages": [user([{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}])]},
     {"messages": [{"role": "system", "content": "a\nb"}, {"role": "user", "content": "hi"}]}),
    ("multi-turn", {"messages": [user("one"), assistant("two"), user([{"type": "text", "text": "three"}])]},
     {"messages": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
                   {"role": "user", "content": "three"}]}),
    ("image base64 and url",
     {"messages": [user([{"type": "text", "text": "see"},
                         {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
                         {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}])]},
     {"messages": [{"role": "user", "content": [
         {"type": "text", "text": "see"},
         {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}},
         {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]}),
    ("text document becomes text",
     {"messages": [user([{"type": "document", "title": "notes.txt",
                          "source": {"type": "text", "media_type": "text/plain", "data": "line 1"}},
                         {"type": "text", "text": "summarize"}])]},
     {"messages": [{"role": "user", "content": '<document title="notes.txt">\nline 1\n</document>\nsummarize'}]}),
    ("tools: input_schema -> parameters",
     {"messages": [user("hi")], "tools": [{"name": "get_weather", "description": "w", "input_schema": WEATHER_SCHEMA,
                                          "cache_control": {"type": "ephemeral"}}]},
     {"tools": [{"type": "function", "function": {"name": "get_weather", "description": "w",
                                                   "parameters": WEATHER_SCHEMA}}]}),
    ("tool_choice any -> required, parallel off",
     {"messages": [user("hi")], "tools": [{"name": "t", "input_schema": {"type": "object"}}],
      "tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
     {"tool_choice": "required", "parallel_tool_calls": False}),
    ("tool_choice tool -> named function",
     {"messages": [user("hi")], "tools": [{"name": "t", "input_schema": {"type": "object"}}],
      "tool_choice": {"type": "tool", "name": "t"}},
     {"tool_choice": {"type": "function", "function": {"name": "t"}}}),
    ("tool_choice none and auto",
     {"messages": [user("hi")], "tools": [{"name": "t", "input_schema": {"type": "object"}}],
      "tool_choice": {"type": "none"}},
     {"tool_choice": "none"}),
    ("parallel tool_use / tool_result with an error",
     {"messages": TOOL_USE_TURNS},
     {"messages": [
         {"role": "user", "content": "weather in Paris and Rome?"},
         {"role": "assistant", "content": "Checking.", "tool_calls": [
             {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
             {"id": "toolu_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
         {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
         {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: service down"},
         {"role": "user", "content": "and then?"}]}),
    ("tool_result image follows as user content",
     {"messages": [user("look"), assistant([{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]),
                   user([{"type": "tool_result", "tool_use_id": "t1", "content": [
                       {"type": "text", "text": "screenshot"},
                       {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}])]},
     {"messages": [
         {"role": "user", "content": "look"},
         {"role": "assistant", "content": None, "tool_calls": [
             {"id": "t1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]},
         {"role": "tool", "tool_call_id": "t1", "content": "screenshot"},
         {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]}),
    ("thinking history -> reasoning_content; redacted dropped",
     {"messages": [user("q"), assistant([{"type": "thinking", "thinking": "hmm", "signature": "s1"},
                                        {"type": "redacted_thinking", "data": "xx"},
                                        {"type": "text", "text": "a"}]), user("more")]},
     {"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "content": "a", "reasoning_content": "hmm"},
                   {"role": "user", "content": "more"}]}),
    ("sampling, stop sequences, max_tokens",
     {"messages": [user("hi")], "temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END", "##"],
      "max_tokens": 321},
     {"temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop": ["END", "##"], "max_tokens": 321}),
    ("mid-conversation system turn joins the system message",
     {"system": "base", "messages": [user("hi"), {"role": "system", "content": "agents: a, b"}]},
     {"messages": [{"role": "system", "content": "base\n\nagents: a, b"}, {"role": "user", "content": "hi"}]}),
]


@pytest.mark.parametrize("case,body,expected", ANTHROPIC_TO_OPENAI, ids=[c[0] for c in ANTHROPIC_TO_OPENAI])
def test_anthropic_request_to_openai(case: str, body: dict, expected: dict) -> None:
    out = a2o(body)
    assert out["model"] == "up"
    for key, value in expected.items():
        assert out[key] == value, f"{case}: {key}"


def test_anthropic_only_fields_never_reach_an_openai_upstream() -> None:
    body = {"messages": [user("hi")], "metadata": {"user_id": "u1"}, "thinking": {"type": "enabled", "budget_tokens": 2048},
            "context_management": {"edits": []}, "output_config": {"effort": "high"}, "service_tier": "auto",
            "cache_control": {"type": "ephemeral"}, "stream": True}
    out = a2o(body)
    assert set(out) == {"model", "messages", "max_tokens", "stream", "stream_options"}
    canonical = wa.to_canonical(wa.parse_request({"model": "m", "max_tokens": 9, **body}),
                                wa.extra_fields({"model": "m", **body}))
    assert canonical.extra["anthropic"]["context_management"] == {"edits": []}
    assert canonical.reasoning == {"budget_tokens": 2048}


# (case, body, param named by the 400)
REFUSED = [
    ("max_tokens required", {"model": "m", "messages": [user("x")]}, "max_tokens"),
    ("max_tokens positive", {"model": "m", "max_tokens": 0, "messages": [user("x")]}, "max_tokens"),
    ("messages empty", {"model": "m", "max_tokens": 5, "messages": []}, "messages"),
    ("messages not a list", {"model": "m", "max_tokens": 5, "messages": "hi"}, "messages"),
    ("role", {"model": "m", "max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
    ("content type", {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("tool_choice type", {"model": "m", "max_tokens": 5, "messages": [user("x")], "tool_choice": {"type": "some"}},
     "tool_choice.type"),
    ("tool_choice name", {"model": "m", "max_tokens": 5, "messages": [user("x")], "tool_choice": {"type": "tool"}},
     "tool_choice.name"),
    ("thinking budget", {"model": "m", "max_tokens": 5, "messages": [user("x")], "thinking": {"type": "enabled"}},
     "thinking.budget_tokens"),
]


@pytest.mark.parametrize("case,body,param", REFUSED, ids=[c[0] for c in REFUSED])
def test_invalid_requests_name_the_param(case: str, body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        wa.parse_request(body)
    assert info.value.param == param


# Valid Anthropic requests that an OpenAI-compatible model cannot take: 400 at translation.
UNTRANSLATABLE = [
    ("pdf document", [user([{"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                            "data": "JVBERi0="}}])], None, "messages[0].content[0].source.type"),
    ("server tool", [user("x")], [{"type": "web_search_20250305", "name": "web_search"}], "tools[0].type"),
    ("tool_use in a user turn", [user([{"type": "tool_use", "id": "a", "name": "b", "input": {}}])], None,
     "messages[0].content[0].type"),
    ("tool_result without id", [user([{"type": "tool_result", "content": "x"}])], None,
     "messages[0].content[0].tool_use_id"),
]


@pytest.mark.parametrize("case,messages,tools,param", UNTRANSLATABLE, ids=[c[0] for c in UNTRANSLATABLE])
def test_untranslatable_content_is_a_400_naming_it(case: str, messages: list, tools: list | None, param: str) -> None:
    body: dict[str, Any] = {"model": "m", "max_tokens": 5, "messages": messages}
    if tools:
        body["tools"] = tools
    with pytest.raises(InvalidRequest) as info:
        wa.to_canonical(wa.parse_request(body), {})
    assert info.value.param == param


# (case, OpenAI request fields, expected subset of the Anthropic body)
OPENAI_TO_ANTHROPIC = [
    ("system and developer -> system blocks; default max_tokens",
     {"messages": [{"role": "system", "content": "s1"}, {"role": "developer", "content": "s2"},
                   {"role": "user", "content": "hi"}]},
     {"system": [{"type": "text", "text": "s1"}, {"type": "text", "text": "s2"}],
      "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": wa.DEFAULT_MAX_TOKENS}),
    ("max_completion_tokens, sampling, stop string",
     {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 77, "temperature": 0.5,
      "top_p": 0.8, "stop": "END"},
     {"max_tokens": 77, "temperature": 0.5, "top_p": 0.8, "stop_sequences": ["END"]}),
    ("tools and named tool_choice, parallel off",
     {"messages": [{"role": "user", "content": "hi"}],
      "tools": [{"type": "function", "function": {"name": "get_weather", "description": "w", "parameters": WEATHER_SCHEMA}}],
      "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False},
     {"tools": [{"name": "get_weather", "input_schema": WEATHER_SCHEMA, "description": "w"}],
      "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}}),
    ("tool_choice required -> any",
     {"messages": [{"role": "user", "content": "hi"}],
      "tools": [{"type": "function", "function": {"name": "t"}}], "tool_choice": "required"},
     {"tool_choice": {"type": "any"}}),
    ("tool_calls and tool messages -> tool_use and one user turn of tool_results",
     {"messages": [
         {"role": "user", "content": "weather?"},
         {"role": "assistant", "content": "", "tool_calls": [
             {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city": "Paris"}'}},
             {"id": "c2", "type": "function", "function": {"name": "w", "arguments": '{"city": "Rome"}'}}]},
         {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
         {"role": "tool", "tool_call_id": "c2", "content": "rain"},
         {"role": "user", "content": "thanks"}]},
     {"messages": [
         {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
         {"role": "assistant", "content": [
             {"type": "tool_use", "id": "c1", "name": "w", "input": {"city": "Paris"}},
             {"type": "tool_use", "id": "c2", "name": "w", "input": {"city": "Rome"}}]},
         {"role": "user", "content": [
             {"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "sunny"}]},
             {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "rain"}]},
             {"type": "text", "text": "thanks"}]}]}),
    ("images: data URL -> base64, http -> url",
     {"messages": [{"role": "user", "content": [
         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
         {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]},
     {"messages": [{"role": "user", "content": [
         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
         {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}]}]}),
    ("reasoning_effort -> extended thinking with room for it",
     {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high", "max_tokens": 1000, "temperature": 0.3},
     {"thinking": {"type": "enabled", "budget_tokens": 16384}, "max_tokens": 16384 + wa.DEFAULT_MAX_TOKENS}),
    ("unsigned reasoning history is not replayed; user -> metadata",
     {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "reasoning_content": "r"},
                   {"role": "user", "content": "c"}], "user": "alice"},
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]},
                   {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
                   {"role": "user", "content": [{"type": "text", "text": "c"}]}],
      "metadata": {"user_id": "alice"}}),
    ("consecutive user turns merge",
     {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}),
]


@pytest.mark.parametrize("case,body,expected", OPENAI_TO_ANTHROPIC, ids=[c[0] for c in OPENAI_TO_ANTHROPIC])
def test_openai_request_to_anthropic(case: str, body: dict, expected: dict) -> None:
    out = o2a(body)
    assert out["model"] == "claude-up"
    for key, value in expected.items():
        assert out[key] == value, f"{case}: {key}"
    if "reasoning_effort" in body:
        assert "temperature" not in out, "extended thinking takes only the default temperature"


def test_anthropic_fields_round_trip_to_an_anthropic_upstream() -> None:
    body = {"model": "m", "max_tokens": 50, "messages": [user("hi")], "metadata": {"user_id": "u"},
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}, "service_tier": "auto"}
    canonical = wa.to_canonical(wa.parse_request(body), wa.extra_fields(body))
    out = wa.from_canonical(canonical, "claude-up")
    assert out["thinking"] == {"type": "adaptive"} and out["output_config"] == {"effort": "high"}
    assert out["metadata"] == {"user_id": "u"} and out["service_tier"] == "auto"
    assert "stream" not in out
