"""The limits step: requests/tokens per minute, concurrency, the max_tokens cap and USD budgets.

At admission it reserves, in one atomic limiter call, one request, the token estimate
(prompt estimate + the request's max_tokens, capped by the group's) and its worst-case
price; after the response it settles to the real usage and cost and gives the rest back.
The prompt estimate is scaled by what the model's deployments were seen to bill
(metering/tokens.Calibration), so the reservation stays an upper bound of the real usage.
Every response of an admitted or refused request carries OpenAI's rate-limit headers
(`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`) for the limits that apply.
"""
from __future__ import annotations

import itertools
import math
import time
from typing import TYPE_CHECKING

from gatehouse.config import LimitsConfig
from gatehouse.errors import RateLimited, ServiceUnavailable
from gatehouse.gateway.exchange import Exchange
from gatehouse.metering.pricing import PriceBook
from gatehouse.metering.tokens import Calibration
from gatehouse.policy.principal import Limits
from gatehouse.store.limiter_shared import SharedLimiter
from gatehouse.store.limiter_types import BUCKET, DAY, LEASE, MONTH, NANO, Meter, Outcome, Refund

if TYPE_CHECKING:
    from gatehouse.observability.tracing import Tracing

_HEADER_DIMS = {"requests": "requests", "tokens": "tokens"}


def go_duration(seconds: float) -> str:
    """OpenAI's reset format: 20ms, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    m, s = divmod(int(math.ceil(seconds)), 60)
    return f"{m}m{s}s"


def _who(pool: str) -> str:
    kind, _, name = pool.partition(":")
    return f"group '{name}'" if kind == "g" else f"consumer '{name}'"


class LimitsStep:
    name = "limits"

    def __init__(self, limiter: SharedLimiter, prices: PriceBook, cfg: LimitsConfig, tracing: Tracing | None = None):
        self.limiter = limiter
        # a span per Redis call (admit, settle) when tracing is on; the in-process limiter does no I/O
        self.tracing = tracing if limiter.redis is not None else None
        self.prices = prices
        self.default_reserve = cfg.default_reserve_tokens
        self._ids = itertools.count()
        self._member_prefix = limiter.replica_id + ":"
        self.calibration = Calibration()

    async def admit(self, ex: Exchange) -> None:
        lim = ex.principal.limits if ex.principal is not None else None
        if lim is None:
            return
        out = ex.max_tokens
        if lim.max_tokens is not None and (out is None or out > lim.max_tokens):
            out = ex.max_tokens = lim.max_tokens  # the dialect sends the capped value upstream
        meters = self._meters(ex, lim, out)
        if not meters:
            return
        member = self._member_prefix + str(next(self._ids))
        if self.tracing is None:
            outcome = await self.limiter.admit(meters, member)
        else:
            outcome = await self._admit_traced(ex, meters, member)
        self._headers(ex, meters, outcome)
        if not outcome.ok:
            self.limiter.stats.rejections += 1
            i = outcome.denied
            raise self._refusal(meters[i]._replace(limit=outcome.limits[i]), outcome, i)
        ex.limits = (meters, outcome, member)

    def _meters(self, ex: Exchange, lim: Limits, out: int | None) -> list[Meter]:
        meters: list[Meter] = []
        pools = lim.pools
        estimate = ex.prompt_estimate
        factor = self.calibration.factor(ex.model)
        prompt = estimate if factor == 1.0 else math.ceil(estimate * factor)
        if out is None:  # nothing bounds the answer: reserve a default, within the bucket
            out = self.default_reserve
            if lim.tokens_per_minute is not None:
                out = max(0, min(out, lim.tokens_per_minute - prompt))
        out = max(out, 0)  # (refused at the edge already) a negative reservation would credit the allowance
        if lim.requests_per_minute is not None:
            meters.append(Meter("requests", BUCKET, "rpm:" + pools[0], lim.requests_per_minute, 1))
        if lim.tokens_per_minute is not None:
            if estimate + out > lim.tokens_per_minute:  # judged on the plain estimate, not a guess
                raise RateLimited(
                    f"Request too large for {_who(pools[1])}: it may use {estimate + out} tokens (prompt "
                    f"estimate {estimate} + max_tokens {out}) but the limit is {lim.tokens_per_minute} "
                    "tokens per minute. Lower max_tokens or shorten the prompt.",
                    param="max_tokens", code="request_too_large")
            tokens = min(prompt + out, lim.tokens_per_minute)
            meters.append(Meter("tokens", BUCKET, "tpm:" + pools[1], lim.tokens_per_minute, tokens))
        if lim.max_concurrent is not None:
            meters.append(Meter("concurrent", LEASE, "conc:" + pools[2], lim.max_concurrent, 1))
        if lim.budget_usd_per_day is not None or lim.budget_usd_per_month is not None:
            cost = math.ceil(self.prices.estimate(ex.model, prompt, out) * NANO)
            if cost > 0:  # a free model never touches a budget
                if lim.budget_usd_per_day is not None:
                    meters.append(Meter("usd_day", DAY, "usd:" + pools[3],
                                        int(lim.budget_usd_per_day * NANO), cost))
                if lim.budget_usd_per_month is not None:
                    meters.append(Meter("usd_month", MONTH, "usd:" + pools[4],
                                        int(lim.budget_usd_per_month * NANO), cost))
        return meters

    def _headers(self, ex: Exchange, meters: list[Meter], outcome: Outcome) -> None:
        h = ex.response_headers
        for i, m in enumerate(meters):
            suffix = _HEADER_DIMS.get(m.dim)
            if suffix is None:
                continue
            h[f"x-ratelimit-limit-{suffix}"] = str(outcome.limits[i])
            h[f"x-ratelimit-remaining-{suffix}"] = str(max(0, outcome.remaining[i]))
            h[f"x-ratelimit-reset-{suffix}"] = go_duration(outcome.reset[i])

    def _refusal(self, m: Meter, outcome: Outcome, i: int) -> RateLimited:
        retry = max(1, math.ceil(outcome.retry_after))
        headers = {"retry-after": str(retry)}
        who = _who(m.key.split(":", 1)[1])  # keys are "<dimension>:<pool>"
        if m.dim == "requests":
            msg = f"Rate limit reached for {who}: {m.limit} requests per minute. Retry after {retry}s."
        elif m.dim == "tokens":
            msg = (f"Rate limit reached for {who}: {m.limit} tokens per minute, {max(0, outcome.remaining[i])} "
                   f"left, this request needs {m.cost}. Retry after {retry}s.")
        elif m.dim == "concurrent":
            msg = f"Too many concurrent requests for {who}: at most {m.limit} at once. Retry after {retry}s."
        else:
            period = "daily" if m.dim == "usd_day" else "monthly"
            resets = "at 00:00 UTC" if m.dim == "usd_day" else "on the 1st at 00:00 UTC"
            spent = (m.limit - outcome.remaining[i]) / NANO
            return RateLimited(
                f"The {period} budget of ${m.limit / NANO:.2f} for {who} is used up (${spent:.4f} spent; "
                f"this request may cost up to ${m.cost / NANO:.4f}). It resets {resets}.",
                code="budget_exceeded", headers=headers)
        return RateLimited(msg, headers=headers)

    async def settle(self, ex: Exchange) -> None:
        state, ex.limits = ex.limits, None
        if state is None:  # unmetered: nothing to settle, nothing to learn (keeps that path lean)
            return
        meters, outcome, member = state
        usage = ex.usage
        if usage is not None and not usage.estimated and usage.input_tokens:
            self.calibration.observe(ex.model, ex.provider + "/" + ex.deployment, ex.prompt_estimate,
                                     usage.input_tokens)
        used_tokens = usage.total_tokens if usage is not None else 0
        used_nusd = 0
        if usage is not None and any(m.kind in (DAY, MONTH) for m in meters):
            used_nusd = math.ceil(self.prices.cost(ex.model, ex.provider, ex.deployment, usage) * NANO)
        refunds: list[Refund] = []
        for m, key, limit in zip(meters, outcome.keys, outcome.limits):
            if m.dim == "tokens":
                if m.cost != used_tokens:
                    refunds.append(Refund(BUCKET, key, limit, m.cost - used_tokens))
            elif m.kind == LEASE:
                refunds.append(Refund(LEASE, key, limit, 0))
            elif m.kind in (DAY, MONTH) and m.cost != used_nusd:
                refunds.append(Refund(m.kind, key, limit, m.cost - used_nusd))
        if self.tracing is None or outcome.backend == "local":
            await self.limiter.settle(outcome, refunds, member)
            return
        started = time.monotonic()
        ok = await self.limiter.settle(outcome, refunds, member)
        self._span(ex, "settle", started, "settled" if ok else "store_error")

    async def _admit_traced(self, ex: Exchange, meters: list[Meter], member: str) -> Outcome:
        """The limiter's admission in a span (`limits admit`): admitted | rejected | store_error
        (Redis failed or is known down: the per-replica fallback answered, or, under
        `on_store_error: closed`, the request is refused)."""
        started = time.monotonic()
        try:
            outcome = await self.limiter.admit(meters, member)
        except ServiceUnavailable:
            self._span(ex, "admit", started, "store_error")
            raise
        self._span(ex, "admit", started, "store_error" if outcome.backend == "local"
                   else "admitted" if outcome.ok else "rejected")
        return outcome

    def _span(self, ex: Exchange, op: str, started: float, outcome: str) -> None:
        assert self.tracing is not None
        self.tracing.policy_span(ex, "limits " + op, started,
                                 ("limits", "redis", "EVALSHA", None, None, None, None, None, outcome, None),
                                 outcome == "store_error")
