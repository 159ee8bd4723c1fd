"""The routing table and the router's plan, on a table built from a real config: alias patterns
(compiled once, the most specific winning), access checks, and a plan that skips ejected
deployments lazily and says when one takes a probe again."""
from __future__ import annotations

import pytest

from gatehouse.config import from_mapping
from gatehouse.errors import NotFound, PermissionDenied
from gatehouse.gateway.exchange import Exchange
from gatehouse.policy.auth import Principal
from gatehouse.providers.registry import PROVIDERS
from gatehouse.routing.health import Health
from gatehouse.routing.router import Router
from gatehouse.routing.table import Deployment, ModelEntry, ModelTable
from gatehouse.upstream.client import HttpPool


def _table(aliases: dict[str, str]) -> tuple[ModelTable, Health]:
    cfg = from_mapping({"providers": {"e": {"type": "echo"}},
                        "models": [{"name": n, "deployments": [{"provider": "e", "model": f"{n}-a"},
                                                               {"provider": "e", "model": f"{n}-b"}]}
                                   for n in ("chat", "haiku", "other")],
                        "model_aliases": aliases}, {})
    provider = PROVIDERS["echo"]("e", cfg.providers["e"], HttpPool())
    health = Health()
    models = {m.name: ModelEntry(m.name, tuple(
        Deployment("e", provider, d.model, breaker=health.breaker("e", d.model, 1, 5.0, 60.0), passthrough_dialect="x",
                   also_forwards=frozenset({"y"}))
        for d in m.deployments)) for m in cfg.models}
    return ModelTable(models, cfg.model_aliases), health


def _principal(allowed: frozenset[str] | None = None) -> Principal:
    return Principal(consumer="c", group=None, key_id="k", allowed=allowed)


def test_the_most_specific_alias_wins_whatever_the_order():
    table, _ = _table({"*": "other", "claude-*": "chat", "claude-haiku-*": "haiku"})
    p = _principal()
    assert table.resolve("claude-haiku-4-5", p).name == "haiku"
    assert table.resolve("claude-sonnet-4", p).name == "chat"
    assert table.resolve("gpt-4o", p).name == "other"
    assert table.resolve("chat", p).name == "chat"  # exact names before aliases


def test_unknown_and_forbidden_models_are_refused():
    table, _ = _table({"claude-*": "chat"})
    with pytest.raises(NotFound):
        table.resolve("gpt-4o", _principal())
    with pytest.raises(PermissionDenied):
        table.resolve("claude-x", _principal(frozenset({"other"})))
    assert [m.name for m in table.visible(_principal(frozenset({"other"})))] == ["other"]


def test_a_deployment_knows_every_dialect_it_takes_unchanged():
    table, _ = _table({})
    dep = table.models["chat"].deployments[0]
    assert dep.forwards == frozenset({"x", "y"})


def test_the_plan_skips_ejected_deployments_and_the_empty_plan_says_when_to_retry():
    table, _ = _table({})
    entry = table.models["chat"]
    ex = Exchange("r", "chat", "openai")
    router = Router()
    assert [d.upstream_model for d in router.plan(entry, ex)] == ["chat-a", "chat-b"]
    entry.deployments[0].breaker.record_failure()  # threshold 1: ejected
    assert [d.upstream_model for d in router.plan(entry, ex)] == ["chat-b"]
    entry.deployments[1].breaker.record_failure()
    assert list(router.plan(entry, ex)) == []
    err = router.unavailable(entry)
    assert err.status == 503 and 1 <= int(err.headers["retry-after"]) <= 5


def test_the_health_hook_counts_upstream_failures_not_our_own_connection_cap():
    from gatehouse.errors import InvalidRequest, UpstreamBusy, UpstreamError
    from gatehouse.routing.health import HealthHook

    table, _ = _table({})
    dep = table.models["other"].deployments[0]  # threshold 1: one counted failure ejects it
    ex = Exchange("r", "chat", "openai")
    hook = HealthHook()
    hook.ended(ex, dep, UpstreamBusy("no connection free"))
    hook.ended(ex, dep, InvalidRequest("bad request"))  # ours, before the upstream: says nothing
    assert dep.breaker.allow()
    rejected = UpstreamError("the upstream refused the request")
    rejected.status = 400
    hook.ended(ex, dep, rejected)  # the upstream answered (a 4xx): alive
    hook.ended(ex, dep, None)
    assert dep.breaker.allow()
    hook.ended(ex, dep, UpstreamError("connect failed"))
    assert not dep.breaker.allow()
    hook.answered(ex, dep)  # a probe's first byte closes the breaker
    assert dep.breaker.allow()
