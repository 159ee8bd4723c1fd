"""Each dialect's errors in one module: the upstream status classifier, the bodies and stream
error frames clients get, and the one Anthropic type table they are built from."""
from __future__ import annotations

import json

import pytest

from gatehouse.errors import (
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
    classify_upstream_status,
)
from gatehouse.wire import errors_anthropic, errors_ollama, errors_openai, errors_responses


@pytest.mark.parametrize("upstream,status,type_,code", [
    (400, 400, "invalid_request_error", "upstream_rejected"),
    (422, 400, "invalid_request_error", "upstream_rejected"),
    (404, 404, "invalid_request_error", "upstream_rejected"),
    (413, 413, "request_too_large", "upstream_rejected"),
    (429, 429, "rate_limit_error", "upstream_rate_limited"),
    (503, 503, "overloaded_error", "upstream_unavailable"),
    (529, 503, "overloaded_error", "upstream_unavailable"),
    (401, 502, "upstream_error", "upstream_error"),
    (403, 502, "upstream_error", "upstream_error"),
    (500, 502, "upstream_error", "upstream_error"),
    (302, 502, "upstream_error", "upstream_error"),
])
def test_an_upstream_status_is_classified_once(upstream, status, type_, code):
    err = classify_upstream_status(upstream, "m", upstream_type="t", headers={"retry-after": "3"})
    assert isinstance(err, UpstreamStatus) and isinstance(err, UpstreamError)
    assert (err.status, err.type, err.code) == (status, type_, code)
    assert (err.upstream_status, err.upstream_type, err.headers) == (upstream, "t", {"retry-after": "3"})


def test_a_code_given_to_the_classifier_names_the_failure():
    err = classify_upstream_status(403, "m", code="upstream_auth_failed")
    assert (err.status, err.code) == (502, "upstream_auth_failed")
    assert classify_upstream_status(403, "m").code == "upstream_error"  # the class's code is untouched


def test_openai_body_and_stream_frame():
    err = RateLimited("slow down", param="model")
    assert errors_openai.body(err) == {"error": {"message": "slow down", "type": "rate_limit_error",
                                                 "param": "model", "code": "rate_limit_exceeded"}}
    frame = errors_openai.stream_frame("boom", "upstream_error")
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert json.loads(frame[6:]) == {"error": {"message": "boom", "type": "upstream_error", "param": None,
                                               "code": None}}


def test_openai_error_kinds_read_every_known_envelope():
    assert errors_openai.error_kinds(b'{"error":{"type":"invalid_request_error","code":"x"}}') == \
        ("invalid_request_error", "x")
    assert errors_openai.error_kinds(b'{"error":"bad","error_type":"validation"}') == ("validation",)
    assert errors_openai.error_kinds(b"not json") == ()


def test_anthropic_type_table_is_one_table_both_ways():
    for kind, status in errors_anthropic.ERROR_STATUS.items():
        assert errors_anthropic.TYPE_FOR_STATUS[status] == kind
    assert errors_anthropic.body(UpstreamTimeout("late")) == \
        {"type": "error", "error": {"type": "timeout_error", "message": "late"}}
    busy = ServiceUnavailable("busy")
    assert errors_anthropic.body(busy)["error"]["type"] == "overloaded_error"
    assert errors_anthropic.status_for(busy) == 529


def test_anthropic_stream_frame_names_only_anthropic_types():
    frame = errors_anthropic.stream_frame("boom", "upstream_error")
    assert frame.startswith(b"event: error\ndata: ") and frame.endswith(b"\n\n")
    assert json.loads(frame.split(b"data: ", 1)[1]) == {"type": "error",
                                                         "error": {"type": "api_error", "message": "boom"}}
    assert b'"rate_limit_error"' in errors_anthropic.stream_frame("x", "rate_limit_error")


def test_anthropic_stream_error_keeps_the_status_its_type_stands_for():
    err = errors_anthropic.stream_error("overloaded_error", "secret text", "m")
    assert (err.status, err.type) == (503, "overloaded_error") and "secret text" not in err.message
    assert errors_anthropic.stream_error("made_up", "x", "m").status == 502


def test_ollama_body_and_stream_line():
    err = UpstreamError("gone")
    assert errors_ollama.body(err) == {"error": "gone"}
    assert errors_ollama.stream_frame("gone") == b'{"error":"gone"}\n'


def test_responses_failure_codes():
    assert errors_responses.failure("x", "rate_limit_error") == {"code": "rate_limit_exceeded", "message": "x"}
    assert errors_responses.failure("x", "upstream_error") == {"code": "server_error", "message": "x"}
