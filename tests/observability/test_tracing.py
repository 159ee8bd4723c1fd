"""OpenTelemetry traces over a real gateway, exported over OTLP/HTTP to a test collector:
the request span under the client's traceparent, one child span per upstream attempt
(failovers visible), GenAI attributes, the first-token event, traceparent propagated to the
upstream, no prompt text anywhere — and nothing of it when tracing is off. Then the other
encodings and transports (OTLP/JSON, OTLP/gRPC) and the standard OTEL_* variables."""
from __future__ import annotations

import time

import openai
import pytest

from gatehouse.config import TracingConfig
from gatehouse.observability.otlp_encode import JsonEncoder, ProtobufEncoder
from gatehouse.observability.otlp_export import settings
from tests.conftest import ALICE_KEY
from tests.observability.otlp_collector import GrpcCollector, make_app, parse_json, wait_for
from tests.observability.traffic import observed_config
from tests.support import Gatehouse
from tests.upstreams.harness import ServerThread

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto (dev extra) parses what is exported")

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
PROMPT = "secret prompt words"
INTERNAL, SERVER, CLIENT = 1, 2, 3  # SpanKind in OTLP
ERROR = 2


@pytest.fixture(scope="module")
def collector():
    with ServerThread(make_app) as srv:
        yield srv


@pytest.fixture(scope="module")
def traced(openai_upstream, collector, tmp_path_factory):
    cfg = observed_config(openai_upstream.url)
    cfg["tracing"] = {"enabled": True, "endpoint": collector.url + "/v1/traces", "service_name": "gh-test"}
    g = Gatehouse(cfg, tmp_path_factory.mktemp("obs-trace"), env={"OTEL_BSP_SCHEDULE_DELAY": "50"}).start()
    yield g
    g.stop()


def client(gh: Gatehouse, trace: str = TRACE, parent: str = PARENT) -> openai.OpenAI:
    return openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0,
                         default_headers={"traceparent": f"00-{trace}-{parent}-01"})


def test_request_and_attempt_spans_under_the_clients_trace(traced, collector, recorder):
    client(traced).chat.completions.create(model="chat", messages=[{"role": "user", "content": PROMPT}])
    got = wait_for(collector, lambda s: any(x["trace_id"] == TRACE and x["kind"] == SERVER for x in s))
    mine = [s for s in got if s["trace_id"] == TRACE]
    request = next(s for s in mine if s["kind"] == SERVER)
    attempt = next(s for s in mine if s["kind"] == CLIENT)
    assert request["parent_span_id"] == PARENT and request["name"] == "POST chat"
    assert request["resource"]["service.name"] == "gh-test"
    a = request["attributes"]
    assert a["gatehouse.consumer"] == "alice" and a["gatehouse.group"] == "dev"
    assert a["gen_ai.request.model"] == "chat" and a["http.response.status_code"] == 200
    assert a["gen_ai.usage.output_tokens"] > 0 and a["gatehouse.attempts"] == 1
    assert attempt["parent_span_id"] == request["span_id"] and attempt["name"] == "chat chat"
    b = attempt["attributes"]
    assert b["gen_ai.operation.name"] == "chat" and b["gen_ai.provider.name"] == "openai"
    assert b["gen_ai.request.model"] == "chat" and b["gen_ai.response.model"] == "up-chat"
    assert b["gen_ai.usage.input_tokens"] > 0 and b["gen_ai.usage.output_tokens"] > 0
    assert b["gatehouse.deployment"] == "up-chat" and b["gatehouse.attempt"] == 1
    assert b["gen_ai.response.finish_reasons"] == ["stop"] and b["gatehouse.route"] == "primary"
    assert request["start"] <= attempt["start"] <= attempt["end"] <= request["end"]
    # the upstream got the attempt's context, not the client's
    assert recorder.last.headers["traceparent"] == f"00-{TRACE}-{attempt['span_id']}-01"
    assert all(PROMPT.encode() not in s["raw"] for s in got)


def test_a_failover_shows_each_attempt_and_a_stream_its_first_token(traced, collector):
    trace = "5bf92f3577b34da6a3ce929d0e0e4737"
    client(traced, trace).chat.completions.create(model="failover", messages=[{"role": "user", "content": "hi"}])
    list(client(traced, trace, "10f067aa0ba902b8").chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "one two three"}], stream=True))
    got = wait_for(collector, lambda s: len([x for x in s if x["trace_id"] == trace]) >= 5)
    mine = [s for s in got if s["trace_id"] == trace]
    failover = next(s for s in mine if s["kind"] == SERVER and s["parent_span_id"] == PARENT)
    attempts = sorted((s for s in mine if s["parent_span_id"] == failover["span_id"]),
                      key=lambda s: s["attributes"]["gatehouse.attempt"])
    assert [a["attributes"]["gatehouse.deployment"] for a in attempts] == ["gone", "up-chat"]
    assert attempts[0]["status"] == ERROR and attempts[0]["attributes"]["error.type"]
    assert attempts[1]["status"] != ERROR and failover["attributes"]["gatehouse.attempts"] == 2
    stream = next(s for s in mine if s["kind"] == SERVER and s["parent_span_id"] == "10f067aa0ba902b8")
    first = [e for e in stream["events"] if e["name"] == "gen_ai.first_token"]
    assert len(first) == 1 and stream["start"] < first[0]["time"] <= stream["end"]
    attempt = next(s for s in mine if s["parent_span_id"] == stream["span_id"])
    assert attempt["attributes"]["gatehouse.streamed"] is True
    assert attempt["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]  # read by the stream's relay
    assert "gen_ai.response.finish_reasons" not in attempts[0]["attributes"]  # the failed attempt
    assert [e["name"] for e in attempt["events"]] == ["gen_ai.first_token"]


def test_finish_reasons_of_translated_answers(traced, collector):
    """An Anthropic client on the OpenAI upstream: the answer is translated, and the attempt's
    finish reasons come from its canonical stop reason (unary and streamed)."""
    import anthropic

    trace = "cbf92f3577b34da6a3ce929d0e0e4739"
    c = anthropic.Anthropic(base_url=traced.url, api_key=ALICE_KEY, max_retries=0,
                            default_headers={"traceparent": f"00-{trace}-{PARENT}-01"})
    said = [{"role": "user", "content": "one two"}]
    assert c.messages.create(model="chat", max_tokens=50, messages=said).stop_reason == "end_turn"
    with c.messages.stream(model="chat", max_tokens=50, messages=said) as stream:
        assert stream.get_final_message().stop_reason == "end_turn"
    got = wait_for(collector, lambda s: len([x for x in s if x["trace_id"] == trace and x["kind"] == CLIENT]) >= 2)
    attempts = [s for s in got if s["trace_id"] == trace and s["kind"] == CLIENT]
    assert sorted(a["attributes"]["gatehouse.streamed"] for a in attempts) == [False, True]
    assert [a["attributes"]["gen_ai.response.finish_reasons"] for a in attempts] == [["stop"], ["stop"]]


def test_refusals_are_traced_too(traced, collector):
    trace = "6bf92f3577b34da6a3ce929d0e0e4738"
    with pytest.raises(openai.NotFoundError):
        client(traced, trace).chat.completions.create(model="no-such", messages=[{"role": "user", "content": "x"}])
    got = wait_for(collector, lambda s: any(x["trace_id"] == trace for x in s))
    span = next(s for s in got if s["trace_id"] == trace)
    assert span["attributes"]["http.response.status_code"] == 404 and span["attributes"]["error.type"]
    assert not [s for s in got if s["parent_span_id"] == span["span_id"]]  # no upstream attempt


def test_tracing_off_sends_no_trace_context_upstream(openai_upstream, recorder, collector, start_gatehouse):
    before = len(collector.recorder.requests)
    gh = start_gatehouse(observed_config(openai_upstream.url), env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    client(gh).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert "traceparent" not in recorder.last.headers
    gh.stop()
    assert len(collector.recorder.requests) == before
    assert "opentelemetry" not in (gh.logs() + gh.output())


@pytest.mark.parametrize("bad", ["garbage", f"00-{'0' * 32}-{PARENT}-01", f"ff-{TRACE}-{PARENT}-01",
                                 f"00-{TRACE.upper()}-{PARENT}-01"])
def test_a_malformed_traceparent_starts_a_new_trace(traced, collector, bad):
    c = openai.OpenAI(base_url=traced.url + "/v1", api_key=ALICE_KEY, max_retries=0,
                      default_headers={"traceparent": bad, "x-request-id": f"bad-tp-{len(bad)}-{bad[:2]}"})
    before = {s["span_id"] for s in wait_for(collector, lambda s: True, 0)}
    c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    got = wait_for(collector, lambda s: any(x["kind"] == SERVER and x["span_id"] not in before for x in s))
    new = [s for s in got if s["kind"] == SERVER and s["span_id"] not in before]
    assert len(new) == 1 and new[0]["parent_span_id"] == "" and new[0]["trace_id"] != TRACE


def _one_traced_request(gh, collector, recorder, trace: str) -> tuple[dict, dict]:
    client(gh, trace).chat.completions.create(model="chat", messages=[{"role": "user", "content": PROMPT}])
    got = wait_for(collector, lambda s: len([x for x in s if x["trace_id"] == trace]) >= 2)
    request = next(s for s in got if s["trace_id"] == trace and s["kind"] == SERVER)
    attempt = next(s for s in got if s["trace_id"] == trace and s["kind"] == CLIENT)
    assert request["parent_span_id"] == PARENT and attempt["parent_span_id"] == request["span_id"]
    assert request["attributes"]["gatehouse.consumer"] == "alice"
    assert attempt["attributes"]["gen_ai.response.model"] == "up-chat"
    assert recorder.last.headers["traceparent"] == f"00-{trace}-{attempt['span_id']}-01"
    assert all(PROMPT.encode() not in s["raw"] for s in got)
    return request, attempt


def test_otlp_json_export(openai_upstream, recorder, collector, start_gatehouse):
    cfg = observed_config(openai_upstream.url)
    cfg["tracing"] = {"enabled": True, "protocol": "http/json", "endpoint": collector.url + "/v1/traces"}
    gh = start_gatehouse(cfg, env={"OTEL_BSP_SCHEDULE_DELAY": "50"})
    trace = "7bf92f3577b34da6a3ce929d0e0e4739"
    _one_traced_request(gh, collector, recorder, trace)
    assert any(r.headers["content-type"] == "application/json" for r in collector.recorder.requests)


def test_otlp_grpc_export_configured_by_otel_variables_and_sampling(openai_upstream, recorder, start_gatehouse):
    """Nothing in the YAML but `enabled`: protocol, endpoint, headers, service name, resource
    and sampler from the standard variables. The ratio 0 keeps no new trace, but a client's
    sampled trace is kept (parent-based) and an unsampled one still goes upstream, flagged 00."""
    with GrpcCollector() as grpc_collector:
        cfg = observed_config(openai_upstream.url)
        cfg["tracing"] = {"enabled": True}
        gh = start_gatehouse(cfg, env={
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_collector.url, "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cr%20t",
            "OTEL_SERVICE_NAME": "from-env", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0",
            "OTEL_BSP_SCHEDULE_DELAY": "50"})
        openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}])
        unsampled = recorder.last.headers["traceparent"]
        assert unsampled.startswith("00-") and unsampled.endswith("-00")
        trace = "8bf92f3577b34da6a3ce929d0e0e4730"
        request, _ = _one_traced_request(gh, grpc_collector, recorder, trace)
        assert request["resource"]["service.name"] == "from-env" and request["scope"] == "gatehouse"
        assert request["resource"]["deployment.environment"] == "test"
        assert grpc_collector.exports[-1][1]["x-api-key"] == "s3cr t"
        gh.stop()  # flushes: the unsampled trace never arrives
        assert not [s for s in wait_for(grpc_collector, lambda s: True, 0) if s["trace_id"] == unsampled[3:35]]


def test_settings_yaml_then_otel_variables_then_defaults():
    assert settings(TracingConfig(enabled=True), {}).endpoint == "http://localhost:4318/v1/traces"
    assert settings(TracingConfig(enabled=True, protocol="grpc"), {}).endpoint == "http://localhost:4317"
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
    s = settings(TracingConfig(enabled=True), base)
    assert (s.endpoint, s.protocol) == ("http://c:4318/v1/traces", "http/json")
    s = settings(TracingConfig(enabled=True), {**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x"})
    assert s.endpoint == "http://t/x"  # the signal's own variable is used as it is
    s = settings(TracingConfig(enabled=True, protocol="http/protobuf", endpoint="http://y/v1/traces",
                               headers={"a": "yaml"}, sample_ratio=0.25),
                 {**base, "OTEL_EXPORTER_OTLP_HEADERS": "a=env,b=env", "OTEL_TRACES_SAMPLER": "always_off"})
    assert (s.protocol, s.endpoint, s.headers) == ("http/protobuf", "http://y/v1/traces", {"a": "yaml", "b": "env"})
    assert (s.sampler.ratio, s.sampler.parent_based) == (0.25, True)
    s = settings(TracingConfig(enabled=True), {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5",
                                               "OTEL_EXPORTER_OTLP_TIMEOUT": "2500"})
    assert (s.sampler.ratio, s.sampler.parent_based, s.timeout) == (0.5, False, 2.5)


def test_both_encodings_parse_as_the_same_request():
    """The hand-written encoders against opentelemetry-proto's generated classes: every value
    type, a negative int, non-ASCII text, an event and an error status."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    layouts = {SERVER: (("s", "b", "none", "f"), ("i", "big", "d", "nothing")), CLIENT: ((), ())}
    span = (0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331, 0, "POST chat", SERVER, 1, 2 ** 63,
            ("grüße \"x\"", True, None, False), (-3, 2 ** 62, 0.125, None), 7, True)
    child = (span[0], 0x00f067aa0ba902b7, span[1], "chat m", CLIENT, 3, 4, (), (), None, False)
    resource, scope = {"service.name": "s"}, ("gatehouse", "1")
    pb = ExportTraceServiceRequest.FromString(ProtobufEncoder(resource, scope, layouts).encode([span, child, span]))
    js = parse_json(JsonEncoder(resource, scope, layouts).encode([span, child, span]))
    assert pb == js
    s = pb.resource_spans[0].scope_spans[0].spans[0]
    assert s.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c" and s.end_time_unix_nano == 2 ** 63
    assert s.span_id.hex() == "b7ad6b7169203331" and not s.parent_span_id and s.status.code == ERROR
    assert [a.key for a in s.attributes] == ["s", "b", "f", "i", "big", "d"]  # None: left out
    assert {a.key: a.value.WhichOneof("value") for a in s.attributes}["i"] == "int_value"
    assert pb.resource_spans[0].scope_spans[0].spans[2] == s  # the second time from the caches
    assert [a.value.int_value for a in s.attributes if a.key == "i"] == [-3]
    assert s.attributes[0].value.string_value == "grüße \"x\"" and s.events[0].time_unix_nano == 7
    assert pb.resource_spans[0].scope_spans[0].spans[1].parent_span_id.hex() == "b7ad6b7169203331"
    assert pb.resource_spans[0].scope_spans[0].spans[1].span_id.hex() == "00f067aa0ba902b7"  # leading zeros kept


def test_cached_attribute_values_keep_their_type():
    """Equal values of different types (1, True, 1.0) in one attribute, one after another: each
    is encoded as its own type, not as the cached encoding of the one before."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    layouts = {SERVER: ((), ("v",)), CLIENT: ((), ())}
    spans = [(0x0af7651916cd43dd8448eb211c80319c, i + 1, 0, "s", SERVER, 1, 2, (), (v,), None, False)
             for i, v in enumerate((1, True, 1.0, 1, True))]
    resource, scope = {"service.name": "s"}, ("gatehouse", "1")
    for body in (ProtobufEncoder(resource, scope, layouts).encode(spans),
                 JsonEncoder(resource, scope, layouts).encode(spans)):
        pb = ExportTraceServiceRequest.FromString(body) if body[:1] != b"{" else parse_json(body)
        kinds = [s.attributes[0].value.WhichOneof("value") for s in pb.resource_spans[0].scope_spans[0].spans]
        assert kinds == ["int_value", "bool_value", "double_value", "int_value", "bool_value"]


def test_spans_that_never_reach_the_collector_are_counted_in_metrics():
    """A full queue drops spans (never waits); a failed export drops its batch: both counted in
    gatehouse_trace_spans_dropped_total, by reason."""
    from prometheus_client import generate_latest

    from gatehouse.gateway.exchange import Exchange
    from gatehouse.observability.metrics import Metrics
    from gatehouse.observability.tracing import Tracing
    from tests.upstreams.harness import free_port

    tracing = Tracing(TracingConfig(enabled=True, endpoint=f"http://127.0.0.1:{free_port()}/v1/traces"),
                      {"OTEL_BSP_MAX_QUEUE_SIZE": "1"})
    metrics = Metrics(["m"], [], ["p"], lambda: 0.0)
    metrics.track_tracing(tracing.exporter)
    for i in range(3):  # three requests, each a new trace, ended without an upstream attempt
        ex = Exchange(f"r{i}", "chat", "openai")
        tracing.start(ex, None)
        tracing.end_request(ex, "POST", "/v1/chat/completions", time.monotonic())
    tracing.close()  # the one queued span: its export fails (nothing listens)
    text = generate_latest(metrics.registry).decode()
    assert 'gatehouse_trace_spans_dropped_total{reason="queue_full"} 2.0' in text
    assert 'gatehouse_trace_spans_dropped_total{reason="export_failed"} 1.0' in text


def test_queued_items_encode_as_their_spans_in_both_formats():
    """The export thread's fast path (otlp_items.encode_items) against the reference (span_of,
    then the encoders' generic `span`): the same bytes, for items the real hooks queued — a
    client's trace and a new one, a streamed attempt with its first token, a failed attempt, a
    request refused before any attempt (no principal, no usage) — twice (the second time from
    the caches). The protobuf also parses as the spans the hooks were given."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from gatehouse.config import from_mapping
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.metering.record import LedgerRecord
    from gatehouse.observability.otlp_items import LAYOUTS, encode_items, span_of
    from gatehouse.observability.tracing import Tracing
    from gatehouse.policy.guardrails.audit import Outcome
    from gatehouse.policy.principal import Principal
    from gatehouse.providers.registry import PROVIDERS
    from gatehouse.routing.table import Deployment
    from gatehouse.types import Usage
    from gatehouse.upstream.client import HttpPool
    from tests.upstreams.harness import free_port

    cfg = from_mapping({"providers": {"up": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
                        "models": [{"name": "m", "deployments": [{"provider": "up", "model": "up-m"}]}]}, {})
    dep = Deployment("up", PROVIDERS["openai"]("up", cfg.providers["up"], HttpPool()), "up-m")
    tracing = Tracing(TracingConfig(enabled=True, endpoint=f"http://127.0.0.1:{free_port()}/v1/traces"),
                      {"OTEL_BSP_SCHEDULE_DELAY": "3600000"})
    alice = Principal("alice", "dev", "k1", None)
    for traceparent, stream, status, error in ((f"00-{TRACE}-{PARENT}-01", True, 200, None),
                                               (None, False, 502, "upstream_error")):
        ex = Exchange("r", "chat", "openai")
        ex.model, ex.stream, ex.principal = "m", stream, alice
        tracing.start(ex, traceparent)
        tracing.begin_attempt(ex, dep)
        assert ex.traceparent is not None and ex.traceparent.endswith("-01")
        rec = LedgerRecord(id="a", request_id="r", attempt=1, ts=0.0, consumer="alice", model="m", surface="chat",
                           group="dev", deployment="up-m", provider="up", status=status, error_type=error,
                           input_tokens=12, output_tokens=0 if error else 20, cost_usd=0.00025, latency_ms=2.5,
                           ttft_ms=1.25 if stream else None, streamed=stream, estimated=bool(error),
                           route="primary" if stream else None)
        ex.finish_reasons = ("stop",) if stream else None
        tracing.end_attempt(ex, rec, ex.started + 0.001)
        ex.status, ex.attempts, ex.cost_usd, ex.deployment, ex.error_type = status, 1, 0.00025, "up-m", error
        ex.usage = Usage(input_tokens=12, output_tokens=20) if not error else None
        ex.first_token_at = ex.started + 0.00225 if stream else None
        if stream:  # a guard model's verdict, and what the guardrails did
            tracing.policy_span(ex, "guardrail g", ex.started, ("guardrails", None, None, "chat", "guard-m", "g",
                                                                "input", "match", "flag", None))
            ex.guard_outcome = Outcome((("email", "input", "match", "redact", "pii", "p"),
                                        ("g", "input", "match", "flag", "guard_model:S2", "p"),
                                        ("g", "output", "skipped", "block", "guard_model", "p")))
        tracing.end_request(ex, "POST", "/v1/chat/completions", ex.started + 0.004)
    refused = Exchange("r", "chat", "openai")
    tracing.start(refused, None)
    refused.status, refused.error_type = 404, "model_not_found"
    tracing.end_request(refused, "POST", "/v1/chat/completions", time.monotonic())
    items = list(tracing.exporter.queue)
    tracing.exporter.queue.clear()
    tracing.close()
    assert [i[0] for i in items] == [CLIENT, INTERNAL, SERVER, CLIENT, SERVER, SERVER]
    resource, scope = {"service.name": "s"}, ("gatehouse", "1")
    for encoder in (ProtobufEncoder, JsonEncoder):
        fast = encode_items(encoder(resource, scope, LAYOUTS), items + items)
        assert fast == encoder(resource, scope, LAYOUTS).encode([span_of(i) for i in items + items])
    spans = ExportTraceServiceRequest.FromString(
        encode_items(ProtobufEncoder(resource, scope, LAYOUTS), items)).resource_spans[0].scope_spans[0].spans
    attempt, guard, request = spans[0], spans[1], spans[2]
    assert guard.kind == INTERNAL and guard.name == "guardrail g" and guard.parent_span_id == request.span_id
    g = {x.key: x.value.string_value for x in guard.attributes}
    assert g == {"gatehouse.policy.step": "guardrails", "gen_ai.operation.name": "chat",
                 "gen_ai.request.model": "guard-m", "gatehouse.guardrail.check": "g",
                 "gatehouse.guardrail.stage": "input", "gatehouse.guardrail.verdict": "match",
                 "gatehouse.outcome": "flag"}
    r = {x.key: x.value for x in request.attributes}
    assert r["gatehouse.guardrail.action"].string_value == "redact"  # the strongest of the matches
    assert r["gatehouse.guardrail.matches"].string_value == "email:input:redact,g:input:flag"
    assert request.trace_id.hex() == TRACE and request.parent_span_id.hex() == PARENT
    assert attempt.parent_span_id == request.span_id and attempt.trace_id == request.trace_id
    assert attempt.end_time_unix_nano - attempt.start_time_unix_nano == 2_500_000
    assert attempt.events[0].time_unix_nano - attempt.start_time_unix_nano == 1_250_000
    a = {x.key: x.value for x in attempt.attributes}
    assert a["gen_ai.provider.name"].string_value == "openai" and a["gatehouse.streamed"].bool_value
    assert a["gatehouse.route"].string_value == "primary"
    assert [v.string_value for v in a["gen_ai.response.finish_reasons"].array_value.values] == ["stop"]
    assert a["gatehouse.cost_usd"].double_value == 0.00025 and a["gen_ai.usage.output_tokens"].int_value == 20
    failed = spans[3]
    assert not {"gatehouse.route", "gen_ai.response.finish_reasons"} & {x.key for x in failed.attributes}
    assert failed.status.code == ERROR and not spans[4].parent_span_id and spans[4].status.code == ERROR
    assert {x.key for x in spans[5].attributes} == {"http.request.method", "url.path", "gatehouse.surface",
                                                    "error.type", "http.response.status_code",
                                                    "gatehouse.attempts", "gatehouse.cost_usd"}


def test_a_full_batch_is_sent_alone_and_the_rest_waits_for_the_next_or_the_delay(collector):
    """Woken by a full batch (OTEL_BSP_MAX_EXPORT_BATCH_SIZE), the export thread sends full
    batches only: spans queued meanwhile wait for the next full batch or the schedule delay (or
    the flush at shutdown), instead of going out at once as a train of small exports."""
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.observability.tracing import Tracing
    from tests.observability.otlp_collector import requests

    tracing = Tracing(TracingConfig(enabled=True, endpoint=collector.url + "/v1/traces"),
                      {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4", "OTEL_BSP_SCHEDULE_DELAY": "3600000"})
    trace = "9bf92f3577b34da6a3ce929d0e0e4731"
    before = len(requests(collector))
    for i in range(6):
        ex = Exchange(f"r{i}", "chat", "openai")
        tracing.start(ex, f"00-{trace}-{PARENT}-01")
        ex.status = 200
        tracing.end_request(ex, "POST", "/v1/chat/completions", time.monotonic())
    wait_for(collector, lambda s: len([x for x in s if x["trace_id"] == trace]) >= 4)
    time.sleep(0.3)  # the two others are not sent on their own
    sent = [len(r.resource_spans[0].scope_spans[0].spans) for r in requests(collector)[before:]]
    assert sent == [4]
    tracing.close()  # the flush at shutdown sends them
    sent = [len(r.resource_spans[0].scope_spans[0].spans) for r in requests(collector)[before:]]
    assert sent == [4, 2]
