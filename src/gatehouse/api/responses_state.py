"""Stored responses (`store: true`): previous_response_id and item_reference on POST
/v1/responses, and GET / DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items.

Every response belongs to the consumer that made it: another consumer's id is answered as an
unknown one (404), as is an expired or deleted one.
"""
from __future__ import annotations

from typing import Any

from gatehouse.api.http import Request, header_list, send_bytes
from gatehouse.errors import InvalidRequest, NotFound
from gatehouse.gateway.exchange import Exchange
from gatehouse.runtime import Runtime
from gatehouse.store.responses_sql import ResponseStore
from gatehouse.types import json_encode
from gatehouse.wire import responses as wire


def store_of(rt: Runtime) -> ResponseStore:
    assert rt.responses is not None  # built with the runtime
    return rt.responses


def _unknown(rid: str, param: str | None = None, code: str = "response_not_found") -> NotFound:
    return NotFound(f"Response with id '{rid[:80]}' not found.", param=param, code=code)


async def expand_input(rt: Runtime, consumer: str, req: wire.ResponsesRequest) -> list[dict[str, Any]]:
    """The request's whole input as stored items: the conversation of `previous_response_id`
    first, then the request's own items with every `item_reference` replaced by the item."""
    store = store_of(rt)
    items: list[dict[str, Any]] = []
    if req.previous_response_id is not None:
        previous = await store.conversation(req.previous_response_id, consumer)
        if previous is None:
            raise NotFound(f"Previous response with id '{req.previous_response_id[:80]}' not found.",
                           param="previous_response_id", code="previous_response_not_found")
        items.extend(previous)
    own = wire.item_list(req.input)
    refs = wire.references(own)
    if refs:
        found = await store.items_by_id(refs, consumer)
        for i, item in enumerate(own):
            if item["type"] == "item_reference":
                stored = found.get(str(item.get("id", "")))
                if stored is None:
                    raise NotFound(f"Item with id '{str(item.get('id', ''))[:80]}' not found.",
                                   param=f"input[{i}].id", code="item_not_found")
                own[i] = stored
    items.extend(own)
    return items


async def _consumer(rt: Runtime, req: Request, ex: Exchange) -> str:
    principal = await rt.auth.authenticate(req.headers)
    ex.principal = principal
    return principal.consumer


async def _reply(req: Request, ex: Exchange, body: dict[str, Any]) -> None:
    await send_bytes(req.send, 200, json_encode(body), header_list(ex.request_id))


async def retrieve(rt: Runtime, req: Request, ex: Exchange) -> None:
    consumer = await _consumer(rt, req, ex)
    rid = req.path_params["response_id"]
    body = await store_of(rt).get(rid, consumer)
    if body is None:
        raise _unknown(rid)
    await _reply(req, ex, body)


async def delete(rt: Runtime, req: Request, ex: Exchange) -> None:
    consumer = await _consumer(rt, req, ex)
    rid = req.path_params["response_id"]
    if not await store_of(rt).delete(rid, consumer):
        raise _unknown(rid)
    await _reply(req, ex, {"id": rid, "object": "response", "deleted": True})


async def input_items(rt: Runtime, req: Request, ex: Exchange) -> None:
    consumer = await _consumer(rt, req, ex)
    rid = req.path_params["response_id"]
    params = req.query
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequest("'limit' must be an integer from 1 to 100.", param="limit")
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    page = await store_of(rt).input_items(rid, consumer, after=params.get("after") or None, limit=limit,
                                          descending=order == "desc")
    if page is None:
        raise _unknown(rid)
    data, more = page
    await _reply(req, ex, {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                           "last_id": data[-1]["id"] if data else None, "has_more": more})
