"""HTTPS on the listener (server.tls): gatehouse on a real socket with certificates from a test
CA, reached by the openai SDK with a custom CA bundle, curl, and raw TLS sockets; mutual TLS
refusing clients without a certificate from the client CA; certificates rotated on disk and
picked up by new connections while open ones carry on."""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gatehouse.config import ConfigError, from_mapping
from tests.conftest import ALICE_KEY, base_config
from tests.support import Gatehouse
from tests.tls_certs import TestCA

CHAT = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})


class TlsGatehouse(Gatehouse):
    """Gatehouse with server.tls (in the test process, as `gatehouse serve` wires it); `probe` is
    the context a client that trusts the server CA uses."""

    def __init__(self, config: dict[str, Any], home: Path, probe: ssl.SSLContext):
        super().__init__(config, home)
        self.probe = probe

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def client_ctx(ca: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def raw_request(ctx: ssl.SSLContext, port: int, requests: list[bytes]) -> tuple[ssl.SSLSocket, list[bytes]]:
    """Send requests on one TLS connection (kept open and returned) and read each answer."""
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
    return sock, [exchange(sock, r) for r in requests]


def exchange(sock: ssl.SSLSocket, request: bytes) -> bytes:
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def chat_request(key: str = ALICE_KEY) -> bytes:
    body = CHAT.encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %b\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (key.encode(), len(body), body))


HEALTH = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


def refused(ctx: ssl.SSLContext, port: int) -> bool:
    """True when no HTTP answer comes back over a connection made with `ctx`."""
    try:
        sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
        with sock:
            return not exchange(sock, HEALTH).startswith(b"HTTP/1.1 200")
    except (ssl.SSLError, OSError):
        return True


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    server_ca = TestCA(tmp_path / "pki", "server-ca")
    cert, key = server_ca.issue("gateway")
    client_ca = TestCA(tmp_path / "pki", "client-ca")
    return {"server_ca": server_ca, "cert": cert, "key": key, "client_ca": client_ca,
            "client": client_ca.issue("alice-laptop", client=True),
            "stranger": TestCA(tmp_path / "pki", "other-ca").issue("mallory", client=True)}


@pytest.fixture
def tls_gatehouse(tmp_path: Path, openai_upstream):
    started: list[TlsGatehouse] = []

    def start(tls: dict[str, Any], probe: ssl.SSLContext) -> TlsGatehouse:
        cfg = base_config(openai_upstream.url, server={"max_body_bytes": 65536, "tls": tls})
        gh = TlsGatehouse(cfg, tmp_path / f"home{len(started)}", probe).start()
        started.append(gh)
        return gh

    yield start
    for gh in started:
        gh.stop()


def test_https_with_the_openai_sdk_curl_and_a_raw_tls_socket(pki, tls_gatehouse):
    ca = pki["server_ca"].pem
    gh = tls_gatehouse({"cert_file": str(pki["cert"]), "key_file": str(pki["key"])}, client_ctx(ca))
    assert f"gatehouse listening on https://127.0.0.1:{gh.port}" in gh.logs()

    # The openai SDK with the CA bundle, as its docs show it (an httpx client with verify=path).
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0,
                           http_client=httpx.Client(verify=client_ctx(ca)))
    reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "over tls"}])
    assert reply.choices[0].message.content == "echo: over tls"
    stream = client.chat.completions.create(model="echo", stream=True,
                                            messages=[{"role": "user", "content": "streamed"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: streamed"
    # A pass-through stream from a plain-http upstream: relayed by the splice onto the TLS transport.
    stream = client.chat.completions.create(model="chat", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "spliced over tls"}])
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: spliced over tls"
    assert chunks[-1].usage is not None
    # Without the CA the server's certificate is not trusted.
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0).models.list()

    # curl with --cacert
    out = subprocess.run(["curl", "-sS", "--cacert", str(ca), f"{gh.url}/v1/chat/completions",
                          "-H", f"Authorization: Bearer {ALICE_KEY}", "-H", "Content-Type: application/json",
                          "-d", CHAT], capture_output=True, text=True, timeout=20)
    assert json.loads(out.stdout)["choices"][0]["message"]["content"] == "echo: hi", out.stderr

    # A raw TLS socket: TLS 1.2+, HTTP/1.1 over ALPN, keep-alive across requests.
    ctx = client_ctx(ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    sock, answers = raw_request(ctx, gh.port, [HEALTH, chat_request(), HEALTH])
    with sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        assert sock.selected_alpn_protocol() == "http/1.1"
        assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 3
        assert b'"echo: hi"' in answers[1]
    # TLS 1.1 is refused; so is plain HTTP on the TLS port.
    old = client_ctx(ca)
    with warnings.catch_warnings():  # (TLS 1.1 is deprecated: that is the point)
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    assert refused(old, gh.port)
    with socket.create_connection(("127.0.0.1", gh.port), timeout=5) as plain:
        plain.sendall(HEALTH)
        try:
            answer = plain.recv(100)
        except OSError:
            answer = b""
        assert not answer.startswith(b"HTTP/1.1 200")


def test_mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca(pki, tls_gatehouse):
    ca, good = pki["server_ca"].pem, pki["client"]
    gh = tls_gatehouse({"cert_file": str(pki["cert"]), "key_file": str(pki["key"]),
                        "client_ca_file": str(pki["client_ca"].pem)}, client_ctx(ca, good))
    assert "mutual TLS" in gh.logs()
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0,
                           http_client=httpx.Client(verify=client_ctx(ca, good)))
    assert client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "mtls"}]).choices[0].message.content == "echo: mtls"
    # No client certificate: refused, before any HTTP (by the SDK and by a raw socket).
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0,
                      http_client=httpx.Client(verify=client_ctx(ca))).models.list()
    assert refused(client_ctx(ca), gh.port)
    # A certificate from another CA: refused too.
    assert refused(client_ctx(ca, pki["stranger"]), gh.port)
    # The certificate is transport trust; the gateway key is still required on top.
    sock, answers = raw_request(client_ctx(ca, good), gh.port, [chat_request("not-a-key"), HEALTH])
    sock.close()
    assert answers[0].startswith(b"HTTP/1.1 401") and answers[1].startswith(b"HTTP/1.1 200")
    assert "Traceback" not in gh.logs() and "ssl" not in gh.logs().lower()  # refused handshakes: no log noise
    client.close()


def test_rotated_certificate_reaches_new_connections_and_a_broken_file_keeps_the_old(pki, tls_gatehouse, tmp_path):
    old_ca = pki["server_ca"]
    gh = tls_gatehouse({"cert_file": str(pki["cert"]), "key_file": str(pki["key"]), "reload_seconds": 0.1},
                       client_ctx(old_ca.pem))
    kept, answers = raw_request(client_ctx(old_ca.pem), gh.port, [HEALTH])
    first_cert = kept.getpeercert(binary_form=True)

    new_ca = TestCA(tmp_path / "pki2", "server-ca-2026")
    staged = new_ca.issue("gateway", cert_path=tmp_path / "new.pem", key_path=tmp_path / "new.key")
    os.replace(staged[1], pki["key"])  # (as a Kubernetes secret or cert-manager renews: files replaced)
    os.replace(staged[0], pki["cert"])
    deadline = time.monotonic() + 10
    while refused(client_ctx(new_ca.pem), gh.port):
        assert time.monotonic() < deadline, gh.logs()
        time.sleep(0.1)
    fresh, _ = raw_request(client_ctx(new_ca.pem), gh.port, [HEALTH])
    assert fresh.getpeercert(binary_form=True) != first_cert
    fresh.close()
    assert refused(client_ctx(old_ca.pem), gh.port)  # new connections get the new certificate only
    with kept:  # the connection opened before the rotation carries on
        assert exchange(kept, chat_request()).startswith(b"HTTP/1.1 200")
    assert "TLS certificate reloaded" in gh.logs()

    pki["cert"].write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    deadline = time.monotonic() + 10
    while "cannot be loaded" not in gh.logs():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not refused(client_ctx(new_ca.pem), gh.port)  # still serving the last good certificate
    assert "BEGIN" not in gh.logs()


def test_check_names_a_missing_or_broken_tls_file(pki, tmp_path):
    good = {"cert_file": str(pki["cert"]), "key_file": str(pki["key"])}
    from_mapping({"server": {"tls": good}})
    with pytest.raises(ConfigError, match=r"server\.tls\.cert_file: no such file"):
        from_mapping({"server": {"tls": {**good, "cert_file": str(tmp_path / "missing.pem")}}})
    with pytest.raises(ConfigError, match=r"server\.tls\.client_ca_file: no such file"):
        from_mapping({"server": {"tls": {**good, "client_ca_file": str(tmp_path / "missing-ca.pem")}}})
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    with pytest.raises(ConfigError, match=r"server\.tls: not a usable PEM"):
        from_mapping({"server": {"tls": {**good, "key_file": str(junk)}}})
    other_key = pki["client"][1]  # a key that does not match the certificate
    with pytest.raises(ConfigError, match=r"server\.tls: not a usable PEM"):
        from_mapping({"server": {"tls": {**good, "key_file": str(other_key)}}})
    with pytest.raises(ConfigError, match=r"server\.tls\.cert_file: required field is missing"):
        from_mapping({"server": {"tls": {"key_file": str(pki["key"])}}})


def test_curl_is_available() -> None:
    assert shutil.which("curl"), "curl is needed by the TLS tests (make test installs it)"


def test_an_idle_tls_keep_alive_connection_does_not_hold_a_graceful_shutdown(pki, tmp_path, openai_upstream):
    ca = pki["server_ca"].pem
    cfg = base_config(openai_upstream.url, server={"shutdown_grace_seconds": 20,
                                                   "tls": {"cert_file": str(pki["cert"]), "key_file": str(pki["key"])}})
    gh = TlsGatehouse(cfg, tmp_path / "home", client_ctx(ca)).start()
    idle, answers = raw_request(client_ctx(ca), gh.port, [HEALTH])  # kept open, never closed by the client
    assert answers[0].startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    gh.stop()
    assert time.monotonic() - started < 5, "the idle TLS connection held the shutdown"
    idle.settimeout(5)
    try:
        assert idle.recv(1) == b""  # the server closed it
    except (ssl.SSLError, OSError):
        pass  # or dropped it without close_notify: an idle connection carries no response to truncate
    idle.close()
