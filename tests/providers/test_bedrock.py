"""Provider `bedrock` end to end: the openai SDK -> gatehouse -> the Bedrock test upstream, which
recomputes every SigV4 signature with botocore and speaks Converse JSON and real event-stream
frames. Credentials from the environment, profile files, web identity (a local STS) and the
EKS Pod Identity container endpoint."""
from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from tests.provider_fixtures import (
    BEDROCK_ENV_KEYS,
    CLAUDE,
    start_aws_isolated,
)
from tests.upstreams import aws_container_wire, bedrock_wire, gemini_wire, sts_wire
from tests.upstreams.conventions import embedding
from tests.upstreams.harness import ServerThread

KEY = "bedrock-test-key"
ARN = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def bedrock(url: str, **extra) -> dict:
    # These tests provoke upstream 5xx on purpose, one after another, against one shared
    # gateway: no circuit breaking here (it is tested in tests/routing).
    return {"type": "bedrock", "region": "us-west-2", "endpoint_url": url, "failure_threshold": 0, **extra}


@pytest.fixture(scope="module")
def gh(bedrock_upstream, gemini_upstream, tmp_path_factory):
    home = tmp_path_factory.mktemp("gh-bedrock")
    creds = home / "credentials"
    creds.write_text(f"[gh]\naws_access_key_id = {sts_wire.TEMP_ACCESS_KEY}\n"
                     f"aws_secret_access_key = {sts_wire.TEMP_SECRET_KEY}\n"
                     f"aws_session_token = {sts_wire.TEMP_SESSION_TOKEN}\n"
                     "[wrong]\naws_access_key_id = AKIDTEST\naws_secret_access_key = not-the-secret\n")
    config_file = home / "config"
    config_file.write_text(f"[profile gh-config]\naws_access_key_id = {sts_wire.TEMP_ACCESS_KEY}\n"
                           f"aws_secret_access_key = {sts_wire.TEMP_SECRET_KEY}\n"
                           f"aws_session_token = {sts_wire.TEMP_SESSION_TOKEN}\n")
    up = bedrock_upstream.url
    cfg = {
        "providers": {
            "br": bedrock(up),
            "br-guard": bedrock(up, guardrail={"identifier": "gr-123", "version": "2", "trace": "enabled",
                                               "stream_processing_mode": "async"}),
            "br-profile": bedrock(up, profile="gh"),
            "br-config-profile": bedrock(up, profile="gh-config"),
            "br-wrong": bedrock(up, profile="wrong"),
            "br-missing": bedrock(up, profile="missing"),
            "br-key": bedrock(up, api_key=bedrock_wire.BEARER_TOKEN),
            "gem": {"type": "gemini", "api_key": gemini_wire.API_KEY, "base_url": gemini_upstream.url + "/v1beta"},
        },
        "models": [
            {"name": "claude", "deployments": [{"provider": "br", "model": CLAUDE}]},
            {"name": "claude-arn", "deployments": [{"provider": "br", "model": ARN}]},
            {"name": "nova", "deployments": [{"provider": "br", "model": "amazon.nova-pro-v1:0"}]},
            {"name": "denied", "deployments": [{"provider": "br", "model": "anthropic.claude-denied-v1:0"}]},
            {"name": "guarded", "deployments": [{"provider": "br-guard", "model": CLAUDE}]},
            {"name": "via-profile", "deployments": [{"provider": "br-profile", "model": CLAUDE}]},
            {"name": "via-config-profile", "deployments": [{"provider": "br-config-profile", "model": CLAUDE}]},
            {"name": "via-wrong", "deployments": [{"provider": "br-wrong", "model": CLAUDE}]},
            {"name": "via-missing", "deployments": [{"provider": "br-missing", "model": CLAUDE}]},
            {"name": "via-key", "deployments": [{"provider": "br-key", "model": CLAUDE}]},
            {"name": "titan", "embeddings": True,
             "deployments": [{"provider": "br", "model": "amazon.titan-embed-text-v2:0"}]},
            {"name": "cohere", "embeddings": True,
             "deployments": [{"provider": "br", "model": "cohere.embed-english-v3"}]},
            {"name": "claude-with-fallback", "deployments": [{"provider": "br", "model": CLAUDE},
                                                             {"provider": "gem", "model": "gemini-2.5-flash"}]},
        ],
        "groups": {"all": {"models": ["*"]}}, "consumers": {"dev": {"group": "all", "keys": [KEY]}},
    }
    env = {**BEDROCK_ENV_KEYS, "AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_CONFIG_FILE": str(config_file)}
    gh = start_aws_isolated(cfg, home, env)
    yield gh
    gh.stop()


@pytest.fixture
def client(gh):
    return openai.OpenAI(base_url=gh.url + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def seen(bedrock_upstream):
    bedrock_upstream.recorder.clear()
    return bedrock_upstream.recorder


def bedrock_calls(recorder) -> list:
    return [r for r in recorder.requests if r.path.startswith("/model/")]


def test_converse_signed_with_environment_credentials(client, seen):
    resp = client.chat.completions.create(model="claude", messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}])
    assert resp.choices[0].message.content == "echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (4, 3)
    call = seen.last
    assert call.path == f"/model/{CLAUDE}/converse"  # the inference profile id, percent-encoded on the wire
    assert call.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    assert "/us-west-2/bedrock/aws4_request" in call.headers["Authorization"]
    assert "X-Amz-Security-Token" not in call.headers
    body = call.json()
    assert body["system"] == [{"text": "be brief"}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "hello there"}]}]


def test_inference_profile_arn_as_model_id(client, seen):
    resp = client.chat.completions.create(model="claude-arn", messages=[{"role": "user", "content": "arn ok"}])
    assert resp.choices[0].message.content == "echo: arn ok"  # the signature held over a path with %2F


def test_converse_stream_decodes_event_stream_frames(client, seen):
    chunks = list(client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "THINK one two"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    thinking = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert text == "echo: THINK one two" and thinking == "thinking about it"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 7)
    assert seen.last.path.endswith("/converse-stream")
    assert seen.last.headers["Accept"] == "application/vnd.amazon.eventstream"


def test_tool_use_and_results_over_several_turns(client, seen):
    first = client.chat.completions.create(model="claude", tools=TOOLS,
                                           messages=[{"role": "user", "content": "TOOL2 weather please"}])
    calls = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert seen.last.json()["toolConfig"]["tools"][0]["toolSpec"] == {
        "name": "get_weather", "description": "weather in a city",
        "inputSchema": {"json": TOOLS[0]["function"]["parameters"]}}
    history = [{"role": "user", "content": "TOOL2 weather please"},
               first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
               {"role": "tool", "tool_call_id": calls[1].id, "content": "rainy"}]
    second = client.chat.completions.create(model="claude", tools=TOOLS, messages=history)
    assert second.choices[0].message.content == "echo: sunny rainy"
    turns = seen.last.json()["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]  # both results in one user turn
    assert [b["toolUse"]["input"] for b in turns[1]["content"]] == [{"city": "Paris"}, {"city": "Rome"}]
    assert [b["toolResult"]["toolUseId"] for b in turns[2]["content"]] == [c.id for c in calls]
    # a follow-up without the tools list still declares the used tool (Converse requires toolConfig)
    third = client.chat.completions.create(model="claude", messages=history + [
        second.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "thanks"}])
    assert third.choices[0].message.content == "echo: thanks"
    assert seen.last.json()["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"


def test_streamed_tool_call(client):
    name, args, finish = None, "", None
    for c in client.chat.completions.create(model="claude", tools=TOOLS, stream=True,
                                            messages=[{"role": "user", "content": "TOOL now"}]):
        for tc in c.choices[0].delta.tool_calls or [] if c.choices else []:
            name = name or tc.function.name
            args += tc.function.arguments or ""
        if c.choices and c.choices[0].finish_reason:
            finish = c.choices[0].finish_reason
    assert (name, json.loads(args), finish) == ("get_weather", {"city": "Paris"}, "tool_calls")


def test_images_limits_and_stop_sequences(client, seen):
    content = [{"type": "text", "text": "describe this"},
               {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}}]
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert seen.last.json()["messages"][0]["content"][1] == {
        "image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQSkZJRg=="}}}
    short = client.chat.completions.create(model="claude", max_tokens=2,
                                           messages=[{"role": "user", "content": "a b c d"}])
    assert (short.choices[0].message.content, short.choices[0].finish_reason) == ("echo: a", "length")
    assert seen.last.json()["inferenceConfig"] == {"maxTokens": 2}
    stopped = client.chat.completions.create(model="claude", stop=["c d"],
                                             messages=[{"role": "user", "content": "a b c d"}])
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == ("echo: a b ", "stop")


def test_image_links_are_refused_before_reaching_bedrock(client, seen):
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError, match="base64"):
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert bedrock_calls(seen) == []


def test_claude_only_fields_go_to_additional_model_request_fields(client, seen):
    client.chat.completions.create(model="claude", reasoning_effort="low", temperature=0.5, extra_body={"top_k": 20},
                                   messages=[{"role": "user", "content": "x"}])
    body = seen.last.json()
    assert body["additionalModelRequestFields"] == {"top_k": 20, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert body["inferenceConfig"] == {"temperature": 0.5}
    client.chat.completions.create(model="nova", extra_body={"top_k": 20}, messages=[{"role": "user", "content": "x"}])
    assert "additionalModelRequestFields" not in seen.last.json()


def test_guardrail_configuration_is_passed_through(client, seen):
    client.chat.completions.create(model="guarded", messages=[{"role": "user", "content": "x"}])
    assert seen.last.json()["guardrailConfig"] == {"guardrailIdentifier": "gr-123", "guardrailVersion": "2",
                                                   "trace": "enabled"}
    list(client.chat.completions.create(model="guarded", messages=[{"role": "user", "content": "x"}], stream=True))
    assert seen.last.json()["guardrailConfig"]["streamProcessingMode"] == "async"


def test_embeddings_through_invoke_model(client, seen):
    titan = client.embeddings.create(model="titan", input=["alpha beta", "gamma"])  # base64 float32
    assert titan.data[1].embedding == pytest.approx(embedding("gamma"), abs=1e-6)
    assert titan.usage.prompt_tokens == 3
    assert sorted(r.json()["inputText"] for r in bedrock_calls(seen)) == ["alpha beta", "gamma"]
    cohere = client.embeddings.create(model="cohere", input=["alpha beta", "gamma"], encoding_format="float")
    assert [d.embedding for d in cohere.data] == [embedding("alpha beta"), embedding("gamma")]
    assert seen.last.json() == {"texts": ["alpha beta", "gamma"], "input_type": "search_document"}
    with pytest.raises(openai.BadRequestError, match="does not support embeddings"):
        client.embeddings.create(model="claude", input="x")


@pytest.mark.parametrize("model,prompt,status,needle", [
    ("claude", "FAIL429", 429, "throttling"),
    ("claude", "NOTREADY", 503, "not available"),
    ("claude", "FAIL503", 503, "not available"),
    ("claude", "FAIL500", 502, "InternalServerException"),
    ("denied", "hi", 502, "bedrock:InvokeModel on that model"),
])
def test_bedrock_errors_map_to_gateway_statuses(client, model, prompt, status, needle):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    assert info.value.status_code == status
    message = info.value.body["message"]
    assert needle in message
    assert "AKIDTEST" not in message and "secret" not in message and "arn:" not in message


def test_validation_exception_is_a_400_with_bedrocks_type_not_its_text(client):
    """AWS's message text is the upstream's, not shown to clients (docs/errors.md); its type is."""
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=[
            {"role": "assistant", "content": "I start"}, {"role": "user", "content": "x"}])
    assert "ValidationException" in info.value.body["message"]
    assert "must start with a user message" not in info.value.body["message"]


def test_streaming_access_denied_names_the_streaming_permission(client):
    with pytest.raises(openai.APIStatusError) as info:
        list(client.chat.completions.create(model="denied", messages=[{"role": "user", "content": "x"}], stream=True))
    assert info.value.status_code == 502
    assert "bedrock:InvokeModelWithResponseStream" in info.value.body["message"]


@pytest.mark.parametrize("prompt,needle", [
    ("STREAMERR", "ModelStreamErrorException"), ("STREAMTHROTTLE", "throttling"), ("CUTSTREAM", "closed the connection"),
])
def test_mid_stream_failures_reach_the_client_as_stream_errors(client, prompt, needle):
    text = ""
    with pytest.raises(openai.APIError) as info:
        for c in client.chat.completions.create(model="claude", stream=True,
                                                messages=[{"role": "user", "content": f"one two {prompt}"}]):
            text += c.choices[0].delta.content or "" if c.choices else ""
    assert text == "echo: one "  # the deltas before the failure were relayed
    assert needle in info.value.message


def test_not_ready_bedrock_falls_back_to_gemini(client, seen, gemini_upstream):
    gemini_upstream.recorder.clear()
    resp = client.chat.completions.create(model="claude-with-fallback",
                                          messages=[{"role": "user", "content": "NOTREADY yet"}])
    assert resp.choices[0].message.content == "echo: NOTREADY yet"
    assert len(bedrock_calls(seen)) == 1 and len(gemini_upstream.recorder.requests) == 1


@pytest.mark.parametrize("model", ["via-profile", "via-config-profile"])
def test_credentials_from_a_named_profile(client, seen, model):
    resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "profile"}])
    assert resp.choices[0].message.content == "echo: profile"
    assert seen.last.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIATEST/")
    assert seen.last.headers["X-Amz-Security-Token"] == "sts-token"


def test_wrong_secret_is_a_502_that_shows_no_credential(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="via-wrong", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_auth_failed"
    assert "InvalidSignatureException" in info.value.body["message"]
    assert "not-the-secret" not in json.dumps(info.value.body)


def test_unavailable_credentials_are_a_502_naming_the_source(client, seen):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="via-missing", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502 and "ProfileNotFound" in info.value.body["message"]
    assert bedrock_calls(seen) == []


def test_bedrock_api_key_instead_of_sigv4(client, seen):
    client.chat.completions.create(model="via-key", messages=[{"role": "user", "content": "x"}])
    assert seen.last.headers["Authorization"] == f"Bearer {bedrock_wire.BEARER_TOKEN}"


def _one_model(url: str) -> dict:
    return {"providers": {"br": bedrock(url)}, "models": [{"name": "claude", "deployments": [{"provider": "br", "model": CLAUDE}]}],
            "groups": {"all": {"models": ["*"]}}, "consumers": {"dev": {"group": "all", "keys": [KEY]}}}


def test_web_identity_credentials_from_local_sts(start_aws_gatehouse, bedrock_upstream, seen, tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJnYXRlaG91c2UifQ.c2ln")
    role = "arn:aws:iam::123456789012:role/gatehouse-bedrock"
    env = {"AWS_WEB_IDENTITY_TOKEN_FILE": str(token), "AWS_ROLE_ARN": role,
           "AWS_ENDPOINT_URL_STS": bedrock_upstream.url, "AWS_REGION": "us-west-2"}
    gh = start_aws_gatehouse(_one_model(bedrock_upstream.url), env)
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=KEY, max_retries=0)
    for i in range(3):
        assert client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": f"irsa {i}"}]).choices[0].message.content == f"echo: irsa {i}"
    sts_calls = [r for r in seen.requests if r.path == "/"]
    assert len(sts_calls) == 1, "credentials are resolved once and cached, not per request"
    assert f"RoleArn={role.replace(':', '%3A').replace('/', '%2F')}" in sts_calls[0].body.decode()
    assert b"WebIdentityToken=eyJhbGciOiJSUzI1NiJ9" in sts_calls[0].body
    for call in bedrock_calls(seen):
        assert call.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIATEST/")
        assert call.headers["X-Amz-Security-Token"] == "sts-token"

    token.write_text("invalid")  # a second gateway whose identity token STS refuses
    bad = start_aws_gatehouse(_one_model(bedrock_upstream.url), env)
    bad_client = openai.OpenAI(base_url=bad.url + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        bad_client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    message = info.value.body["message"]
    assert "assume-role-with-web-identity" in message and "InvalidIdentityToken" in message
    assert "123456789012" not in message and "gatehouse-bedrock" not in message


def test_eks_pod_identity_container_credentials(start_aws_gatehouse, bedrock_upstream, seen, tmp_path: Path):
    token = tmp_path / "eks-pod-identity-token"
    token.write_text(aws_container_wire.TOKEN)
    with ServerThread(aws_container_wire.make_app) as agent:
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": agent.url + "/v1/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token)}
        gh = start_aws_gatehouse(_one_model(bedrock_upstream.url), env)
        client = openai.OpenAI(base_url=gh.url + "/v1", api_key=KEY, max_retries=0)
        for i in range(3):
            resp = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": f"pod {i}"}])
            assert resp.choices[0].message.content == f"echo: pod {i}"
        assert [r.path for r in agent.recorder.requests] == ["/v1/credentials"]  # fetched once, then cached
        assert agent.recorder.last.headers["Authorization"] == aws_container_wire.TOKEN
        assert seen.last.headers["X-Amz-Security-Token"] == "sts-token"
