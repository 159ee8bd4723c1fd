"""Why an attempt went to its deployment: the short reason the ledger's `route` column, the access
log's `route_reason` and `GET /admin/requests/{id}` carry. Never a URL or a host.

The failover loop (gateway/attempts.py) sets `Exchange.route_reason` before each attempt: the
first attempt of a request is `primary`; after a failed attempt the next one says what failed
(`failover_<cause>`); a new plan after a cold-start hold or a retry's backoff says so; a plan that
moves on to another model (routing/route.py) says which kind of fallback it is.
"""
from __future__ import annotations

from gatehouse.errors import GatehouseError

PRIMARY = "primary"
RETRY = "retry"  # planned again after a backoff (routing.retries)
COLD_START = "cold_start"  # planned again once a held model became ready
FALLBACK = "fallback"  # another model, after every deployment failed (fallbacks)
CONTEXT_WINDOW = "context_window"  # a context_window_fallback, the prompt estimate being too large
CONTEXT_WINDOW_FALLBACK = "context_window_fallback"  # ... after the upstream's context-length error


def failover_reason(err: GatehouseError) -> str:
    """The reason of the attempt that follows one that failed with `err`."""
    status = err.status
    if status == 429:
        return "failover_429"
    code = err.code
    if code == "upstream_timeout":
        return "failover_timeout"
    if code == "upstream_unreachable":
        return "failover_connect"
    if code == "upstream_busy":
        return "failover_busy"  # our own connection cap was reached
    return "failover_5xx"
