"""The metrics of issue 20 over a real gateway and scripted traffic: rate-limit refusals by
group, consumer and reason; per-deployment latency and errors; inter-token latency; the opt-in
per-consumer usage series; limits-store health; process stats."""
from __future__ import annotations

import pytest

from gatehouse.observability.metrics import CONSUMER_LABEL_LIMIT, Metrics
from tests.observability.traffic import STREAMS, observed_config, send_traffic, settled, total
from tests.support import Gatehouse


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    g = Gatehouse(observed_config(openai_upstream.url), tmp_path_factory.mktemp("obs-metrics")).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def after(gh):
    outcome = send_traffic(gh.url)
    return outcome, settled(gh.url)


def test_rate_limit_refusals_carry_group_consumer_and_reason(after):
    outcome, s = after
    assert outcome["refused"] >= 1 and outcome["upstream_429"] == 1
    assert total(s, "gatehouse_limit_rejections_total", group="tight", consumer="carol",
                 reason="rate_limit_exceeded") == outcome["refused"]
    assert total(s, "gatehouse_limit_rejections_total", group="dev", consumer="alice",
                 reason="upstream_rate_limited") == 1
    assert total(s, "gatehouse_limit_rejections_total", group="broke", consumer="dave",
                 reason="budget_exceeded") == outcome["over_budget"] == 1
    assert total(s, "gatehouse_limit_rejections_total") == total(s, "gatehouse_rate_limited_total")


def test_upstream_latency_and_errors_per_deployment(after):
    outcome, s = after
    attempts = total(s, "gatehouse_upstream_attempts_total")
    assert total(s, "gatehouse_deployment_attempt_duration_seconds_count") == attempts > 0
    assert total(s, "gatehouse_deployment_attempt_duration_seconds_count", provider="dead", deployment="gone") == 1
    assert total(s, "gatehouse_deployment_errors_total", provider="dead", deployment="gone") == 1
    assert total(s, "gatehouse_deployment_errors_total", provider="up", deployment="up-chat",
                 type="upstream_error") == outcome["failed"] == 1
    # the upstream's 429 is the upstream's refusal: counted against the deployment too
    assert total(s, "gatehouse_deployment_errors_total", provider="up", deployment="up-chat",
                 type="upstream_rate_limited") == 1


def test_a_burst_over_max_connections_shows_in_the_pool_metrics(after):
    _, s = after
    assert total(s, "gatehouse_upstream_pool_wait_seconds_count", provider="up") >= 1


def test_inter_token_latency_per_model_for_streams(after):
    _, s = after
    assert total(s, "gatehouse_inter_token_latency_seconds_count", model="chat") == STREAMS
    assert total(s, "gatehouse_inter_token_latency_seconds_sum", model="chat") > 0


def test_consumer_series_add_up_to_the_group_series(after):
    _, s = after
    for name in ("tokens_input", "tokens_output", "cost_usd"):
        for group in ("dev", "tight"):
            assert total(s, f"gatehouse_consumer_{name}_total", group=group) == \
                pytest.approx(total(s, f"gatehouse_{name}_total", group=group)), (name, group)
    assert total(s, "gatehouse_consumer_tokens_output_total", consumer="alice", model="chat") > 0
    assert total(s, "gatehouse_consumer_requests_total", consumer="carol", status="429") >= 1
    assert total(s, "gatehouse_consumer_requests_total") == total(s, "gatehouse_requests_total")


def test_limits_store_and_process_stats_are_exported(after):
    _, s = after
    assert s[("gatehouse_limits_store_up", ())] == 1
    assert ("gatehouse_limits_store_errors_total", ()) in s
    assert total(s, "process_cpu_seconds_total") > 0 and total(s, "process_resident_memory_bytes") > 0
    assert total(s, "python_info") == 1


def test_consumer_label_is_opt_in_and_capped():
    off = Metrics(["m"], ["g"], ["p"], lambda: 0.0)
    off.count_request("m", "g", "alice", 429, "rate_limit_exceeded", None, 10, 5, 0.1)
    text = off.render().decode()
    assert "gatehouse_consumer_" not in text
    assert 'gatehouse_limit_rejections_total{consumer="",group="g",reason="rate_limit_exceeded"} 1.0' in text
    on = Metrics(["m"], ["g"], ["p"], lambda: 0.0, consumer_label=True)
    names = [on.consumer(f"c{i}") for i in range(CONSUMER_LABEL_LIMIT + 5)]
    assert names[:CONSUMER_LABEL_LIMIT] == [f"c{i}" for i in range(CONSUMER_LABEL_LIMIT)]
    assert set(names[CONSUMER_LABEL_LIMIT:]) == {"_other"} and len(on._consumers) == CONSUMER_LABEL_LIMIT
    on.count_request("m", "unknown-group", "c0", 200, None, 0.02, 10, 5, 0.1)
    text = on.render().decode()
    assert 'gatehouse_consumer_tokens_output_total{consumer="c0",group="",model="m"} 5.0' in text
    assert 'gatehouse_inter_token_latency_seconds_count{model="m"} 1.0' in text


def test_access_log_can_go_to_stdout_alone(openai_upstream, start_gatehouse):
    import json

    import openai

    from tests.conftest import ALICE_KEY
    from tests.observability.traffic import observed_config

    cfg = observed_config(openai_upstream.url)
    cfg["logging"] = {"access_log_stream": "stdout"}
    gh = start_gatehouse(cfg)
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "secret words"}])
    gh.stop()
    lines = [json.loads(line) for line in gh.output().splitlines() if line.startswith("{")]
    chat = [line for line in lines if line.get("path") == "/v1/chat/completions"]
    assert len(chat) == 1 and chat[0]["consumer"] == "alice" and chat[0]["group"] == "dev"
    assert chat[0]["tokens_out"] > 0 and chat[0]["deployment"] == "up-chat"
    assert "/v1/chat/completions" not in gh.logs() and "secret words" not in gh.output()
