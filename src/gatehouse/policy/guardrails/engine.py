"""Compiled guardrail policies: checks with actions, run over canonical text.

Everything here is built at load time (`compile_policies`); per request a `Plan` (the checks
that apply to one group + model, cached) scans text and returns `Hit`s. Matched text never
leaves this module: hits carry the check and the span, and redaction writes a placeholder.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from gatehouse.policy.guardrails.config import GuardCheckConfig, GuardrailsConfig
from gatehouse.policy.guardrails.detectors import BUILTIN, Span, high_entropy


@dataclass(frozen=True)
class Check:
    name: str  # the check's name: in errors, metrics and the audit
    policy: str
    category: str  # the detector type (keywords, regex, payment_card, ...)
    label: str  # the redaction placeholder: [REDACTED:<label>]
    action: str  # block | redact | flag | reroute
    on_input: bool
    on_output: bool
    window: int  # the longest text one match can span (the streaming hold-back)
    find: Callable[[str], list[Span]]
    triggers: tuple[str, ...]  # RE2 patterns one of which every match contains (see Scanner)
    data_class: str = ""  # reroute: the data class a match gives the request ("": the most sensitive)


@dataclass(frozen=True)
class Hit:
    check: Check
    start: int
    end: int


def _options() -> Any:
    import re2  # type: ignore[import-untyped]  # google-re2: linear-time matching, so a configured pattern cannot hang the gateway

    opts = re2.Options()
    opts.log_errors = False
    opts.max_mem = 32 << 20
    return opts


def _re2(patterns: list[str], what: str) -> Callable[[str], list[Span]]:
    import re2

    opts = _options()
    compiled = []
    for i, p in enumerate(patterns):
        try:
            compiled.append(re2.compile(p, opts))
        except re2.error as e:
            raise ValueError(f"{what}[{i}]: not a valid RE2 pattern ({e}); lookarounds and backreferences "
                             "are not supported") from None

    def find(text: str) -> list[Span]:
        out: list[Span] = []
        for c in compiled:
            out.extend(m.span() for m in c.finditer(text) if m.end() > m.start())
        return out

    return find


def compile_check(c: GuardCheckConfig, policy: str = "") -> Check:
    """Raise ValueError('field: message') for a pattern that does not compile."""
    name = c.name or c.type
    find: Callable[[str], list[Span]]
    triggers: tuple[str, ...]
    if c.type == "keywords":
        words = sorted({w.strip().lower() for w in c.words}, key=len, reverse=True)
        # Where a word starts (so "exploit" also catches "exploits"), any case; literals only.
        pattern = "(?i)\\b(?:" + "|".join(re.escape(w) for w in words) + ")"
        find = _re2([pattern], "words")
        window, label, triggers = max(len(w) for w in words), name, (pattern,)
    elif c.type == "regex":
        find = _re2(c.patterns, "patterns")
        window, label, triggers = c.max_length, name, tuple(c.patterns)
    else:
        det = high_entropy(c.min_length, c.min_entropy) if c.type == "high_entropy" else BUILTIN[c.type]
        find, window, label, triggers = det.find, det.window, det.label, (det.trigger,)
    return Check(name, policy, c.type, label, c.action, c.stage in ("input", "both"), c.stage in ("output", "both"),
                 window, find, triggers, c.data_class or "")


MEMO_CHARS = 4 << 20  # the clean prompt texts a plan remembers (Scanner.clean): characters in all
MEMO_TEXTS = 4096  # ... and texts


class Scanner:
    """Checks run together: one RE2 pass over the text with every check's triggers (re2.Set)
    says which checks can match at all; only those run their own patterns. Clean text (the
    common case) costs that one pass. Without a usable set, every check runs.

    `clean(texts)` is the fast path of a whole request or answer: whether no trigger occurs in
    any of the texts, so no check can match (the same sets of triggers `scan` runs; then `scan`
    of each text would return no hits). When every trigger is edge-free (`_edge_free`: no
    `^`, `$`, `\\A`, `\\z`), the texts are joined with newlines and matched in one call: a
    trigger match inside one text is then a match of the joined text (`\\b` and `\\B` see a
    newline, a non-word character, where a text starts or ends, as at a text's own edges); a
    match across a join only sends the texts the full way.

    With `memo` (the input stage) the texts found clean are remembered, exactly (the texts
    themselves, up to MEMO_CHARS characters and MEMO_TEXTS texts, then forgotten at once): a
    conversation sends its system prompt and its earlier turns again with every request, and
    only its new texts need the match. The same text through the same triggers gives the same
    answer, so a remembered text is one that was matched and found clean."""

    __slots__ = ("checks", "_set", "_of", "_match", "_joinable", "_memo", "_memo_chars")

    def __init__(self, checks: Iterable[Check], memo: bool = False):
        import re2

        self.checks = tuple(checks)
        self._memo: dict[str, None] | None = {} if memo else None
        self._memo_chars = 0
        self._of: list[Check] = []
        self._set: Any = None
        self._match: Callable[[bytes], Any] | None = None  # the set's match of UTF-8 bytes, falsy: none
        self._joinable = False
        if not self.checks:
            return
        try:
            s = re2.Set.SearchSet(_options())
            for c in self.checks:
                for t in c.triggers:
                    s.Add(t)
                    self._of.append(c)
            s.Compile()
            self._set = s
        except re2.error:  # (too big for one automaton: run the checks one by one)
            self._of = []
            return
        # The binding's own match (bytes in, a list of indices out) skips the wrapper's two Python
        # calls per text; the wrapper's Match takes bytes as well where the binding is not there.
        self._match = getattr(getattr(s, "_set", None), "Match", None) or s.Match
        self._joinable = all(_edge_free(t) for c in self.checks for t in c.triggers)

    def __bool__(self) -> bool:
        return bool(self.checks)

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks)

    def clean(self, texts: list[str]) -> bool:
        """True when no check can match any of `texts` (so every `scan` would return []);
        False when one may (or the set is not usable): the caller scans each text."""
        match = self._match
        if match is None:
            return not self.checks
        memo = self._memo
        if memo is not None:
            if len(texts) == 1:  # (most requests: no list built)
                if texts[0] in memo:
                    return True
            else:
                texts = [t for t in texts if t not in memo]
                if not texts:
                    return True
        try:
            if self._joinable:
                if match(("\n".join(texts) if len(texts) != 1 else texts[0]).encode()):
                    return False
            else:
                for t in texts:
                    if match(t.encode()):
                        return False
        except Exception:
            return False
        if memo is not None:
            self._remember(memo, texts)
        return True

    def _remember(self, memo: dict[str, None], texts: list[str]) -> None:
        size = sum(map(len, texts))
        if self._memo_chars + size > MEMO_CHARS or len(memo) + len(texts) > MEMO_TEXTS:
            memo.clear()
            self._memo_chars = 0
            if size > MEMO_CHARS or len(texts) > MEMO_TEXTS:
                return
        memo.update(dict.fromkeys(texts))
        self._memo_chars += size

    def scan(self, text: str) -> list[Hit]:
        if self._set is None:
            return scan(text, self.checks)
        try:
            found = self._set.Match(text)
        except Exception:
            return scan(text, self.checks)
        if not found:
            return []
        hits: list[Hit] = []
        seen: set[int] = set()
        for i in found:
            c = self._of[i]
            if id(c) not in seen:
                seen.add(id(c))
                hits.extend(Hit(c, start, end) for start, end in c.find(text))
        return hits


# A pattern's text edges: `^`/`$` outside a character class's negation, `\A`, `\z` (RE2 has no
# lookarounds; `\b`/`\B` see a newline as they see a text's edge). Conservative: a `$` or `^`
# that is a literal inside a class also counts (the texts are then matched one by one).
_EDGE = re.compile(r"\\(.)|\[\^|([\^$])", re.S)


def _edge_free(pattern: str) -> bool:
    """Whether a trigger matches inside a text exactly where it matches inside the same text
    with newlines around it (Scanner.clean joins the texts of a request)."""
    for m in _EDGE.finditer(pattern):
        if m.group(2) or m.group(1) in ("A", "z"):
            return False
    return True


class Plan:
    """The checks applying to one request (its group's and its model's policies)."""

    __slots__ = ("policies", "input", "output", "window", "guard_models", "guard_input", "guard_output",
                 "checks_input", "checks_output", "outcomes")

    def __init__(self, policies: tuple[str, ...], checks: Iterable[Check], guard_models: tuple[Any, ...] = ()):
        checks = tuple(checks)
        self.policies = policies
        self.guard_models = guard_models  # guard_model.GuardModelCheck: a model judges prompts/answers
        self.guard_input = tuple(g for g in guard_models if g.on_input)
        self.guard_output = tuple(g for g in guard_models if g.on_output)
        self.input = Scanner((c for c in checks if c.on_input), memo=True)
        self.output = Scanner(c for c in checks if c.on_output)
        self.window = max((c.window for c in self.output), default=0)
        self.checks_input = bool(self.input) or bool(guard_models)  # prompts are read (a guard model needs them)
        self.checks_output = bool(self.output) or bool(self.guard_output)  # answers are checked
        self.outcomes: dict[Any, Any] = {}  # audit.outcome: the full audits seen, built once each


def compile_policies(cfg: GuardrailsConfig) -> dict[str, tuple[Check, ...]]:
    """The text checks of each policy (guard models: guard_model.compile_guard_models)."""
    return {name: tuple(compile_check(c, name) for c in p.checks if c.type != "guard_model")
            for name, p in cfg.policies.items()}


def plan_for(policies: dict[str, tuple[Check, ...]], names: Iterable[str],
             guards: dict[str, tuple[Any, ...]] | None = None) -> Plan | None:
    chosen: list[str] = []
    for n in names:
        if n in policies and n not in chosen:
            chosen.append(n)
    if not chosen:
        return None
    return Plan(tuple(chosen), (c for n in chosen for c in policies[n]),
                tuple(g for n in chosen for g in (guards or {}).get(n, ())))


def scan(text: str, checks: tuple[Check, ...]) -> list[Hit]:
    hits: list[Hit] = []
    for c in checks:
        for start, end in c.find(text):
            hits.append(Hit(c, start, end))
    return hits


def redact(text: str, hits: list[Hit], offset: int = 0) -> str:
    """`text` with every redact hit replaced by [REDACTED:<label>] (overlaps merged)."""
    spans = sorted((h.start - offset, h.end - offset, h.check.label) for h in hits if h.check.action == "redact")
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for start, end, label in spans:
        if end <= pos:
            continue
        start = max(start, pos)
        out.append(text[pos:start])
        out.append(f"[REDACTED:{label}]")
        pos = end
    out.append(text[pos:])
    return "".join(out)
