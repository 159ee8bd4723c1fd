"""Usage reports: the filters shared by `gatehouse usage`, GET /admin/usage and
GET /v1/usage/me, and their table / CSV / JSON renderings."""
from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime
from typing import Any

from msgspec import Struct

from gatehouse.store.ledger import GROUPINGS, UsageRow

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
COLUMNS = ("requests", "attempts", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "errors",
           "estimated")


class UsageQueryError(ValueError):
    """A bad filter; the message names it."""


class UsageQuery(Struct):
    by: str = "model"
    since: float = 0.0
    until: float | None = None
    consumer: str | None = None
    group: str | None = None
    model: str | None = None
    status: str | None = None  # "ok" (status < 400) or "error"


def parse_time(value: str, name: str, now: float) -> float:
    """`7d`, `24h`, `30m`, `90s`, `2w` ago, or an ISO date/time (UTC unless it says otherwise)."""
    m = _DURATION.match(value.strip())
    if m:
        return now - float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageQueryError(f"{name}: expected a duration like 7d, 24h, 30m or an ISO date, got '{value[:40]}'") \
            from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_query(params: dict[str, str], *, allowed_by: tuple[str, ...] = GROUPINGS,
                now: float | None = None) -> UsageQuery:
    now = time.time() if now is None else now
    unknown = set(params) - {"by", "since", "until", "consumer", "group", "model", "status", "format"}
    if unknown:
        raise UsageQueryError(f"unknown filter '{sorted(unknown)[0]}' (known: by, since, until, consumer, group, "
                              "model, status, format)")
    status = params.get("status") or None
    if status not in (None, "ok", "error"):
        raise UsageQueryError("status: must be ok or error")
    by = params.get("by") or "model"
    if by not in allowed_by:
        raise UsageQueryError(f"by: must be one of {', '.join(allowed_by)}")
    since = parse_time(params.get("since") or "7d", "since", now)
    until = parse_time(params["until"], "until", now) if params.get("until") else None
    return UsageQuery(by, since, until, params.get("consumer") or None, params.get("group") or None,
                      params.get("model") or None, status)


def rows_json(query: UsageQuery, rows: list[UsageRow]) -> dict[str, Any]:
    return {
        "by": query.by, "since": query.since, "until": query.until,
        "data": [{query.by: r.key, **{c: getattr(r, c) for c in COLUMNS}} for r in rows],
        "total": {c: (round(sum(getattr(r, c) for r in rows), 9) if c == "cost_usd" else
                      sum(getattr(r, c) for r in rows)) for c in COLUMNS if c != "requests"},
    }


def render_csv(by: str, rows: list[UsageRow]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([by, *COLUMNS])
    for r in rows:
        w.writerow([r.key or "", *(f"{r.cost_usd:.6f}" if c == "cost_usd" else getattr(r, c) for c in COLUMNS)])
    return out.getvalue()


def render_table(by: str, rows: list[UsageRow]) -> str:
    header = [by, "requests", "input", "output", "cached", "cost_usd", "errors", "estimated"]
    body = [[r.key or "-", str(r.requests), f"{r.input_tokens:,}", f"{r.output_tokens:,}", f"{r.cached_tokens:,}",
             f"{r.cost_usd:.4f}", str(r.errors), str(r.estimated)] for r in rows]
    total = ["total", str(sum(r.requests for r in rows)), f"{sum(r.input_tokens for r in rows):,}",
             f"{sum(r.output_tokens for r in rows):,}", f"{sum(r.cached_tokens for r in rows):,}",
             f"{sum(r.cost_usd for r in rows):.4f}", str(sum(r.errors for r in rows)),
             str(sum(r.estimated for r in rows))]
    table = [header, *body, total]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body), rule, line(total)])
