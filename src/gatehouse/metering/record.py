"""The ledger record: one per upstream attempt. Never a prompt, a completion or a key."""
from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import Struct

Phase = Literal["begin", "end"]


class LedgerRecord(Struct, omit_defaults=True):
    id: str  # made by the gateway per attempt: the idempotency key of the ledger
    request_id: str  # made by the gateway per request: reports count requests by it
    attempt: int  # 1, 2, ... in failover order; 0 when no upstream was called (cache hit)
    ts: float  # wall-clock time the attempt started (epoch seconds)
    consumer: str
    model: str  # public model name
    surface: str
    group: str | None = None
    key_id: str | None = None  # the key's id, never the key
    deployment: str = ""  # the upstream model of the deployment
    provider: str = ""
    status: int = 0
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    streamed: bool = False
    cache_hit: bool = False
    estimated: bool = False
    client_request_id: str | None = None  # the client's x-request-id, for correlation; counts nothing
    # Why this attempt went to this deployment (routing/reasons.py: primary, failover_5xx, fallback,
    # cold_start, ...); None for a cache hit. Never a URL.
    route: str | None = None
    data_class: str | None = None  # compliance routing's class for the request (policy/compliance.py)
    routed_to: str | None = None  # the model a virtual model chose (routing/virtual.py)
    # Journal only: `begin` is written before the upstream is called, `end` when the attempt
    # is over. A `begin` without its `end` after a crash becomes an `interrupted` record.
    phase: Phase = "end"

    def row(self) -> dict[str, Any]:
        """The columns of the `usage_records` table."""
        return {
            "id": self.id, "request_id": self.request_id, "attempt": self.attempt, "ts": self.ts,
            "consumer": self.consumer, "group_name": self.group, "key_id": self.key_id,
            "model": self.model, "deployment": self.deployment, "provider": self.provider,
            "surface": self.surface, "status": self.status, "error_type": self.error_type,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens, "cost_usd": self.cost_usd, "priced": self.priced,
            "latency_ms": self.latency_ms, "ttft_ms": self.ttft_ms, "streamed": self.streamed,
            "cache_hit": self.cache_hit, "estimated": self.estimated,
            "client_request_id": self.client_request_id, "route": self.route,
            "data_class": self.data_class, "routed_to": self.routed_to,
        }


# The ledger table's columns in the record's field order (`group` is `group_name` there, and
# `phase`, the last field, exists only in the journal): a record's row is `row_tuple(record)`.
ROW_COLUMNS = tuple("group_name" if f == "group" else f for f in LedgerRecord.__struct_fields__[:-1])
assert LedgerRecord.__struct_fields__[-1] == "phase"


def row_tuple(record: LedgerRecord) -> tuple[Any, ...]:
    return msgspec.structs.astuple(record)[:-1]


INTERRUPTED = "interrupted"


def interrupted(begun: LedgerRecord) -> LedgerRecord:
    """The record for an attempt whose gateway process died before it ended: the prompt's
    estimated tokens, no output known, status 500 `interrupted`."""
    return msgspec.structs.replace(begun, phase="end", status=500, error_type=INTERRUPTED, estimated=True)


encode_record = msgspec.json.Encoder().encode
decode_record = msgspec.json.Decoder(LedgerRecord).decode
