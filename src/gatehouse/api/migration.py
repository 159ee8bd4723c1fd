"""Routes teams migrating from other gateways call (docs/migration.md): the FastAPI-style
`POST /chat`, and the admin views `GET /providers` and `GET /config`. Plain aliases (`/ai/chat`,
`/health`, ...) are in app.py's ALIASES; Ollama's `/api/ps` and `/api/pull` in api/ollama.py.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from gatehouse.api.admin import require_admin
from gatehouse.api.http import Request, header_list, send_json
from gatehouse.api.openai import OpenAICall
from gatehouse.errors import InvalidRequest
from gatehouse.gateway.endpoint import Endpoint
from gatehouse.gateway.exchange import Exchange
from gatehouse.runtime import Runtime
from gatehouse.types import ChatRequest, ChatResponse, Message, TextPart, json_encode
from gatehouse.wire.common import convert, decode_json_object

if TYPE_CHECKING:
    from gatehouse.gateway.relay import Reply
    from gatehouse.routing.table import ModelEntry

_FINISH = {"end": "stop", "length": "length", "tool_calls": "tool_calls", "stop_sequence": "stop",
           "content_filter": "content_filter", "error": "error"}


class SimpleChat(msgspec.Struct, forbid_unknown_fields=True):
    """POST /chat: one prompt to one model (the shape of many in-house FastAPI gateways)."""

    prompt: str
    model: str
    system: str | None = None
    max_tokens: Annotated[int, msgspec.Meta(gt=0)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None


class SimpleChatCall(OpenAICall):
    """Translated only (no body an upstream speaks), never streamed."""

    __slots__ = ("simple", "request_id")

    def __init__(self, simple: SimpleChat):
        super().__init__(simple.model, None, None)
        self.simple = simple
        self.request_id = ""

    def build_canonical(self) -> ChatRequest:
        b = self.simple
        return ChatRequest(model=self.public_model, messages=[Message("user", [TextPart(b.prompt)])],
                           system=[TextPart(b.system)] if b.system else [],
                           max_tokens=b.max_tokens, temperature=b.temperature)

    async def bind(self, rt: Runtime, ex: Exchange, entry: ModelEntry) -> Reply | None:
        self.request_id = ex.request_id
        return await super().bind(rt, ex, entry)

    def render(self, result: Any) -> bytes:
        resp: ChatResponse = result
        text = "".join(p.text for p in resp.content if isinstance(p, TextPart))
        u = resp.usage
        return json_encode({"id": self.request_id, "model": self.public_model, "response": text,
                            "finish_reason": _FINISH.get(resp.stop_reason, "stop"),
                            "usage": {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                                      "total_tokens": u.input_tokens + u.output_tokens}})


class SimpleChatEndpoint(Endpoint):
    def parse(self, body: bytes, headers: Mapping[str, str]) -> SimpleChatCall:
        simple = convert(decode_json_object(body), SimpleChat)
        if not simple.prompt:
            raise InvalidRequest("prompt must not be empty", param="prompt")
        return SimpleChatCall(simple)


SIMPLE_CHAT = SimpleChatEndpoint()


async def providers(rt: Runtime, req: Request, ex: Exchange) -> None:
    """GET /providers (admin): each provider's name, type and the models it serves; no URL,
    header, key or other setting."""
    require_admin(rt, req)
    serves: dict[str, list[str]] = {name: [] for name in rt.cfg.providers}
    for m in rt.cfg.models:
        for dep in m.deployments:
            if m.name not in serves[dep.provider]:
                serves[dep.provider].append(m.name)
    data = [{"name": name, "type": p.type, "models": serves[name]} for name, p in rt.cfg.providers.items()]
    await send_json(req.send, 200, {"object": "list", "data": data}, header_list(ex.request_id))


REDACTED = "<redacted>"
# Fields whose value is a credential wherever they appear (keys, tokens, secrets, passwords).
_SECRET_FIELD = re.compile(r"(^|_)(key|keys|secret|token|password|credentials?)$")
_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.\-]*://[^/@:]*:)[^/@]*@", re.I)


def _tree(node: Any) -> Any:
    """Config structs as plain data with every field, defaults included (to_builtins omits
    them: the config structs are omit_defaults)."""
    if isinstance(node, msgspec.Struct):
        conf = node.__struct_config__
        tag = {conf.tag_field: conf.tag} if conf.tag_field else {}  # a provider's `type`
        return {**tag, **{f: _tree(getattr(node, f)) for f in node.__struct_fields__}}
    if isinstance(node, dict):
        return {str(k): _tree(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_tree(v) for v in node]
    return node


def redact(node: Any, name: str = "") -> Any:
    """The config tree with every credential replaced: secret-named fields, every header value
    (upstream auth lives there too) and the password of any URL."""
    if isinstance(node, dict):
        if name == "headers":
            return {k: REDACTED for k in node}
        return {k: redact(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [redact(v, name) for v in node]
    if isinstance(node, str):
        if _SECRET_FIELD.search(name) and not name.endswith(("_file", "_claim")):
            return REDACTED
        return _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + "@", node)
    return node


async def effective_config(rt: Runtime, req: Request, ex: Exchange) -> None:
    """GET /config (admin): the config as loaded (defaults filled in, ${VAR}s resolved), with
    every secret redacted."""
    require_admin(rt, req)
    await send_json(req.send, 200, redact(_tree(rt.cfg)), header_list(ex.request_id))
