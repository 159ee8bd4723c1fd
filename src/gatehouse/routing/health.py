"""Deployment health: a circuit breaker per deployment, kept per Runtime.

Why: without one, while a deployment hangs every request waits its full timeout before
failing over. After `failure_threshold` consecutive failures (connect errors, timeouts, 5xx)
the deployment is ejected for `ejection_seconds`; then one request is let through as a
probe (half-open). A probe that succeeds closes the breaker; one that fails ejects the
deployment again for twice as long, up to `max_ejection_seconds`. A probe that never reports
(its client went away) does not wedge the breaker: another is let through after one more
ejection period.

The interface is small on purpose (the routing model will grow around it):
`allow()` before an attempt (routing/router.py's plan asks it), `record_success()` /
`record_failure()` after it (`HealthHook`, an attempt hook of gateway/attempts.py), and
`is_available()` / `retry_after()` for reporting. Routing (docs/routing.md) adds two things:
`cool_down(seconds)` (an upstream 429: out of rotation for its Retry-After, no failure counted,
no probe needed after) and the model's cap on how many of its deployments may be ejected at once
(`record_failure(may_eject=False)` counts the failure without ejecting).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from gatehouse.errors import GatehouseError, UpstreamBusy, UpstreamError
from gatehouse.routing.strategies import Load

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.routing.active import ActiveChecks
    from gatehouse.routing.scrape import EngineScraper
    from gatehouse.routing.table import Deployment

log = logging.getLogger("gatehouse.health")


class Breaker:
    __slots__ = ("base", "cap", "cooling", "ejected_total", "ejected_until", "ejections", "failures", "name",
                 "not_ready", "probing", "threshold")

    def __init__(self, name: str = "", failure_threshold: int = 3, ejection_seconds: float = 5.0,
                 max_ejection_seconds: float = 120.0):
        self.name = name
        self.threshold = failure_threshold  # 0: never eject
        self.base = ejection_seconds
        self.cap = max(max_ejection_seconds, ejection_seconds)
        self.failures = 0  # consecutive
        self.ejections = 0  # consecutive ejections: the exponent of the backoff
        self.ejected_until = 0.0  # monotonic; 0: closed
        self.probing = False  # a half-open probe was let through and has not reported yet
        self.cooling = False  # ejected_until is a 429's cool-down, not an ejection
        self.ejected_total = 0  # every ejection since start (metrics)
        self.not_ready = False  # a scale_to_zero deployment's readiness probe says no (routing/active.py)

    def allow(self, now: float | None = None) -> bool:
        """Whether an attempt may go to this deployment now. Once an ejection has run out
        this lets exactly one attempt through (the probe) per ejection period."""
        until = self.ejected_until
        if not until:
            return True
        now = time.monotonic() if now is None else now
        if now < until:
            return False
        if self.cooling:  # a cool-down is over: back in rotation, nothing to probe
            self.cooling = False
            self.ejected_until = 0.0
            return True
        self.ejected_until = now + self._period(self.ejections - 1)  # the next probe, if this one never reports
        self.probing = True
        return True

    def is_available(self, now: float | None = None) -> bool:
        """Closed, or due for a probe (no side effect)."""
        return not self.ejected_until or (time.monotonic() if now is None else now) >= self.ejected_until

    def retry_after(self, now: float | None = None) -> float:
        """Seconds until this deployment takes an attempt again (0 when it does now)."""
        now = time.monotonic() if now is None else now
        return max(0.0, self.ejected_until - now) if self.ejected_until else 0.0

    def record_success(self) -> None:
        if self.ejected_until and not self.cooling:
            log.warning("deployment %s answered again; it is back in rotation", self.name)
        self.failures = self.ejections = 0
        self.ejected_until = 0.0
        self.probing = self.cooling = self.not_ready = False

    def cool_down(self, seconds: float, now: float | None = None) -> None:
        """An upstream 429: out of rotation for `seconds` (an ejection in progress stays)."""
        if self.ejected_until and not self.cooling:
            return
        now = time.monotonic() if now is None else now
        self.ejected_until = max(self.ejected_until, now + seconds)
        self.cooling = True

    def record_failure(self, now: float | None = None, may_eject: bool = True) -> None:
        self.failures += 1
        if self.threshold <= 0:
            return
        if self.cooling:  # a failure after a 429: the failure rules from here
            self.cooling = False
            self.ejected_until = 0.0
        if not may_eject:
            return
        if self.ejected_until:
            if not self.probing:  # an attempt begun before the ejection: already accounted for
                return
        elif self.failures < self.threshold:
            return
        now = time.monotonic() if now is None else now
        period = self._period(self.ejections)
        self.ejections += 1
        self.ejected_total += 1
        self.ejected_until, self.probing = now + period, False
        log.warning("deployment %s ejected for %.1f s after %d consecutive failures", self.name, period,
                    self.failures)

    def _period(self, n: int) -> float:
        return float(min(self.base * (2 ** max(0, min(n, 30))), self.cap))


class Health:
    """The breakers of one Runtime, one per (provider, upstream model)."""

    def __init__(self) -> None:
        self.breakers: dict[tuple[str, str], Breaker] = {}
        self.loads: dict[tuple[str, str], Load] = {}
        self.scraper: EngineScraper | None = None  # load-aware models' engine metrics (routing/scrape.py)
        self.active: ActiveChecks | None = None  # providers' health_check (routing/active.py)

    def load(self, provider: str, model: str) -> Load:
        """The deployment's load (least-busy, latency, max_in_flight), shared like its breaker."""
        key = (provider, model)
        load = self.loads.get(key)
        if load is None:
            load = self.loads[key] = Load()
        return load

    def breaker(self, provider: str, model: str, failure_threshold: int, ejection_seconds: float,
                max_ejection_seconds: float) -> Breaker:
        key = (provider, model)
        b = self.breakers.get(key)
        if b is None:
            b = self.breakers[key] = Breaker(f"{provider}/{model}", failure_threshold, ejection_seconds,
                                             max_ejection_seconds)
        return b

    def ejected(self) -> Iterable[tuple[str, str]]:
        now = time.monotonic()
        return [key for key, b in self.breakers.items() if not b.is_available(now)]


def is_retryable(err: GatehouseError) -> bool:
    """Whether another deployment may succeed where this one failed (connect errors, timeouts, 5xx,
    and an upstream's 429: its limit is not the next deployment's)."""
    return isinstance(err, UpstreamError) and (err.status >= 500 or err.status == 429)


COOL_DOWN_DEFAULT = 1.0  # seconds, for a 429 without a usable Retry-After
COOL_DOWN_MAX = 300.0


def cool_down_seconds(err: GatehouseError) -> float:
    """An upstream 429's Retry-After (seconds or an HTTP date), bounded."""
    value = (err.headers or {}).get("retry-after", "")
    if value.isdigit():
        return min(float(value), COOL_DOWN_MAX)
    if value:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return COOL_DOWN_DEFAULT
        return min(max(0.0, when - time.time()), COOL_DOWN_MAX)
    return COOL_DOWN_DEFAULT


class HealthHook:
    """The attempt hook that feeds each deployment's breaker: connect errors, timeouts and 5xx
    count against it; an answer (even a 4xx) shows it alive; our own connection cap
    (UpstreamBusy) says nothing about it."""

    __slots__ = ()

    def started(self, ex: Exchange, dep: Deployment) -> None:
        pass

    def answered(self, ex: Exchange, dep: Deployment) -> None:
        dep.breaker.record_success()

    def ended(self, ex: Exchange, dep: Deployment, error: GatehouseError | None) -> None:
        if error is None:
            return
        if error.status == 429 and isinstance(error, UpstreamError):  # alive, but full: try elsewhere a while
            if dep.cools_down:
                dep.breaker.cool_down(cool_down_seconds(error))
            else:
                dep.breaker.record_success()
        elif is_retryable(error):
            if not isinstance(error, UpstreamBusy):
                cap = dep.ejection_cap
                dep.breaker.record_failure(may_eject=cap is None or cap.may_eject(dep))
        elif isinstance(error, UpstreamError):
            dep.breaker.record_success()
