"""TLS contexts built from config: the listener's (HTTPS, optional mutual TLS, reloaded when
its files change) and each provider's for https upstreams (custom CA bundle, client cert).

Listener reload: the server is created with one `front` context whose SNI callback hands
every new handshake the current context (`ssl_object.context = current`). A reload builds a
whole new context from the files and swaps one reference, so certificate, key and client CA
all change together for new connections; connections already open keep theirs. A file that
fails to load is logged and the old context keeps serving.
"""
from __future__ import annotations

import logging
import os
import ssl
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatehouse.config.schema import ProviderConfig, TlsConfig

log = logging.getLogger("gatehouse.tls")


def server_context(cfg: TlsConfig) -> ssl.SSLContext:
    """A server context from the files: TLS 1.2 or newer, HTTP/1.1 over ALPN, and client
    certificates required (verified against client_ca_file) when that is set."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    if cfg.client_ca_file:
        ctx.load_verify_locations(cafile=cfg.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def client_context(cfg: ProviderConfig) -> ssl.SSLContext | None:
    """The context for a provider's https upstream, or None when it sets no TLS field (the
    system trust store then applies, as for any https call)."""
    if not (cfg.ca_file or cfg.client_cert_file):
        return None
    ctx = ssl.create_default_context(cafile=cfg.ca_file)  # verifies the peer and its host name
    if cfg.client_cert_file:
        ctx.load_cert_chain(cfg.client_cert_file, cfg.client_key_file)
    return ctx


def file_problem(err: Exception) -> str:
    """What went wrong loading a TLS file, in words (config checks and reload logs)."""
    if isinstance(err, OSError) and err.strerror and not isinstance(err, ssl.SSLError):
        return f"cannot read it: {err.strerror}"
    return f"not a usable PEM certificate/key: {getattr(err, 'reason', None) or err}"


def _stamp(paths: list[str]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)


class ListenerTls:
    """The listener's TLS: `front` goes to the server; `check()` (from a watcher thread, so no
    file I/O runs on the event loop) swaps in a context rebuilt from changed files."""

    def __init__(self, cfg: TlsConfig):
        self.cfg = cfg
        self.paths = [p for p in (cfg.cert_file, cfg.key_file, cfg.client_ca_file) if p]
        self.stamp = _stamp(self.paths)
        self.current = server_context(cfg)
        self.front = server_context(cfg)
        self.front.sni_callback = self._select
        self.generation = 1  # contexts loaded so far
        self._stop = threading.Event()

    def _select(self, ssl_object: Any, server_name: str | None, front: ssl.SSLContext) -> None:
        ssl_object.context = self.current  # every handshake, with or without SNI

    def check(self) -> bool:
        """Reload when a file changed; True when a new context was swapped in."""
        stamp = _stamp(self.paths)
        if stamp == self.stamp:
            return False
        self.stamp = stamp  # a broken file is reported once, not at every check
        try:
            ctx = server_context(self.cfg)
        except (OSError, ValueError) as e:
            log.error("TLS files changed but cannot be loaded (%s); still serving the previous certificate",
                      file_problem(e))
            return False
        self.current = ctx
        self.generation += 1
        log.info("TLS certificate reloaded from %s (generation %d)", self.cfg.cert_file, self.generation)
        return True

    def start_watching(self) -> None:
        if self.cfg.reload_seconds > 0:
            threading.Thread(target=self._watch, name="gatehouse-tls-reload", daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(self.cfg.reload_seconds):
            try:
                self.check()
            except Exception as e:
                log.error("TLS reload check failed: %s", type(e).__name__)

    def stop(self) -> None:
        self._stop.set()
