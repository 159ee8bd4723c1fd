"""AWS Bedrock Runtime test upstream: Converse, ConverseStream (AWS event-stream) and InvokeModel embeddings.

Routes: POST /model/{modelId}/converse, /model/{modelId}/converse-stream, /model/{modelId}/invoke
(amazon.titan-embed-text-* and cohere.embed-*), plus the STS routes of sts_wire on `/`.

Auth: every Bedrock request must carry a SigV4 signature (service `bedrock`, region taken from
the credential scope) that this server recomputes with botocore for access key `AKIDTEST` /
secret `test-secret`, or for the STS temporary credentials `ASIATEST` / `sts-secret`, which also
need a signed `x-amz-security-token: sts-token`. A missing or wrong signature gets 403 with
`x-amzn-ErrorType: InvalidSignatureException`; an unknown key or wrong session token 403
UnrecognizedClientException. `Authorization: Bearer test-bedrock-api-key` (Bedrock API keys)
is accepted as well.

Requests are validated like Bedrock does (messages start with user and alternate, one member
per content block, non-blank text, toolResult ids refer to the previous assistant turn,
toolConfig required when toolUse/toolResult blocks appear, known inferenceConfig fields only)
and rejected with 400 ValidationException. Behaviour follows conventions.py; errors are JSON
`{"message": ...}` with an `x-amzn-ErrorType` header: FAIL429 ThrottlingException 429,
FAIL500 InternalServerException 500, FAIL503 ServiceUnavailableException 503, NOTREADY
ModelNotReadyException 429, a model id containing `denied` AccessDeniedException 403.
In a stream, STREAMERR sends a modelStreamErrorException frame and STREAMTHROTTLE a
throttlingException frame after the first two deltas. System cachePoint blocks report
cacheWriteInputTokens on first use and cacheReadInputTokens afterwards.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import struct
import zlib
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from . import sts_wire
from .conventions import (
    THINKING_SIGNATURE,
    FailureTracker,
    PromptCache,
    abort_connection,
    chunks,
    embedding,
    make_reply,
    pause_if_slow,
    pieces,
    stable_id,
    words,
)

ACCESS_KEY, SECRET_KEY = "AKIDTEST", "test-secret"
BEARER_TOKEN = "test-bedrock-api-key"
CREDENTIALS = {ACCESS_KEY: (SECRET_KEY, None),
               sts_wire.TEMP_ACCESS_KEY: (sts_wire.TEMP_SECRET_KEY, sts_wire.TEMP_SESSION_TOKEN)}
SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
                      "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
                  r"(?P<service>[^/]+)/aws4_request,\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]{64})")
BLOCK_KEYS = set("text image document video audio toolUse toolResult guardContent cachePoint "
                 "reasoningContent citationsContent searchResult".split())
TOP_LEVEL = set("messages system inferenceConfig toolConfig guardrailConfig additionalModelRequestFields "
                "promptVariables additionalModelResponseFieldPaths requestMetadata performanceConfig "
                "serviceTier outputConfig".split())
FAILURES = {429: ("ThrottlingException", "Too many requests, please wait before trying again."),
            500: ("InternalServerException", "The system encountered an unexpected error during processing. Try your request again."),
            503: ("ServiceUnavailableException", "Bedrock is unable to process your request.")}


class Invalid(Exception):
    pass


def aws_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status, headers={
        "x-amzn-ErrorType": kind, "x-amzn-RequestId": stable_id("", kind, message, length=32)})


def verify_signature(request: web.Request, body: bytes) -> web.Response | None:
    """Recompute the SigV4 signature exactly as AWS does; return an error response or None."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return None if hmac.compare_digest(auth[7:], BEARER_TOKEN) else aws_error(
            403, "UnrecognizedClientException", "Invalid API Key format: Must start with pre-defined prefix")
    if not auth:
        return aws_error(403, "InvalidSignatureException", "Missing Authentication Token")
    match = AUTH.fullmatch(auth.strip())
    if not match:
        return aws_error(403, "InvalidSignatureException", "Authorization header requires 'Credential', "
                         "'SignedHeaders' and 'Signature' parameters.")
    if match["service"] != "bedrock":
        return aws_error(403, "InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'.")
    if match["key"] not in CREDENTIALS:
        return aws_error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    secret, token = CREDENTIALS[match["key"]]
    signed = match["signed"].split(";")
    if token is not None and (request.headers.get("X-Amz-Security-Token") != token
                              or "x-amz-security-token" not in signed):
        return aws_error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    amz_date = request.headers.get("X-Amz-Date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return aws_error(403, "InvalidSignatureException", "Authorization header requires existence of either "
                         "a 'X-Amz-Date' or a 'Date' header.")
    now = dt.datetime.now(dt.UTC)
    if abs((now - when).total_seconds()) > 300 + 600:  # AWS allows 15 minutes of clock skew
        return aws_error(403, "InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than "
                         f"{(now - dt.timedelta(minutes=15)).strftime('%Y%m%dT%H%M%SZ')}")
    if not amz_date.startswith(match["date"]) or "host" not in signed or any(h not in request.headers for h in signed):
        return aws_error(403, "InvalidSignatureException", SIGNATURE_MISMATCH)
    content_sha = request.headers.get("X-Amz-Content-SHA256")
    if content_sha not in (None, "UNSIGNED-PAYLOAD", hashlib.sha256(body).hexdigest()):
        return aws_error(400, "InvalidSignatureException",
                         "The provided 'x-amz-content-sha256' header does not match what was computed.")
    headers = {name: ",".join(request.headers.getall(name)) for name in signed}
    aws_request = AWSRequest(method=request.method, url=f"http://{request.host}{request.raw_path}",
                             headers=headers, data=body)
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(match["key"], secret, token), match["service"], match["region"])
    expected = signer.signature(signer.string_to_sign(aws_request, signer.canonical_request(aws_request)), aws_request)
    if not hmac.compare_digest(expected, match["sig"]):
        return aws_error(403, "InvalidSignatureException", SIGNATURE_MISMATCH)
    return None


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude, prelude CRC, string headers, payload, message CRC."""
    encoded = b"".join(struct.pack("!B", len(k)) + k.encode() + b"\x07" + struct.pack("!H", len(v.encode())) + v.encode()
                       for k, v in headers.items())
    prelude = struct.pack("!II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event_frame(event_type: str, data: dict) -> bytes:
    padding = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[: 1 + len(json.dumps(data)) % 40]
    payload = json.dumps({**data, "p": padding}).encode()  # Bedrock pads payloads with a "p" field
    return frame({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}, payload)


def exception_frame(exception_type: str, data: dict) -> bytes:
    return frame({":exception-type": exception_type, ":content-type": "application/json",
                  ":message-type": "exception"}, json.dumps(data).encode())


def _texts(blocks: list[dict]) -> list[str]:
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"])
        elif "toolResult" in block:
            out.extend(c["text"] for c in block["toolResult"].get("content", []) if "text" in c)
    return out


def prompt_of(messages: list[dict]) -> str:
    last_user = next((m for m in reversed(messages) if m["role"] == "user"), None)
    if last_user is None:
        return ""
    text = " ".join(b["text"] for b in last_user["content"] if "text" in b)
    return text or " ".join(_texts(last_user["content"]))


def validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise Invalid("Malformed input request, please reformat your input and try again.")
    unknown = set(body) - TOP_LEVEL
    if unknown:
        raise Invalid(f"Unknown parameter in input: \"{sorted(unknown)[0]}\", must be one of: {', '.join(sorted(TOP_LEVEL))}")
    for block in body.get("system") or []:
        if len(block) != 1 or next(iter(block)) not in ("text", "guardContent", "cachePoint"):
            raise Invalid("The system field contains an invalid SystemContentBlock.")
    inference = body.get("inferenceConfig") or {}
    if set(inference) - {"maxTokens", "temperature", "topP", "stopSequences"}:
        raise Invalid(f"Unknown parameter in inferenceConfig: \"{sorted(set(inference) - {'maxTokens', 'temperature', 'topP', 'stopSequences'})[0]}\"")
    if "maxTokens" in inference and (not isinstance(inference["maxTokens"], int) or inference["maxTokens"] < 1):
        raise Invalid("1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1")
    tool_config = body.get("toolConfig")
    names = []
    if tool_config is not None:
        for i, tool in enumerate(tool_config.get("tools") or []):
            spec = tool.get("toolSpec")
            if spec is None and "cachePoint" not in tool and "systemTool" not in tool:
                raise Invalid(f"toolConfig.tools.{i}: a Tool must contain toolSpec, systemTool or cachePoint")
            if spec is not None:
                if not spec.get("name") or "json" not in (spec.get("inputSchema") or {}):
                    raise Invalid(f"toolConfig.tools.{i}.toolSpec: name and inputSchema.json are required")
                names.append(spec["name"])
        if not names:
            raise Invalid("The toolConfig field must contain at least one tool.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or messages[0].get("role") != "user":
        raise Invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message.")
    pending: set[str] = set()
    for i, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            raise Invalid(f"1 validation error detected: Value '{message.get('role')}' at 'messages.{i + 1}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]")
        if i and message["role"] == messages[i - 1]["role"]:
            raise Invalid("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.")
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise Invalid(f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again.")
        used, answered = set(), set()
        for j, block in enumerate(content):
            if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in BLOCK_KEYS:
                raise Invalid(f"The content block at messages.{i}.content.{j} must contain exactly one of: {', '.join(sorted(BLOCK_KEYS))}")
            if "text" in block and not block["text"].strip():
                raise Invalid(f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again.")
            if ("toolUse" in block or "toolResult" in block) and tool_config is None:
                raise Invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
            if "toolUse" in block:
                use = block["toolUse"]
                if message["role"] != "assistant" or not use.get("toolUseId") or not isinstance(use.get("input"), dict):
                    raise Invalid(f"messages.{i}.content.{j}.toolUse: toolUseId, name and an object input are required in an assistant message")
                used.add(use["toolUseId"])
            if "toolResult" in block:
                if block["toolResult"].get("toolUseId") not in pending:
                    raise Invalid(f"The toolResult block at messages.{i}.content.{j} refers to toolUseId {block['toolResult'].get('toolUseId')!r}, which does not match any toolUse block of the previous turn.")
                answered.add(block["toolResult"]["toolUseId"])
        if message["role"] == "user" and pending - answered:
            raise Invalid(f"Expected toolResult blocks at messages.{i}.content for the following Ids: {', '.join(sorted(pending - answered))}")
        pending = used


class BedrockUpstream:
    def __init__(self) -> None:
        self.failures = FailureTracker()
        self.cache = PromptCache()

    async def _admit(self, request: web.Request, prompt: str) -> web.Response | None:
        model_id = request.match_info["model_id"]
        if "denied" in model_id:
            return aws_error(403, "AccessDeniedException", "You don't have access to the model with the specified model ID.")
        if "NOTREADY" in prompt:
            return aws_error(429, "ModelNotReadyException", "Model is not ready for inference. Wait and try your request again.")
        status = self.failures.status(prompt)
        if status is not None:
            return aws_error(status, *FAILURES.get(status, FAILURES[500]))
        await pause_if_slow(prompt)
        return None

    async def converse(self, request: web.Request) -> web.StreamResponse:
        body_bytes = await request.read()
        error = verify_signature(request, body_bytes)
        if error:
            return error
        try:
            body = json.loads(body_bytes)
            validate(body)
        except ValueError:
            return aws_error(400, "SerializationException", "Unexpected character while parsing the request body")
        except Invalid as exc:
            return aws_error(400, "ValidationException", str(exc))
        except (AttributeError, TypeError, KeyError) as exc:  # malformed structure, not a server fault
            return aws_error(400, "ValidationException", f"Malformed input request: {exc}")
        prompt = prompt_of(body["messages"])
        error = await self._admit(request, prompt)
        if error:
            return error
        inference = body.get("inferenceConfig") or {}
        tool_config = body.get("toolConfig") or {}
        names = [t["toolSpec"]["name"] for t in tool_config.get("tools", []) if "toolSpec" in t]
        if "tool" in (tool_config.get("toolChoice") or {}):
            names = [tool_config["toolChoice"]["tool"]["name"]]
        reply = make_reply(prompt, tools=names, max_tokens=inference.get("maxTokens"), stop=inference.get("stopSequences"))
        system_texts, cached = [], ""
        for block in body.get("system") or []:
            if "text" in block:
                system_texts.append(block["text"])
            elif "cachePoint" in block:
                cached = " ".join(system_texts)
        written, read = self.cache.use(cached)
        total_in = sum(words(t) for t in system_texts) + sum(words(t) for m in body["messages"] for t in _texts(m["content"]))
        usage = {"inputTokens": total_in - written - read, "outputTokens": reply.output_tokens,
                 "totalTokens": total_in + reply.output_tokens}
        if cached:
            usage.update(cacheReadInputTokens=read, cacheWriteInputTokens=written)
        seed = stable_id("", prompt, len(body["messages"]))
        content = []
        if reply.thinking:
            content.append({"reasoningContent": {"reasoningText": {"text": reply.thinking, "signature": THINKING_SIGNATURE}}})
        if reply.text or not reply.tool_calls:
            content.append({"text": reply.text})
        for i, (name, args) in enumerate(reply.tool_calls):
            content.append({"toolUse": {"toolUseId": stable_id("tooluse_", seed, i, length=22), "name": name, "input": args}})
        headers = {"x-amzn-RequestId": stable_id("", seed, length=32)}
        if request.path.endswith("/converse"):
            return web.json_response({
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": reply.stop_reason, "usage": usage, "metrics": {"latencyMs": 42},
            }, headers=headers)
        resp = web.StreamResponse(headers={**headers, "Content-Type": "application/vnd.amazon.eventstream"})
        await resp.prepare(request)
        await resp.write(event_frame("messageStart", {"role": "assistant"}))
        sent = 0
        for index, block in enumerate(content):
            if "toolUse" in block:
                start = {"toolUse": {"toolUseId": block["toolUse"]["toolUseId"], "name": block["toolUse"]["name"]}}
                await resp.write(event_frame("contentBlockStart", {"start": start, "contentBlockIndex": index}))
            for delta in _deltas(block):
                await resp.write(event_frame("contentBlockDelta", {"delta": delta, "contentBlockIndex": index}))
                sent += 1
                if sent == 2 and reply.cut_stream:
                    abort_connection(request)
                    return resp
                if sent == 2 and (reply.stream_error or "STREAMTHROTTLE" in prompt):
                    if reply.stream_error:
                        await resp.write(exception_frame("modelStreamErrorException", {
                            "message": "The model encountered an error while streaming.",
                            "originalStatusCode": 500, "originalMessage": "Internal server error"}))
                    else:
                        await resp.write(exception_frame("throttlingException", {"message": FAILURES[429][1]}))
                    return resp
            await resp.write(event_frame("contentBlockStop", {"contentBlockIndex": index}))
        await resp.write(event_frame("messageStop", {"stopReason": reply.stop_reason}))
        await resp.write(event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}))
        return resp

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        body_bytes = await request.read()
        error = verify_signature(request, body_bytes)
        if error:
            return error
        model_id = request.match_info["model_id"]
        try:
            body = json.loads(body_bytes)
        except ValueError:
            return aws_error(400, "ValidationException", "Malformed input request, please reformat your input and try again.")
        if model_id.startswith("amazon.titan-embed-text"):
            return await self._titan(request, body_bytes, body)
        if model_id.startswith("cohere.embed"):
            return await self._cohere(request, body_bytes, body)
        return aws_error(400, "ValidationException", "The provided model identifier is invalid.")

    async def _titan(self, request, body_bytes, body) -> web.Response:
        extra = set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"}
        if extra or not isinstance(body.get("inputText"), str):
            problem = f"extraneous key [{sorted(extra)[0]}] is not permitted" if extra else "required key [inputText] not found"
            return aws_error(400, "ValidationException", f"Malformed input request: #: {problem}, please reformat your input and try again.")
        if body.get("dimensions", 8) not in (8, 256, 512, 1024):
            return aws_error(400, "ValidationException", "Malformed input request: #/dimensions: 100 is not a valid enum value, please reformat your input and try again.")
        error = await self._admit(request, body["inputText"])
        if error:
            return error
        vector = embedding(body["inputText"], body.get("dimensions", 8))
        return web.json_response({"embedding": vector, "embeddingsByType": {"float": vector},
                                  "inputTextTokenCount": words(body["inputText"])})

    async def _cohere(self, request, body_bytes, body) -> web.Response:
        texts = body.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or "input_type" not in body:
            missing = "input_type" if "input_type" not in body else "texts"
            return aws_error(400, "ValidationException", f"Malformed input request: #: required key [{missing}] not found, please reformat your input and try again.")
        if body["input_type"] not in ("search_document", "search_query", "classification", "clustering", "image"):
            return aws_error(400, "ValidationException", "Malformed input request: #/input_type: not a valid enum value")
        error = await self._admit(request, " ".join(texts))
        if error:
            return error
        vectors = [embedding(t) for t in texts]
        result: dict[str, Any] = {"id": stable_id("", texts, length=36), "texts": texts}
        if body.get("embedding_types"):
            result.update(response_type="embeddings_by_type", embeddings={"float": vectors})
        else:
            result.update(response_type="embeddings_floats", embeddings=vectors)
        return web.json_response(result)


def _deltas(block: dict) -> list[dict]:
    if "reasoningContent" in block:
        reasoning = block["reasoningContent"]["reasoningText"]
        return [{"reasoningContent": {"text": p}} for p in pieces(reasoning["text"])] + [
            {"reasoningContent": {"signature": reasoning["signature"]}}]
    if "toolUse" in block:
        return [{"toolUse": {"input": p}} for p in chunks(json.dumps(block["toolUse"]["input"]))]
    return [{"text": p} for p in pieces(block["text"])]


def make_app(recorder) -> web.Application:
    upstream = BedrockUpstream()
    app = web.Application()
    app.router.add_post("/model/{model_id}/converse", upstream.converse)
    app.router.add_post("/model/{model_id}/converse-stream", upstream.converse)
    app.router.add_post("/model/{model_id}/invoke", upstream.invoke)
    sts_wire.add_routes(app)
    return app
