"""What of an upstream's error text survives: for the client only allow-listed types/codes,
for the operator's log the text without credentials, URLs, hosts, IPs or traces."""
from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gatehouse.upstream.error_text import client_message, retry_after, safe_kind, scrub

LEAKY = ('Invalid key "Bearer sk-proj-abcdef1234567890" (x-api-key: sk-ant-api03-XYZ_987654321) for '
         'https://api.internal.corp:8443/v1/chat at 10.1.2.3:8000 and [fe80::1] on gpu-7.llm.svc.cluster.local '
         'key=AIzaSyA1234567890abcdefgh AKIAIOSFODNN7EXAMPLE token: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n'
         'Traceback (most recent call last):\n  File "/opt/app/server.py", line 3, in f\nKeyError: secret_locals')


def test_scrub_removes_credentials_urls_hosts_ips_and_traces():
    out = scrub(LEAKY)
    for needle in ("sk-proj-abcdef", "sk-ant-api03", "api.internal.corp", "10.1.2.3", "fe80::1", "gpu-7.llm",
                   "AIzaSy", "AKIAIOSFODNN7", "eyJhbGci", "Traceback", "/opt/app", "secret_locals", "\n"):
        assert needle not in out, (needle, out)
    assert out.startswith("Invalid key") and "[stack trace removed]" in out


def test_scrub_keeps_a_plain_reason():
    assert scrub("max_tokens must be at most 4096") == "max_tokens must be at most 4096"


def test_safe_kind_only_lets_documented_values_through():
    assert safe_kind("openai", "invalid_request_error", "context_length_exceeded") == \
        "invalid_request_error / context_length_exceeded"
    assert safe_kind("openai", "internal-ref 10.9.8.7", None) is None
    assert safe_kind("bedrock", "ThrottlingException") == "ThrottlingException"
    assert safe_kind("ollama", "anything") is None
    assert safe_kind("anthropic", "rate_limit_error", "rate_limit_error") == "rate_limit_error"


def test_client_message_has_no_upstream_text():
    assert client_message("chat", 429, "rate_limit_error") == \
        "The upstream for model 'chat' is rate limiting requests (HTTP 429, rate_limit_error)."
    assert client_message("chat", 500, None, in_stream=True) == "The upstream for model 'chat' failed (in the stream)."


@pytest.mark.parametrize("value,delay,expected", [
    ("17", None, {"retry-after": "17"}),
    ("Wed, 21 Oct 2026 07:28:00 GMT", None, {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}),
    ("17; http://evil", None, {}),
    ("-1", None, {}),
    (None, "2.5s", {"retry-after": "3"}),
    (None, "soon", {}),
    (None, None, {}),
])
def test_retry_after_passes_only_well_formed_values(value, delay, expected):
    headers = CIMultiDict({"retry-after": value} if value is not None else {})
    assert retry_after(headers, delay) == expected
