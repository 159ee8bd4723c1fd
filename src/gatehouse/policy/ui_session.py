"""Admin UI sessions: a signed cookie, a CSRF token bound to it, and throttled sign-in.

The cookie carries its role, expiry and a random nonce, signed with a key derived from the
gateway's HMAC secret. Any replica can check it, and nothing is stored. The admin key itself
never reaches the browser's storage. It is sent once, to sign in. A state-changing request must
also carry `x-csrf-token`, an HMAC of the session's nonce. The page reads it from
`GET /ui/session`. A cross-site form or script cannot read it, and `SameSite=Strict` keeps the
cookie off cross-site requests anyway.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

COOKIE = "gh_ui"
SAFE_METHODS = frozenset({"GET", "HEAD"})
ROLE_ADMIN = "admin"
ROLE_READ_ONLY = "read_only"  # GET admin routes only (an ID token mapped by ui.read_only_values)
_MAX_TRACKED_CLIENTS = 10_000


class UiSessions:
    def __init__(self, secret: str, ttl_seconds: float, attempts_per_minute: int):
        self.key = hmac.new(secret.encode(), b"gatehouse-ui-session", hashlib.sha256).digest()
        self.ttl = ttl_seconds
        self.attempts_per_minute = attempts_per_minute
        self.failures: dict[str, list[float]] = {}

    # ---- cookie ----------------------------------------------------------------------------

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self.key, payload, hashlib.sha256).hexdigest()

    def issue(self, role: str, now: float | None = None, subject: str | None = None) -> str:
        """`subject`: who signed in with an ID token (its `sub`), named in the audit log."""
        fields = {"r": role, "exp": (now or time.time()) + self.ttl, "n": os.urandom(16).hex()}
        if subject:
            fields["s"] = subject
        body = json.dumps(fields, separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{payload}.{self._sign(payload.encode())}"

    def verify(self, cookie: str | None, now: float | None = None) -> dict[str, str] | None:
        """The session ({"r": role, "n": nonce, "s": subject or ""}) of a valid, unexpired cookie,
        else None."""
        if not cookie or "." not in cookie:
            return None
        payload, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(sig.encode(), self._sign(payload.encode()).encode()):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        if not isinstance(data, dict) or float(data.get("exp", 0)) < (now or time.time()):
            return None
        return {"r": str(data.get("r")), "n": str(data.get("n")), "s": str(data.get("s") or "")}

    def csrf(self, session: dict[str, str]) -> str:
        return hmac.new(self.key, b"csrf:" + session["n"].encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, session: dict[str, str], token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf(session).encode())

    def set_cookie(self, value: str, secure: bool) -> str:
        attrs = f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={int(self.ttl)}"
        return attrs + ("; Secure" if secure else "")

    @staticmethod
    def clear_cookie(secure: bool) -> str:
        return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0" + ("; Secure" if secure else "")

    # ---- sign-in throttling ----------------------------------------------------------------

    def allowed(self, client: str, now: float | None = None) -> bool:
        """False while `client` has used up its failed sign-ins for the last minute."""
        now = now or time.time()
        recent = [t for t in self.failures.get(client, ()) if now - t < 60.0]
        if recent:
            self.failures[client] = recent
        else:
            self.failures.pop(client, None)
        return len(recent) < self.attempts_per_minute

    def failed(self, client: str, now: float | None = None) -> None:
        if len(self.failures) >= _MAX_TRACKED_CLIENTS and client not in self.failures:
            self.failures.pop(next(iter(self.failures)))  # the oldest tracked client
        self.failures.setdefault(client, []).append(now or time.time())


def cookie_value(header: str | None) -> str | None:
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None
