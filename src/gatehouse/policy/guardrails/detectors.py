"""Built-in detectors: bounded patterns (no nested or unbounded repetition, so every one runs in
linear time on Python's `re`) plus validation where a format has a checksum.

Each detector has a `label` (the redaction placeholder and audit category), a `window` (the
longest text it can match: the streaming guard holds back that many characters), an optional
cheap `hint` (a substring test that skips the regex when it cannot match) and `find(text)`
returning the validated spans.
"""
from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Span = tuple[int, int]


@dataclass(frozen=True)
class Detector:
    label: str
    window: int
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] | None = None
    # A cheap RE2 pattern every match contains (a necessary condition): all the triggers of
    # a policy run in one pass (re2.Set), and only a triggered detector runs `pattern`, and in
    # a long text only around the trigger's occurrences.
    trigger: str = ""
    longest: int = 0  # the longest text `pattern` can match, when more than `window` (0: window)
    _locate: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.trigger:
            import re2  # type: ignore[import-untyped]

            object.__setattr__(self, "_locate", re2.compile(self.trigger))

    def find(self, text: str) -> list[Span]:
        valid = self.valid
        w = max(self.longest, self.window)
        if self._locate is None or len(text) <= 4 * w + 256:
            return [m.span() for m in self.pattern.finditer(text) if valid is None or valid(m.group())]
        # Every match contains an occurrence of the trigger and is at most `w` long, so it lies
        # within `w` of an occurrence RE2 reports (of the one it contains, or of a reported one
        # that overlaps it). `pattern` runs only over those windows, merged where they touch:
        # then no match of the whole text crosses a region's edge, so each region finds what a
        # full scan finds there. Lookbehinds still see the text before `lo`; a match ending at
        # a cut `hi` is not one (its lookahead saw an end that is not the text's).
        n = len(text)
        regions: list[list[int]] = []
        for t in self._locate.finditer(text):
            lo, hi = max(0, t.start() - w), min(n, t.end() + w + 1)
            if regions and lo <= regions[-1][1]:
                regions[-1][1] = max(regions[-1][1], hi)
            else:
                regions.append([lo, hi])
        spans: list[Span] = []
        for lo, hi in regions:
            spans.extend(m.span() for m in self.pattern.finditer(text, lo, hi)
                         if (m.end() < hi or hi == n) and (valid is None or valid(m.group())))
        return spans


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(s: str) -> bool:
    digits = s.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and luhn(digits)


def _iban(s: str) -> bool:
    v = s.replace(" ", "")
    if not 15 <= len(v) <= 34:
        return False
    moved = v[4:] + v[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def _ipv6(s: str) -> bool:
    if s.count(":") < 2 or len(s) < 3:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def high_entropy(min_length: int, min_entropy: float) -> Detector:
    def valid(s: str) -> bool:
        return (any(c.isdigit() for c in s) and any(c.isalpha() for c in s)
                and entropy(s) >= min_entropy)

    # (printf-style: the regex's own braces would need doubling in an f-string)
    return Detector("secret", 256, re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/=_-]{%d,256}(?![A-Za-z0-9+/=_-])"  # noqa: UP031
                                              % min_length), valid, "[A-Za-z0-9+/=_-]{%d}" % min_length)  # noqa: UP031


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"

_INJECTION = (
    r"(?i)\b(?:(?:ignore|disregard|forget|override)\s{1,4}(?:(?:all|any|the|your|my)\s{1,4})?"
    r"(?:previous|prior|above|earlier|preceding|system)\s{1,4}(?:instructions?|prompts?|rules|messages?|directions)"
    r"|(?:reveal|print|show|repeat|output)\s{1,4}(?:me\s{1,4})?(?:your|the)\s{1,4}"
    r"(?:system\s{1,4}prompt|hidden\s{1,4}instructions|initial\s{1,4}instructions)"
    r"|you\s{1,4}are\s{1,4}now\s{1,4}(?:DAN|in\s{1,4}developer\s{1,4}mode|jailbroken|unrestricted)"
    r"|do\s{1,4}anything\s{1,4}now|developer\s{1,4}mode\s{1,4}enabled|jailbreak(?:ing)?\s{1,4}(?:mode|prompt))")

BUILTIN: dict[str, Detector] = {
    # 13-19 digits, single spaces or dashes between them allowed; Luhn-checked.
    "payment_card": Detector("card", 40, re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])"), _card,
                             r"\d(?:[ -]?\d){12}"),
    "iban": Detector("iban", 64, re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), _iban,
                     r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11}"),
    "us_ssn": Detector("ssn", 11, re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
                       None, r"\d{3}-\d{2}-\d{4}"),
    "email": Detector("email", 281, re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}"
                                               r"(?:\.[A-Za-z0-9-]{1,63}){0,2}\.[A-Za-z]{2,24}\b"),
                      None, r"[A-Za-z0-9._%+-]@[A-Za-z0-9-]{1,63}\."),
    # International (+CC ...) or North-American with separators; never a bare digit run (order ids).
    "phone": Detector("phone", 36, re.compile(
        r"(?<![\w#/+-])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
        r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w-])"), None,
        r"\+\d|\(\d{3}\)|\d{3}[.-]\d{3}[.-]\d{4}"),
    "ip_address": Detector("ip", 45, re.compile(
        r"(?<![\w.])" + rf"(?:{_OCTET}\.){{3}}{_OCTET}" + r"(?![\w.])"
        r"|(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        lambda s: "." in s or _ipv6(s), r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:"),
    "aws_access_key": Detector("aws_key", 20, re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
                               None, r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"),
    "private_key": Detector("private_key", 72, re.compile(
        r"-----BEGIN[A-Z ]{0,40} PRIVATE KEY-----"
        r"(?:[A-Za-z0-9+/=\s:,-]{0,8192}?-----END[A-Z ]{0,40} PRIVATE KEY-----)?"),
        None, r"-----BEGIN[A-Z ]{0,40} PRIVATE KEY-----", 8400),  # streams: caught by the header
    "jwt": Detector("jwt", 2048,
                    re.compile(r"\beyJ[A-Za-z0-9_-]{6,1000}\.eyJ[A-Za-z0-9_-]{6,2000}\.[A-Za-z0-9_-]{0,1000}"),
                    None, r"eyJ[A-Za-z0-9_-]{6}[A-Za-z0-9_-]*\.eyJ", 4010),
    "github_token": Detector("github_token", 255, re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,244})\b"), None,
        r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22}"),
    "slack_token": Detector("slack_token", 255, re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,250}"
                                                           r"|https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,120}"),
                            None, r"xox[abposr]-[A-Za-z0-9-]{10}|hooks\.slack\.com/services/"),
    "prompt_injection": Detector("prompt_injection", 120, re.compile(_INJECTION), None, _INJECTION),
}
