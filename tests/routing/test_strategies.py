"""Routing's pieces on a table built from a real config the way runtime.py builds it: the weighted
schedule, power of two choices on load, tiers, the 429 cool-down of a breaker, and the config
checks that refuse a routing field where it would do nothing."""
from __future__ import annotations

from typing import Any

import pytest

from gatehouse.config import ConfigError, from_mapping
from gatehouse.errors import UpstreamStatus, classify_upstream_status
from gatehouse.gateway.exchange import Exchange
from gatehouse.providers.registry import PROVIDERS
from gatehouse.routing.health import Breaker, Health, cool_down_seconds
from gatehouse.routing.route import build_routes
from gatehouse.routing.router import Router
from gatehouse.routing.strategies import Ordered, smooth_schedule
from gatehouse.routing.table import Deployment, ModelEntry
from gatehouse.upstream.client import HttpPool


def _entries(models: list[dict[str, Any]]) -> tuple[dict[str, ModelEntry], Health]:
    cfg = from_mapping({"providers": {"e": {"type": "echo"}}, "models": models}, {})
    provider = PROVIDERS["echo"]("e", cfg.providers["e"], HttpPool())
    health = Health()
    entries = {m.name: ModelEntry(m.name, tuple(Deployment("e", provider, d.model, d.weight,
                                                           breaker=health.breaker("e", d.model, 1, 5.0, 60.0))
                                                for d in m.deployments)) for m in cfg.models}
    return build_routes(cfg, entries, health, HttpPool()), health


def _plan(entry: ModelEntry) -> list[str]:
    return [d.upstream_model for d in Router(Ordered()).plan(entry, Exchange("r", "chat", "openai"))]


def test_the_smooth_schedule_spreads_each_weight_over_the_cycle():
    assert smooth_schedule([5, 1, 1]) == (0, 0, 1, 0, 2, 0, 0)
    assert smooth_schedule([2, 2]) == (0, 1)  # reduced by the gcd
    assert sorted(smooth_schedule([3, 2, 1])) == [0, 0, 0, 1, 1, 2]


def test_least_busy_takes_the_lighter_of_two_and_fails_over_to_the_rest_by_load():
    models, health = _entries([{"name": "m", "routing": {"strategy": "least-busy"},
                                "deployments": [{"provider": "e", "model": x} for x in "abc"]}])
    entry = models["m"]
    for name, n in (("a", 5), ("b", 0), ("c", 2)):
        health.load("e", name).in_flight = n
    firsts = {_plan(entry)[0] for _ in range(200)}
    assert firsts == {"b", "c"}  # "a" is heavier than either other: never picked first
    assert _plan(entry)[1:] in (["c", "a"], ["b", "a"])


def test_a_lower_tier_comes_after_every_deployment_of_the_tier_above():
    models, _ = _entries([{"name": "m", "routing": {"strategy": "weighted"}, "deployments": [
        {"provider": "e", "model": "over", "priority": 2},
        {"provider": "e", "model": "a", "weight": 3}, {"provider": "e", "model": "b"}]}])
    entry = models["m"]
    plans = [_plan(entry) for _ in range(4)]
    assert [p[0] for p in plans] == ["a", "a", "b", "a"] and all(p[-1] == "over" for p in plans)
    entry.deployments[1].breaker.record_failure()
    entry.deployments[2].breaker.record_failure()
    assert _plan(entry) == ["over"]


def test_a_plain_model_has_no_route_and_keeps_the_configured_order():
    models, _ = _entries([{"name": "m", "deployments": [{"provider": "e", "model": "a"},
                                                        {"provider": "e", "model": "b"}]}])
    assert models["m"].route is None and _plan(models["m"]) == ["a", "b"]
    assert all(d.load is None and d.model_name == "m" for d in models["m"].deployments)


def test_a_cool_down_takes_a_deployment_out_without_a_probe_after():
    b = Breaker("p/m", failure_threshold=3, ejection_seconds=5)
    b.cool_down(2, now=0)
    assert not b.allow(now=1.9)
    assert b.allow(now=2) and b.allow(now=2.1)  # back, no half-open probe
    b.record_failure(now=3)
    b.record_failure(now=3)
    b.cool_down(10, now=3)
    b.record_failure(now=4)  # a real failure during the cool-down: the failure rules take over
    assert not b.allow(now=8.9) and b.allow(now=9)


def test_retry_after_seconds_and_http_dates_bound_the_cool_down():
    def err(value: str | None) -> UpstreamStatus:
        return classify_upstream_status(429, "limited", headers={"retry-after": value} if value else None)

    assert cool_down_seconds(err("7")) == 7
    assert cool_down_seconds(err("99999")) == 300
    assert cool_down_seconds(err(None)) == 1
    assert cool_down_seconds(err("Wed, 21 Oct 2015 07:28:00 GMT")) == 0


@pytest.mark.parametrize(("model", "message"), [
    ({"deployments": [{"provider": "e", "model": "a", "weight": 3}]}, "only used by routing.strategy 'weighted'"),
    ({"deployments": [{"provider": "e", "model": "a"}], "fallbacks": ["nope"]}, "unknown model 'nope'"),
    ({"deployments": [{"provider": "e", "model": "a"}], "fallbacks": ["m"]}, "its own fallback"),
    ({"deployments": [{"provider": "e", "model": "a"}], "context_window_fallbacks": ["m2"]}, "needs the model's"),
    ({"deployments": [{"provider": "e", "model": "a"}], "cold_start": {}}, "has a base_url to poll"),
    ({"deployments": [{"provider": "e", "model": "a", "priority": 0}]}, "priority"),
    ({"deployments": [{"provider": "e", "model": "a"}], "routing": {"strategy": "random"}}, "strategy"),
    ({"deployments": [{"provider": "e", "model": "a"}], "routing": {"strategy": "least-busy", "prefix_weight": 2}},
     "routing.prefix_weight: only used by routing.strategy 'load-aware'"),
    ({"deployments": [{"provider": "e", "model": "a"}], "routing": {"strategy": "load-aware", "prefix_weight": -1}},
     "prefix_weight"),
])
def test_routing_fields_are_refused_where_they_would_do_nothing(model, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping({"providers": {"e": {"type": "echo"}},
                      "models": [{"name": "m", **model}, {"name": "m2", "deployments": [{"provider": "e", "model": "b"}]}]},
                     {})


def test_the_affinity_key_stays_while_a_conversation_grows_and_differs_between_conversations():
    from gatehouse.routing.affinity import affinity_key

    system = {"role": "system", "content": "You are a coding agent."}
    turn1 = {"messages": [system, {"role": "user", "content": "session 1"}]}
    turn2 = {"messages": [*turn1["messages"], {"role": "assistant", "content": "ok"},
                          {"role": "user", "content": "more"}]}
    other = {"messages": [system, {"role": "user", "content": "session 2"}]}
    assert affinity_key(turn1) == affinity_key(turn2) != affinity_key(other)
    anthropic1 = {"system": [{"type": "text", "text": "agent"}],
                  "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}
    anthropic2 = {**anthropic1, "messages": [*anthropic1["messages"], {"role": "assistant", "content": "hi"}]}
    assert affinity_key(anthropic1) == affinity_key(anthropic2) is not None
    assert affinity_key({"input": "a responses prompt"}) is not None
    assert affinity_key(None) is None and affinity_key({"messages": []}) is None


def test_prefix_affinity_places_new_keys_within_the_load_bound_and_fails_over_along_the_ring():
    models, _ = _entries([{"name": "m", "routing": {"strategy": "prefix-affinity"},
                           "deployments": [{"provider": "e", "model": x} for x in "abcd"]}])
    entry = models["m"]
    from gatehouse.gateway.endpoint import Call

    firsts = []
    for i in range(40):
        ex = Exchange("r", "chat", "openai")
        ex.call = Call("m", {"messages": [{"role": "user", "content": f"conversation {i}"}]}, None)
        plan = [d.upstream_model for d in Router(Ordered()).plan(entry, ex)]
        assert sorted(plan) == ["a", "b", "c", "d"]
        again = [d.upstream_model for d in Router(Ordered()).plan(entry, ex)]
        assert again == plan  # the same key: the same order
        firsts.append(plan[0])
    assert max(firsts.count(x) for x in "abcd") <= 1.25 * 10


def test_engine_metrics_are_read_in_each_engines_names():
    from gatehouse.routing.scrape import parse_engine_metrics

    vllm = ('# HELP vllm:num_requests_waiting Number of requests waiting.\n# TYPE vllm:num_requests_waiting gauge\n'
            'vllm:num_requests_waiting{engine="0",model_name="a b"} 3.0\n'
            'vllm:num_requests_waiting{engine="1",model_name="c"} 2.0 1700000000000\n'
            'vllm:num_requests_running{engine="0",model_name="a b"} 7.0\n'
            'vllm:kv_cache_usage_perc{engine="0",model_name="a b"} 0.25\n'
            'vllm:kv_cache_usage_perc{engine="1",model_name="c"} 0.5\n'
            'vllm:num_requests_waiting_by_reason{reason="x"} 99\n')
    assert parse_engine_metrics(vllm) == (5.0, 7.0, 0.5)
    assert parse_engine_metrics("llamacpp:requests_deferred 4\nllamacpp:requests_processing 2\n"
                                "llamacpp:kv_cache_usage_ratio 0.75\n") == (4.0, 2.0, 0.75)
    assert parse_engine_metrics("sglang:num_queue_reqs 1\nsglang:token_usage 80\n") == (1.0, 0.0, 0.8)
    assert parse_engine_metrics("vllm:gpu_cache_usage_perc 0.1\n") == (0.0, 0.0, 0.1)
    assert parse_engine_metrics("process_cpu_seconds_total 5\nbroken{ x\n") is None


def test_the_clients_own_prefix_hint_is_the_affinity_key_when_it_sends_one():
    from gatehouse.routing.affinity import affinity_key

    a = {"messages": [{"role": "user", "content": "one"}], "prompt_cache_key": "repo-x"}
    b = {"messages": [{"role": "user", "content": "two"}], "prompt_cache_key": "repo-x"}
    assert affinity_key(a) == affinity_key(b)
    session = "user_abc_account_def_session_0f1e"
    c1 = {"messages": [{"role": "user", "content": "x"}], "metadata": {"user_id": session}}
    c2 = {"messages": [{"role": "user", "content": "y"}], "metadata": {"user_id": session}}
    assert affinity_key(c1) == affinity_key(c2)
    plain_user = {"messages": [{"role": "user", "content": "x"}], "metadata": {"user_id": "alice"}}
    assert affinity_key(plain_user) == affinity_key({"messages": [{"role": "user", "content": "x"}]})


def test_budgets_reserve_at_the_dearest_reachable_deployment_and_settle_a_fallback_at_its_price():
    from gatehouse.metering.pricing import PriceBook
    from gatehouse.types import Usage

    cfg = from_mapping({"providers": {"e": {"type": "echo"}}, "models": [
        {"name": "cheap", "fallbacks": ["dear"],
         "deployments": [{"provider": "e", "model": "a", "input_per_mtok": 1, "output_per_mtok": 2}]},
        {"name": "dear", "deployments": [{"provider": "e", "model": "b", "input_per_mtok": 10, "output_per_mtok": 20}]},
    ]}, {})
    book = PriceBook(cfg)
    assert book.estimate("cheap", 1_000_000, 0) == 10.0  # its fallback's price, not its own 1.0
    assert book.estimate("dear", 1_000_000, 0) == 10.0
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert book.cost("cheap", "e", "a", usage) == 1.0
    assert book.cost("cheap", "e", "b", usage) == 10.0  # the fallback served it: its price


def test_claude_codes_session_header_keys_affinity_whatever_the_body_says():
    from gatehouse.routing.affinity import affinity_key

    one = {"messages": [{"role": "user", "content": "first question"}]}
    two = {"messages": [{"role": "user", "content": "something else entirely"}]}
    assert affinity_key(one, "session-a") == affinity_key(two, "session-a") != affinity_key(one, "session-b")
    assert affinity_key(None, "session-a") is not None
    assert affinity_key({**one, "prompt_cache_key": "k"}, "session-a") == affinity_key({**two, "prompt_cache_key": "k"})

