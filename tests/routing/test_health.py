"""The breaker's state machine with an explicit clock: ejection, one probe per period,
exponential backoff with a cap, and failures of attempts begun before an ejection."""
from __future__ import annotations

from gatehouse.routing.health import Breaker, Health


def test_ejects_after_threshold_and_lets_one_probe_through_per_period():
    b = Breaker("p/m", failure_threshold=3, ejection_seconds=5, max_ejection_seconds=12)
    for _ in range(2):
        b.record_failure(now=0)
    assert b.allow(now=0)
    b.record_failure(now=0)
    assert not b.allow(now=4.9) and b.retry_after(now=1) == 4
    assert b.allow(now=5)  # the probe
    assert not b.allow(now=5.1)  # only one
    b.record_failure(now=6)  # the probe failed: 10 s now
    assert not b.allow(now=15.9) and b.allow(now=16)
    b.record_failure(now=16)  # 20 s, capped at 12
    assert not b.allow(now=27.9) and b.allow(now=28)
    b.record_success()
    assert b.allow(now=28) and b.allow(now=28) and b.is_available(now=28)


def test_failures_of_attempts_begun_before_the_ejection_do_not_extend_it():
    b = Breaker("p/m", failure_threshold=1, ejection_seconds=5)
    b.record_failure(now=0)
    for _ in range(50):  # the rest of a burst of timeouts arriving
        b.record_failure(now=1)
    assert b.allow(now=5)


def test_a_probe_that_never_reports_does_not_wedge_the_breaker():
    b = Breaker("p/m", failure_threshold=1, ejection_seconds=5)
    b.record_failure(now=0)
    assert b.allow(now=5)  # its client goes away: no success, no failure
    assert not b.allow(now=9)
    assert b.allow(now=10)


def test_threshold_zero_never_ejects_and_health_shares_one_breaker_per_deployment():
    b = Breaker("p/m", failure_threshold=0)
    for _ in range(10):
        b.record_failure(now=0)
    assert b.allow(now=0)
    h = Health()
    assert h.breaker("p", "m", 3, 5, 60) is h.breaker("p", "m", 3, 5, 60)
    h.breaker("p", "m", 3, 5, 60).record_failure()
    assert list(h.ejected()) == []
