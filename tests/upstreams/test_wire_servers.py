"""Self-tests of the wire-format test upstreams, driven by official SDKs and raw clients."""
from __future__ import annotations

import datetime as dt
import json
import math
import time
import urllib.error
import urllib.request

import pytest

from . import anthropic_wire, bedrock_wire, gemini_wire, ollama_wire, sts_wire
from .conventions import embedding, make_reply, pieces
from .harness import ServerThread


def http(method: str, url: str, body=None, headers=None) -> tuple[int, dict, bytes]:
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if isinstance(body, (dict, list)):
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


# ---------------------------------------------------------------- conventions

def test_conventions_are_deterministic():
    assert "".join(pieces("echo: hello  big world ")) == "echo: hello  big world "
    assert embedding("x") == embedding("x") and embedding("x") != embedding("y")
    assert len(embedding("x")) == 8 and math.isclose(sum(v * v for v in embedding("x")), 1, rel_tol=1e-4)
    reply = make_reply("say STOP now", stop=["now"])
    assert (reply.text, reply.stop_reason, reply.stop_sequence) == ("echo: say STOP ", "stop_sequence", "now")
    assert make_reply("a b c d e", max_tokens=2).text == "echo: a"
    two = make_reply("TOOL2", tools=["w"])
    assert [args for _, args in two.tool_calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert two.output_tokens == 10


# ---------------------------------------------------------------- Anthropic

@pytest.fixture(scope="module")
def anthropic_srv():
    with ServerThread(anthropic_wire.make_app) as srv:
        yield srv


@pytest.fixture()
def claude(anthropic_srv):
    anthropic = pytest.importorskip("anthropic")
    return anthropic.Anthropic(api_key=anthropic_wire.API_KEY, base_url=anthropic_srv.url, max_retries=0)


def test_anthropic_message(claude):
    msg = claude.messages.create(model="claude-test-1", max_tokens=100, system="be brief",
                                 messages=[{"role": "user", "content": [{"type": "text", "text": "hello"},
                                                                       {"type": "text", "text": "world"}]}])
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].text == "echo: hello world" and msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (4, 3)
    assert msg.usage.cache_creation_input_tokens == 0 and msg.usage.cache_read_input_tokens == 0


def test_anthropic_stream_event_sequence(anthropic_srv):
    status, headers, raw = http("POST", anthropic_srv.url + "/v1/messages", {
        "model": "claude-x", "max_tokens": 50, "stream": True,
        "messages": [{"role": "user", "content": "hi there"}]},
        {"x-api-key": anthropic_wire.API_KEY, "anthropic-version": "2023-06-01"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in raw.decode().strip().split("\n\n")]
    names = [e[0].removeprefix("event: ") for e in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    datas = [json.loads(e[1].removeprefix("data: ")) for e in events]
    assert "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta") == "echo: hi there"
    assert datas[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert datas[-2]["usage"] == {"output_tokens": 3}


def test_anthropic_stream_thinking_and_tools(claude):
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}, {"name": "other", "input_schema": {"type": "object"}}]
    with claude.messages.stream(model="claude-x", max_tokens=2000, tools=tools,
                                thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[{"role": "user", "content": "THINK then TOOL2"}]) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use", "tool_use"]
    assert final.content[0].thinking == "thinking about it" and final.content[0].signature == "sig-123"
    assert [b.input for b in final.content[1:]] == [{"city": "Paris"}, {"city": "Rome"}]
    assert final.content[1].name == "get_weather" and final.content[1].id != final.content[2].id
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 13


def test_anthropic_tool_round_trip_and_validation(claude):
    import anthropic

    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    first = claude.messages.create(model="claude-x", max_tokens=50, tools=tools,
                                   messages=[{"role": "user", "content": "TOOL please"}])
    call = first.content[-1]
    history = [{"role": "user", "content": "TOOL please"}, {"role": "assistant", "content": [call.model_dump()]}]
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}
    second = claude.messages.create(model="claude-x", max_tokens=50, tools=tools, messages=history + [result])
    assert second.content[0].text == "echo: sunny"
    bad_result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"}]}
    bad_cases = [
        dict(messages=history + [bad_result], tools=tools),
        dict(messages=history + [{"role": "user", "content": "no result"}], tools=tools),
        dict(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
        dict(messages=[{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]),
        dict(messages=[{"role": "user", "content": ""}]),
        dict(messages=[{"role": "user", "content": "a"}], extra_body={"temperature": 1.5}),
        dict(messages=[{"role": "user", "content": "a"}], extra_body={"n": 2}),
    ]
    for case in bad_cases:
        with pytest.raises(anthropic.BadRequestError) as info:
            claude.messages.create(model="claude-x", max_tokens=50, **case)
        assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "invalid_request_error"


def test_anthropic_stops_limits_cache_and_count(claude):
    msg = claude.messages.create(model="claude-x", max_tokens=50, stop_sequences=["STOP"],
                                 messages=[{"role": "user", "content": "go STOP here"}])
    assert (msg.content[0].text, msg.stop_reason, msg.stop_sequence) == ("echo: go ", "stop_sequence", "STOP")
    msg = claude.messages.create(model="claude-x", max_tokens=2, messages=[{"role": "user", "content": "a b c"}])
    assert (msg.content[0].text, msg.stop_reason, msg.usage.output_tokens) == ("echo: a", "max_tokens", 2)
    system = [{"type": "text", "text": "long cached system prompt", "cache_control": {"type": "ephemeral"}}]
    args = dict(model="claude-x", max_tokens=50, system=system, messages=[{"role": "user", "content": "hi"}])
    first, second = claude.messages.create(**args), claude.messages.create(**args)
    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (4, 0)
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (0, 4)
    assert second.usage.input_tokens == 1
    count = claude.messages.count_tokens(model="claude-x", system="sys", messages=[{"role": "user", "content": "one two"}])
    assert count.input_tokens == 3


def test_anthropic_errors(claude, anthropic_srv):
    import anthropic

    with pytest.raises(anthropic.AuthenticationError):
        claude.with_options(api_key="wrong").messages.create(
            model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    status, _, raw = http("POST", anthropic_srv.url + "/v1/messages", {"model": "claude-x"},
                          {"x-api-key": anthropic_wire.API_KEY})
    assert status == 400 and json.loads(raw)["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "FAIL429"}])
    assert info.value.response.headers["retry-after"] == "1"
    with pytest.raises(anthropic.InternalServerError) as info:
        claude.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "FAIL529"}])
    assert info.value.status_code == 529 and info.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    once = [{"role": "user", "content": "FAIL500ONCE retry me"}]
    with pytest.raises(anthropic.InternalServerError):
        claude.messages.create(model="claude-x", max_tokens=5, messages=once)
    assert claude.messages.create(model="claude-x", max_tokens=50, messages=once).content[0].text.startswith("echo:")


def test_anthropic_broken_streams(claude):
    import anthropic

    with pytest.raises(anthropic.APIStatusError) as info:
        with claude.messages.stream(model="claude-x", max_tokens=50,
                                    messages=[{"role": "user", "content": "STREAMERR a b c"}]) as stream:
            stream.get_final_message()
    assert "overloaded_error" in str(info.value.body)
    with pytest.raises(Exception) as info:  # the transport's "incomplete chunked read" error
        with claude.messages.stream(model="claude-x", max_tokens=50,
                                    messages=[{"role": "user", "content": "CUTSTREAM a b c"}]) as stream:
            stream.get_final_message()
    assert "ProtocolError" in type(info.value).__name__ or isinstance(info.value, anthropic.APIError)


def test_slow_prompt_waits(claude):
    import anthropic

    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        claude.with_options(timeout=0.5).messages.create(
            model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "SLOW"}])
    assert time.monotonic() - started < 3


# ---------------------------------------------------------------- Bedrock + STS

MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}


@pytest.fixture(scope="module")
def bedrock_srv():
    with ServerThread(bedrock_wire.make_app) as srv:
        yield srv


def bedrock_client(url, key=bedrock_wire.ACCESS_KEY, secret=bedrock_wire.SECRET_KEY, token=None):
    import botocore.config
    import botocore.session

    return botocore.session.get_session().create_client(
        "bedrock-runtime", region_name="us-west-2", endpoint_url=url, aws_access_key_id=key,
        aws_secret_access_key=secret, aws_session_token=token,
        config=botocore.config.Config(retries={"total_max_attempts": 1}))


def signed_post(url: str, body: dict, key="AKIDTEST", secret="test-secret", region="eu-central-1"):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("POST", url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    SigV4Auth(Credentials(key, secret), "bedrock", region).add_auth(request)
    return http("POST", url, request.body, dict(request.headers))


def decode_frames(raw: bytes):
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return [(m.headers, json.loads(m.payload)) for m in buffer]


def test_bedrock_converse_with_botocore(bedrock_srv):
    client = bedrock_client(bedrock_srv.url)
    out = client.converse(modelId=MODEL_ID, system=[{"text": "be brief"}],
                          messages=[{"role": "user", "content": [{"text": "hello THINK world"}]}],
                          inferenceConfig={"maxTokens": 50})
    content = out["output"]["message"]["content"]
    assert content[0]["reasoningContent"]["reasoningText"] == {"text": "thinking about it", "signature": "sig-123"}
    assert content[1] == {"text": "echo: hello THINK world"} and out["stopReason"] == "end_turn"
    assert out["usage"] == {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}
    assert "latencyMs" in out["metrics"]
    assert bedrock_srv.recorder.last.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")


def test_bedrock_converse_stream_raw_frames(bedrock_srv):
    url = f"{bedrock_srv.url}/model/{MODEL_ID.replace(':', '%3A')}/converse-stream"
    status, headers, raw = signed_post(url, {"messages": [{"role": "user", "content": [{"text": "one two"}]}],
                                             "inferenceConfig": {"stopSequences": ["two"]}})
    assert status == 200 and headers["content-type"] == "application/vnd.amazon.eventstream"
    frames = decode_frames(raw)
    assert all(h[":message-type"] == "event" and h[":content-type"] == "application/json" for h, _ in frames)
    kinds = [h[":event-type"] for h, _ in frames]
    assert kinds == ["messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]
    assert "".join(p["delta"]["text"] for h, p in frames if h[":event-type"] == "contentBlockDelta") == "echo: one "
    assert frames[-2][1]["stopReason"] == "stop_sequence"
    assert frames[-1][1]["usage"] == {"inputTokens": 2, "outputTokens": 2, "totalTokens": 4}


def test_bedrock_stream_tools_and_errors_with_botocore(bedrock_srv):
    from botocore.exceptions import EventStreamError

    client = bedrock_client(bedrock_srv.url)
    out = client.converse_stream(modelId=MODEL_ID, toolConfig=TOOLS,
                                 messages=[{"role": "user", "content": [{"text": "TOOL2"}]}])
    events = list(out["stream"])
    starts = [e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e]
    assert [s["name"] for s in starts] == ["get_weather", "get_weather"] and starts[0]["toolUseId"] != starts[1]["toolUseId"]
    args = {}
    for e in events:
        if "contentBlockDelta" in e:
            d = e["contentBlockDelta"]
            args[d["contentBlockIndex"]] = args.get(d["contentBlockIndex"], "") + d["delta"]["toolUse"]["input"]
    assert [json.loads(a) for a in args.values()] == [{"city": "Paris"}, {"city": "Rome"}]
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}
    for word, code in (("STREAMERR", "modelStreamErrorException"), ("STREAMTHROTTLE", "throttlingException")):
        stream = client.converse_stream(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": f"{word} a b"}]}])["stream"]
        with pytest.raises(EventStreamError) as info:
            list(stream)
        assert info.value.response["Error"]["Code"] == code
    stream = client.converse_stream(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "CUTSTREAM a b"}]}])["stream"]
    with pytest.raises(Exception):  # noqa: B017 - botocore raises its own parse error types
        list(stream)


def test_bedrock_signature_checks(bedrock_srv):
    from botocore.exceptions import ClientError

    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    with pytest.raises(ClientError) as info:
        bedrock_client(bedrock_srv.url, secret="wrong").converse(modelId=MODEL_ID, messages=messages)
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    url = f"{bedrock_srv.url}/model/m/converse"
    status, headers, raw = http("POST", url, {"messages": messages})
    assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"
    status, _, raw = signed_post(url, {"messages": messages})
    assert status == 200, raw
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("POST", url, data=b'{"messages": []}', headers={"content-type": "application/json"})
    SigV4Auth(Credentials("AKIDTEST", "test-secret"), "bedrock", "us-east-1").add_auth(request)
    status, headers, raw = http("POST", url, json.dumps({"messages": messages}).encode(), dict(request.headers))
    assert status == 403 and json.loads(raw)["message"].startswith("The request signature we calculated does not match")
    status, headers, _ = signed_post(url, {"messages": messages}, key="AKIDOTHER")
    assert status == 403 and headers["x-amzn-errortype"] == "UnrecognizedClientException"


def test_sts_web_identity_credentials(bedrock_srv, tmp_path, monkeypatch):
    import botocore.session
    from botocore.exceptions import ClientError

    sts = botocore.session.get_session().create_client("sts", region_name="us-west-2", endpoint_url=bedrock_srv.url)
    role = "arn:aws:iam::123456789012:role/gatehouse"
    creds = sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="session", WebIdentityToken="a.jwt.token")["Credentials"]
    assert (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]) == (
        sts_wire.TEMP_ACCESS_KEY, sts_wire.TEMP_SECRET_KEY, sts_wire.TEMP_SESSION_TOKEN) == ("ASIATEST", "sts-secret", "sts-token")
    assert creds["Expiration"] > dt.datetime.now(dt.UTC)
    with pytest.raises(ClientError) as info:
        sts.assume_role_with_web_identity(RoleArn=role, RoleSessionName="session", WebIdentityToken="invalid")
    assert info.value.response["Error"]["Code"] == "InvalidIdentityToken"
    token_file = tmp_path / "token"
    token_file.write_text("header.payload.signature")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ROLE_ARN", role)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", bedrock_srv.url)
    session = botocore.session.Session()
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.token) == ("ASIATEST", "sts-token")
    seen = bedrock_srv.recorder.last
    assert seen.path == "/" and b"AssumeRoleWithWebIdentity" in seen.body
    client = bedrock_client(bedrock_srv.url, frozen.access_key, frozen.secret_key, frozen.token)
    out = client.converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "temp"}]}])
    assert out["output"]["message"]["content"][0]["text"] == "echo: temp"
    assert bedrock_srv.recorder.last.headers["X-Amz-Security-Token"] == "sts-token"
    with pytest.raises(ClientError) as info:
        bedrock_client(bedrock_srv.url, "ASIATEST", "sts-secret").converse(
            modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "temp"}]}])
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_bedrock_errors_and_validation(bedrock_srv):
    from botocore.exceptions import ClientError

    client = bedrock_client(bedrock_srv.url)

    def code_of(**kwargs):
        with pytest.raises(ClientError) as info:
            client.converse(**{"modelId": MODEL_ID, **kwargs})
        return info.value.response["Error"]["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]

    user = lambda text: {"role": "user", "content": [{"text": text}]}  # noqa: E731
    assert code_of(messages=[user("FAIL429")]) == ("ThrottlingException", 429)
    assert code_of(messages=[user("FAIL500")]) == ("InternalServerException", 500)
    assert code_of(messages=[user("FAIL503")]) == ("ServiceUnavailableException", 503)
    assert code_of(messages=[user("NOTREADY")]) == ("ModelNotReadyException", 429)
    assert code_of(modelId="anthropic.denied-model", messages=[user("x")]) == ("AccessDeniedException", 403)
    assert code_of(messages=[{"role": "assistant", "content": [{"text": "x"}]}]) == ("ValidationException", 400)
    assert code_of(messages=[user("a"), user("b")]) == ("ValidationException", 400)
    assert code_of(messages=[user(" ")]) == ("ValidationException", 400)
    tool_use = {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}]}
    result = {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}}]}
    assert code_of(messages=[user("x"), tool_use, result]) == ("ValidationException", 400)
    out = client.converse(modelId=MODEL_ID, messages=[user("x"), tool_use, result], toolConfig=TOOLS)
    assert out["output"]["message"]["content"][0]["text"] == "echo: sunny"
    wrong = {"role": "user", "content": [{"toolResult": {"toolUseId": "t2", "content": [{"text": "x"}]}}]}
    assert code_of(messages=[user("x"), tool_use, wrong], toolConfig=TOOLS) == ("ValidationException", 400)


def test_bedrock_cache_points_and_embeddings(bedrock_srv):
    client = bedrock_client(bedrock_srv.url)
    system = [{"text": "cached system words"}, {"cachePoint": {"type": "default"}}]
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    first = client.converse(modelId=MODEL_ID, system=system, messages=messages)["usage"]
    second = client.converse(modelId=MODEL_ID, system=system, messages=messages)["usage"]
    assert (first["cacheWriteInputTokens"], first["cacheReadInputTokens"], first["inputTokens"]) == (3, 0, 1)
    assert (second["cacheWriteInputTokens"], second["cacheReadInputTokens"]) == (0, 3)
    titan = json.loads(client.invoke_model(modelId="amazon.titan-embed-text-v2:0",
                                           body=json.dumps({"inputText": "hello there"}))["body"].read())
    assert titan["embedding"] == embedding("hello there") and titan["inputTextTokenCount"] == 2
    cohere = json.loads(client.invoke_model(modelId="cohere.embed-english-v3", body=json.dumps(
        {"texts": ["a", "b c"], "input_type": "search_document"}))["body"].read())
    assert cohere["embeddings"] == [embedding("a"), embedding("b c")] and cohere["response_type"] == "embeddings_floats"
    assert cohere["texts"] == ["a", "b c"] and cohere["id"]


# ---------------------------------------------------------------- Gemini

@pytest.fixture(scope="module")
def gemini_srv():
    with ServerThread(gemini_wire.make_app) as srv:
        yield srv


def gemini(srv, method: str, body: dict, model="gemini-2.5-flash", key=gemini_wire.API_KEY, query=""):
    headers = {"x-goog-api-key": key} if key else {}
    return http("POST", f"{srv.url}/v1beta/models/{model}:{method}{query}", body, headers)


def test_gemini_generate_content(gemini_srv):
    body = {"systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [{"role": "user", "parts": [{"text": "hello"}, {"text": "THINK"}]}]}
    status, _, raw = gemini(gemini_srv, "generateContent", body)
    out = json.loads(raw)
    assert status == 200
    candidate = out["candidates"][0]
    assert candidate["content"]["role"] == "model" and candidate["finishReason"] == "STOP"
    assert candidate["content"]["parts"] == [{"text": "thinking about it", "thought": True}, {"text": "echo: hello THINK"}]
    assert out["usageMetadata"]["promptTokenCount"] == 4 and out["usageMetadata"]["candidatesTokenCount"] == 3
    assert out["usageMetadata"]["thoughtsTokenCount"] == 3 and out["usageMetadata"]["totalTokenCount"] == 10
    snake = {"system_instruction": {"parts": [{"text": "s"}]}, "generation_config": {"max_output_tokens": 2},
             "contents": [{"role": "user", "parts": [{"text": "a b c"}]}]}
    status, _, raw = http("POST", f"{gemini_srv.url}/v1beta/models/gemini-2.0-flash:generateContent?key={gemini_wire.API_KEY}", snake)
    assert status == 200 and json.loads(raw)["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_gemini_streams(gemini_srv):
    body = {"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]}
    status, headers, raw = gemini(gemini_srv, "streamGenerateContent", body, query="?alt=sse")
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    chunks = [json.loads(line[6:]) for line in raw.decode().split("\r\n\r\n") if line.startswith("data: ")]
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == "echo: one two three"
    assert "finishReason" not in chunks[0]["candidates"][0] and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 4
    status, _, raw = gemini(gemini_srv, "streamGenerateContent", body)
    assert status == 200 and len(json.loads(raw)) == len(chunks)
    status, _, raw = gemini(gemini_srv, "streamGenerateContent", {"contents": [{"parts": [{"text": "STREAMERR x y"}]}]}, query="?alt=sse")
    assert json.loads(raw.decode().strip().split("\r\n\r\n")[-1][6:])["error"]["status"] == "INTERNAL"


def test_gemini_sdk_and_tools(gemini_srv):
    genai = pytest.importorskip("google.genai")
    types = pytest.importorskip("google.genai.types")
    client = genai.Client(api_key=gemini_wire.API_KEY, http_options=types.HttpOptions(base_url=gemini_srv.url))
    assert client.models.generate_content(model="gemini-2.5-flash", contents="hi there").text == "echo: hi there"
    streamed = "".join(c.text or "" for c in client.models.generate_content_stream(model="gemini-2.5-flash", contents="a b"))
    assert streamed == "echo: a b"
    weather = types.FunctionDeclaration(name="get_weather", parameters={"type": "OBJECT", "properties": {"city": {"type": "STRING"}}})
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[weather])],
                                         automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    out = client.models.generate_content(model="gemini-2.5-flash", contents="TOOL2", config=config)
    assert [(c.name, c.args) for c in out.function_calls] == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    vectors = client.models.embed_content(model="text-embedding-004", contents=["x", "y z"])
    assert [e.values for e in vectors.embeddings] == [embedding("x"), embedding("y z")]


def test_gemini_function_response_and_validation(gemini_srv):
    tools = [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object"}}]}]
    turns = [{"role": "user", "parts": [{"text": "TOOL"}]},
             {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
             {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]}]
    status, _, raw = gemini(gemini_srv, "generateContent", {"contents": turns, "tools": tools})
    assert status == 200 and json.loads(raw)["candidates"][0]["content"]["parts"] == [{"text": "echo: sunny"}]
    bad = [
        {"contents": turns[:1] + turns[2:], "tools": tools},
        {"contents": [{"role": "system", "parts": [{"text": "x"}]}]},
        {"contents": [{"role": "user", "parts": []}]},
        {"contents": turns[:1], "max_tokens": 5},
        {"contents": turns[:1], "tools": [{"functionDeclarations": [{"name": "f", "parameters": {
            "type": "object", "additionalProperties": False}}]}]},
    ]
    for body in bad:
        status, _, raw = gemini(gemini_srv, "generateContent", body)
        assert status == 400 and json.loads(raw)["error"]["status"] == "INVALID_ARGUMENT", body


def test_gemini_auth_errors_and_embeddings(gemini_srv):
    body = {"contents": [{"parts": [{"text": "x"}]}]}
    assert gemini(gemini_srv, "generateContent", body, key=None)[0] == 403
    status, _, raw = gemini(gemini_srv, "generateContent", body, key="nope")
    assert status == 400 and json.loads(raw)["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    status, _, raw = gemini(gemini_srv, "generateContent", {"contents": [{"parts": [{"text": "FAIL429"}]}]})
    assert status == 429 and json.loads(raw)["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert gemini(gemini_srv, "generateContent", body, model="gpt-4o")[0] == 404
    status, _, raw = gemini(gemini_srv, "embedContent", {"content": {"parts": [{"text": "hey"}]}}, model="text-embedding-004")
    assert json.loads(raw) == {"embedding": {"values": embedding("hey")}}
    batch = {"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}}]}
    status, _, raw = gemini(gemini_srv, "batchEmbedContents", batch, model="text-embedding-004")
    assert json.loads(raw) == {"embeddings": [{"values": embedding("a")}]}
    batch["requests"][0]["model"] = "models/other"
    assert gemini(gemini_srv, "batchEmbedContents", batch, model="text-embedding-004")[0] == 400
    status, _, raw = gemini(gemini_srv, "countTokens", {"contents": [{"parts": [{"text": "a b c"}]}]})
    assert json.loads(raw)["totalTokens"] == 3


# ---------------------------------------------------------------- Ollama

@pytest.fixture(scope="module")
def ollama_srv():
    with ServerThread(ollama_wire.make_app) as srv:
        yield srv


@pytest.fixture()
def ollama_client(ollama_srv):
    ollama = pytest.importorskip("ollama")
    return ollama.Client(host=ollama_srv.url)


def test_ollama_chat(ollama_client, ollama_srv):
    out = ollama_client.chat(model="llama3.2", messages=[{"role": "system", "content": "be brief"},
                                                         {"role": "user", "content": "hello world"}],
                             options={"temperature": 0.1}, keep_alive="10m")
    assert out.message.role == "assistant" and out.message.content == "echo: hello world"
    assert out.done and out.done_reason == "stop" and (out.prompt_eval_count, out.eval_count) == (4, 3)
    sent = ollama_srv.recorder.last.json()
    assert sent["keep_alive"] == "10m" and sent["options"] == {"temperature": 0.1} and sent["stream"] is False
    parts = list(ollama_client.chat(model="llama3.2", messages=[{"role": "user", "content": "a b c"}], stream=True))
    assert "".join(p.message.content for p in parts) == "echo: a b c"
    assert [p.done for p in parts] == [False] * 4 + [True] and parts[-1].eval_count == 4
    short = ollama_client.chat(model="llama3.2", messages=[{"role": "user", "content": "a b c"}], options={"num_predict": 2})
    assert (short.message.content, short.done_reason) == ("echo: a", "length")


def test_ollama_tools_and_thinking(ollama_client):
    def get_weather(city: str) -> str:
        """Get the weather.

        Args:
          city: the city
        """
        return "sunny"

    out = ollama_client.chat(model="qwen3:0.6b", messages=[{"role": "user", "content": "THINK TOOL2"}],
                             tools=[get_weather], think=True)
    assert out.message.thinking == "thinking about it"
    assert [(c.function.name, c.function.arguments) for c in out.message.tool_calls] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    parts = list(ollama_client.chat(model="qwen3:0.6b", messages=[{"role": "user", "content": "THINK TOOL"}],
                                    tools=[get_weather], think=True, stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == "thinking about it"
    assert [c.function.arguments for p in parts for c in p.message.tool_calls or []] == [{"city": "Paris"}]
    follow = ollama_client.chat(model="qwen3:0.6b", tools=[get_weather], messages=[
        {"role": "user", "content": "TOOL"}, {"role": "assistant", "content": "", "tool_calls": out.message.tool_calls[:1]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"}])
    assert follow.message.content == "echo: sunny" and not follow.message.tool_calls
    no_think = ollama_client.chat(model="qwen3:0.6b", messages=[{"role": "user", "content": "THINK"}])
    assert no_think.message.thinking is None and no_think.message.content == "echo: THINK"


def test_ollama_errors(ollama_client):
    import ollama

    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.chat(model="missing-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404 and info.value.error == "model 'missing-model' not found"
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.chat(model="llama3.2", messages=[{"role": "user", "content": "x"}], think=True)
    assert info.value.status_code == 400 and "does not support thinking" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.chat(model="llama3.2", messages=[{"role": "user", "content": "FAIL429"}])
    assert info.value.status_code == 429
    with pytest.raises(ollama.ResponseError) as info:
        list(ollama_client.chat(model="llama3.2", messages=[{"role": "user", "content": "STREAMERR a b"}], stream=True))
    assert "error" in info.value.error
    with pytest.raises(Exception):  # noqa: B017 - httpx's error type for a cut body varies
        list(ollama_client.chat(model="llama3.2", messages=[{"role": "user", "content": "CUTSTREAM a b"}], stream=True))


def test_ollama_generate_embed_and_listing(ollama_client, ollama_srv):
    out = ollama_client.generate(model="llama3.2", prompt="why blue", system="sys")
    assert out.response == "echo: why blue" and out.done_reason == "stop" and out.prompt_eval_count == 3
    streamed = "".join(p.response for p in ollama_client.generate(model="llama3.2", prompt="x y", stream=True))
    assert streamed == "echo: x y"
    assert ollama_client.generate(model="llama3.2", prompt="").done_reason == "load"
    emb = ollama_client.embed(model="nomic-embed-text", input=["a", "b"])
    assert emb.embeddings == [embedding("a"), embedding("b")] and emb.prompt_eval_count == 2
    assert ollama_client.embed(model="nomic-embed-text", input="a").embeddings == [embedding("a")]
    names = [m.model for m in ollama_client.list().models]
    assert names == ["llama3.2:latest", "qwen3:0.6b", "nomic-embed-text:latest"]
    shown = ollama_client.show("qwen3:0.6b")
    assert "thinking" in shown.capabilities and shown.details.family == "qwen3"
    assert json.loads(http("GET", ollama_srv.url + "/api/version")[2])["version"]
    models = json.loads(http("GET", ollama_srv.url + "/v1/models")[2])
    assert models["object"] == "list" and models["data"][0]["id"] == "llama3.2:latest"
    status, headers, raw = http("POST", ollama_srv.url + "/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "q"}]})
    lines = [json.loads(line) for line in raw.splitlines()]
    assert headers["content-type"].startswith("application/x-ndjson") and lines[-1]["done"] is True
    assert set(lines[-1]) >= {"model", "created_at", "message", "done", "done_reason", "total_duration", "load_duration",
                              "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"}


def test_malformed_bodies_are_client_errors(anthropic_srv, bedrock_srv, gemini_srv, ollama_srv):
    anthropic_headers = {"x-api-key": anthropic_wire.API_KEY, "anthropic-version": "2023-06-01"}
    status, _, _ = http("POST", anthropic_srv.url + "/v1/messages",
                        {"model": "claude-x", "max_tokens": 5, "messages": ["nope"]}, anthropic_headers)
    assert status == 400
    status, _, _ = signed_post(f"{bedrock_srv.url}/model/m/converse", {"messages": ["nope"]})
    assert status == 400
    assert gemini(gemini_srv, "generateContent", {"contents": ["nope"]})[0] == 400
    status, _, raw = http("POST", ollama_srv.url + "/api/chat", {"model": "llama3.2", "stream": False, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert status == 400 and "cannot unmarshal array" in json.loads(raw)["error"]


def test_standalone_sts_server_answers_query_form():
    with ServerThread(sts_wire.make_app) as srv:
        query = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleSessionName=s1&WebIdentityToken=tok&DurationSeconds=900"
        status, headers, raw = http("GET", f"{srv.url}/?{query}&RoleArn=arn:aws:iam::123456789012:role/r")
        assert status == 200 and headers["content-type"].startswith("text/xml")
        assert b"<AccessKeyId>ASIATEST</AccessKeyId>" in raw and b"<SessionToken>sts-token</SessionToken>" in raw
        status, _, raw = http("GET", f"{srv.url}/?{query}&RoleArn=not-an-arn")
        assert status == 400 and b"<Code>ValidationError</Code>" in raw
