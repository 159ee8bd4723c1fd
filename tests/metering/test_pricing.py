"""Prices: explicit per-million prices, cached input, GPU amortisation, config checks."""
from __future__ import annotations

import pytest

from gatehouse.config import ConfigError, DeploymentConfig, from_mapping
from gatehouse.metering.pricing import Price, cost_usd, price_of
from gatehouse.types import Usage


def dep(**prices) -> DeploymentConfig:
    return DeploymentConfig(provider="p", model="m", **prices)


def test_explicit_prices_per_million_tokens():
    d = dep(input_per_mtok=3.0, output_per_mtok=15.0)
    assert cost_usd(d, Usage(input_tokens=1_000_000, output_tokens=0)) == pytest.approx(3.0)
    assert cost_usd(d, Usage(input_tokens=1000, output_tokens=2000)) == pytest.approx(0.003 + 0.03)


def test_cached_input_is_part_of_input_and_billed_at_its_own_price():
    d = dep(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5)
    u = Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=100)
    assert cost_usd(d, u) == pytest.approx((600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1e6)
    no_cached_price = dep(input_per_mtok=2.0)
    assert cost_usd(no_cached_price, u) == pytest.approx(1000 * 2.0 / 1e6)


def test_gpu_hour_amortised_over_measured_throughput():
    # $3.60/h over 1,000 output tokens/s = $1 per million output tokens; 10,000 input tokens/s = $0.10
    d = dep(gpu_cost_per_hour=3.6, gpu_output_tokens_per_second=1000, gpu_input_tokens_per_second=10000)
    assert price_of(d) == Price(input_per_mtok=pytest.approx(0.1), output_per_mtok=pytest.approx(1.0))
    assert cost_usd(d, Usage(input_tokens=500_000, output_tokens=2_000_000)) == pytest.approx(0.05 + 2.0)
    # an explicit price wins over the derived one, field by field
    mixed = dep(gpu_cost_per_hour=3.6, gpu_output_tokens_per_second=1000, input_per_mtok=0.02)
    assert price_of(mixed) == Price(input_per_mtok=0.02, output_per_mtok=pytest.approx(1.0))


def test_unpriced_deployment_costs_zero_and_has_no_price():
    assert price_of(dep()) is None
    assert cost_usd(dep(), Usage(input_tokens=10, output_tokens=10)) == 0.0
    assert cost_usd(None, Usage(input_tokens=10)) == 0.0
    assert cost_usd(Price(1.0, 1.0), None) == 0.0


def _cfg(deployment: dict, **top) -> dict:
    return {"providers": {"p": {"type": "echo"}},
            "models": [{"name": "m", "deployments": [{"provider": "p", "model": "m", **deployment}]}], **top}


@pytest.mark.parametrize("deployment, message", [
    ({"input_per_mtok": -1}, "models[0].deployments[0].input_per_mtok: must not be negative"),
    ({"gpu_cost_per_hour": 2.0}, "models[0].deployments[0].gpu_output_tokens_per_second: required"),
    ({"gpu_cost_per_hour": 2.0, "gpu_output_tokens_per_second": 0},
     "models[0].deployments[0].gpu_output_tokens_per_second: must be positive"),
    ({"output_per_mtok": "free"}, "models[0].deployments[0].output_per_mtok"),
])
def test_bad_prices_are_refused_naming_the_field(deployment, message):
    with pytest.raises(ConfigError) as e:
        from_mapping(_cfg(deployment), env={})
    assert str(e.value).startswith(message)


def test_unpriced_policy_is_checked():
    assert from_mapping(_cfg({}, pricing={"unpriced": "deny"}), env={}).pricing.unpriced == "deny"
    with pytest.raises(ConfigError, match=r"pricing.unpriced"):
        from_mapping(_cfg({}, pricing={"unpriced": "maybe"}), env={})
