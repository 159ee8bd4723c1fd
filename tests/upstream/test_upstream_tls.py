"""Provider TLS for https upstreams: a custom CA bundle (`ca_file`) and a client certificate
(`client_cert_file`/`client_key_file`), against a test upstream over https that requires a
client certificate signed by its own CA."""
from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from gatehouse.config import ConfigError, from_mapping
from tests.conftest import ADMIN_KEY, ALICE_KEY
from tests.tls_certs import TestCA
from tests.upstreams import openai_wire
from tests.upstreams.harness import ServerThread


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("upstream-pki")
    server_ca, client_ca = TestCA(d, "upstream-ca"), TestCA(d, "gateway-client-ca")
    return {"server_ca": server_ca, "server": server_ca.issue("vllm"), "client_ca": client_ca,
            "client": client_ca.issue("gatehouse", client=True),
            "stranger": TestCA(d, "other-ca").issue("someone", client=True)}


@pytest.fixture(scope="module")
def https_upstream(pki: dict[str, Any]) -> Iterator[ServerThread]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["client_ca"].pem))
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no request
    ctx.load_cert_chain(str(pki["server"][0]), str(pki["server"][1]))
    with ServerThread(openai_wire.make_app, ssl_context=ctx) as srv:
        yield srv


def _provider(url: str, **tls: str) -> dict[str, Any]:
    return {"type": "openai", "base_url": f"{url}/v1", "api_key": openai_wire.API_KEY, **tls}


def test_https_upstream_with_ca_bundle_and_client_certificate(pki, https_upstream, start_gatehouse):
    url = https_upstream.url
    assert url.startswith("https://")
    ca, (cert, key) = str(pki["server_ca"].pem), pki["client"]
    providers = {
        "mtls": _provider(url, ca_file=ca, client_cert_file=str(cert), client_key_file=str(key)),
        "no-client-cert": _provider(url, ca_file=ca),
        "system-trust": _provider(url, client_cert_file=str(cert), client_key_file=str(key)),
        "wrong-client-cert": _provider(url, ca_file=ca, client_cert_file=str(pki["stranger"][0]),
                                       client_key_file=str(pki["stranger"][1])),
    }
    models = [{"name": name, "deployments": [{"provider": name, "model": "up-chat"}]} for name in providers]
    gh = start_gatehouse({"admin": {"key": ADMIN_KEY}, "providers": providers, "models": models,
                          "groups": {"dev": {"models": ["*"]}},
                          "consumers": {"alice": {"group": "dev", "keys": [ALICE_KEY]}}})
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    https_upstream.recorder.clear()
    reply = client.chat.completions.create(model="mtls", messages=[{"role": "user", "content": "over mtls"}])
    assert reply.choices[0].message.content == "echo: over mtls"
    stream = client.chat.completions.create(model="mtls", stream=True,
                                            messages=[{"role": "user", "content": "streamed"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: streamed"
    assert len(https_upstream.recorder.requests) == 2

    # The upstream refuses a gateway without a certificate, or with one from another CA; the
    # system trust store does not know the upstream's CA. Each is a 502 naming only the model.
    for model in ("no-client-cert", "system-trust", "wrong-client-cert"):
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
        assert err.value.status_code == 502, model
        text = err.value.response.text
        assert "127.0.0.1" not in text and str(https_upstream.port) not in text and model in text
    assert len(https_upstream.recorder.requests) == 2  # none of them reached the upstream's app


def test_provider_tls_fields_are_checked(pki, tmp_path: Path):
    ca, (cert, key) = str(pki["server_ca"].pem), pki["client"]

    def cfg(**prov: Any) -> dict[str, Any]:
        return {"providers": {"p": {"type": "openai", "base_url": "https://llm.internal/v1", **prov}}}

    from_mapping(cfg(ca_file=ca, client_cert_file=str(cert), client_key_file=str(key)))
    with pytest.raises(ConfigError, match=r"providers\.p\.ca_file: TLS settings apply to https upstreams only"):
        from_mapping(cfg(base_url="http://vllm:8000/v1", ca_file=ca))
    with pytest.raises(ConfigError, match=r"providers\.o\.ca_file: TLS settings apply to https upstreams only"):
        from_mapping({"providers": {"o": {"type": "ollama", "ca_file": ca}}})  # its default URL is http
    with pytest.raises(ConfigError, match=r"providers\.p\.ca_file: no such file"):
        from_mapping(cfg(ca_file=str(tmp_path / "nope.pem")))
    with pytest.raises(ConfigError, match=r"providers\.p\.client_key_file: needs client_cert_file"):
        from_mapping(cfg(client_key_file=str(key)))
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    with pytest.raises(ConfigError, match=r"providers\.p: TLS files: not a usable PEM"):
        from_mapping(cfg(ca_file=str(junk)))
