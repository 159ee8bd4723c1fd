"""A quicker proof than the RE2 pass that no check of a stage can match, for stages whose checks
are all built-in detectors with a known necessary condition (Scanner.clean tries it first).

Each such detector can only match a text that has enough ASCII digits, or a long enough run of
token characters `[A-Za-z0-9+/=_-]`, or one of a few literals: a card has 13 digits at least, an
SSN 9; an AWS key is a run of 20 token characters, a GitHub token of 33 (`github_pat_` and 22),
a Slack token of 15 (`xoxb-` and 10) unless it is a webhook URL (its literal host and path), a
secret (`high_entropy`) of its `min_length`; a JWT has `eyJ`, a private key `-----BEGIN`, an
e-mail address `@`. Two C passes (`bytes.translate`) and a few substring tests answer all of
them at once, about a third of the RE2 pass over the same text. A stage with any other check
(keywords, regex, IBAN, phone, IP address, prompt injection, guard models) has no quick proof:
the RE2 pass decides. A text that fails the quick proof (it has 13 digits, say) is matched by
RE2 as before, so the proof only ever skips texts no check could match.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# detector type -> (digits, token run, literals): a match has at least that many ASCII digits,
# or a run of at least that many token characters, or one of the literals (0 / (): no such way)
QUICK: dict[str, tuple[int, int, tuple[bytes, ...]]] = {
    "payment_card": (13, 0, ()),
    "us_ssn": (9, 0, ()),
    "aws_access_key": (0, 20, ()),
    "github_token": (0, 33, ()),
    "slack_token": (0, 15, (b"hooks.slack.com/services/",)),
    "jwt": (0, 0, (b"eyJ",)),
    "private_key": (0, 0, (b"-----BEGIN",)),
    "email": (0, 0, (b"@",)),
}

_TOKEN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-"
_TOKENS = bytes(0x61 if b in _TOKEN else 0x20 for b in range(256))  # token characters -> a, others -> space
_NOT_DIGITS = bytes(b for b in range(256) if not 0x30 <= b <= 0x39)


def condition(kind: str, min_length: int = 0) -> tuple[int, int, tuple[bytes, ...]] | None:
    """A check type's necessary condition (None: none known)."""
    if kind == "high_entropy":
        return (0, min_length, ())
    return QUICK.get(kind)


class Quick:
    """The conditions of a stage's checks together: `clean(data)` is True only when no check's
    condition holds in `data` (UTF-8 bytes), so no check can match it."""

    __slots__ = ("digits", "needle", "literals")

    def __init__(self, digits: int, run: int, literals: Iterable[bytes]):
        self.digits = digits  # 0: no check needs digits
        self.needle = b"a" * run if run else b""  # (b"": no check needs a run)
        self.literals = tuple(sorted(set(literals), key=len))

    def clean(self, data: bytes) -> bool:
        for lit in self.literals:
            if lit in data:
                return False
        if self.digits and len(data.translate(None, _NOT_DIGITS)) >= self.digits:
            return False
        return not (self.needle and self.needle in data.translate(_TOKENS))


def quick_for(conditions: Iterable[Any]) -> Quick | None:
    """The stage's Quick, when every check has a condition (else None: RE2 decides)."""
    digits: list[int] = []
    runs: list[int] = []
    literals: list[bytes] = []
    for cond in conditions:
        if cond is None or cond == (0, 0, ()):
            return None
        d, r, lits = cond
        if d:
            digits.append(d)
        if r:
            runs.append(r)
        literals.extend(lits)
    if not (digits or runs or literals):
        return None
    return Quick(min(digits, default=0), min(runs, default=0), literals)
