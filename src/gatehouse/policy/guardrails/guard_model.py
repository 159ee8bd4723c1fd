"""Guard models: a configured model asked whether a prompt is safe (docs/guardrails.md#guard-models).

Runs in the guardrail step, after the built-in checks and before any upstream call
(`mode: before`), or beside the upstream call with the answer held until it passes
(`mode: parallel`, only for `private: true` models; the relay waits on it). The guard sees the prompt as the upstream
would (after redaction). Its answer is read by a parser per format; a guard that fails,
times out or answers something unreadable is `skipped` in the audit, and the request is
refused (`on_error: closed`, 503 guardrail_unavailable) or let through (`open`).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gatehouse.errors import ServiceUnavailable
from gatehouse.policy.guardrails.config import GuardCheckConfig, GuardrailsConfig
from gatehouse.types import ChatRequest, CompletionRequest, EmbeddingRequest, Message, TextPart, ToolResultPart

log = logging.getLogger("gatehouse.guardrails")
SEVERITY = {"flag": 1, "reroute": 2, "block": 3}
# (model name, conversation, timeout, request id) -> the guard's answer text
# (guard model, conversation, timeout, request id, traceparent for the call or None) -> its answer
Ask = Callable[[str, list[Message], float, str, str | None], Awaitable[str]]


@dataclass(frozen=True)
class GuardModelCheck:
    name: str
    policy: str
    model: str
    format: str
    action: str  # for an unsafe verdict (LlamaGuard: for categories not in `categories`)
    timeout: float
    on_error: str
    on_input: bool = True
    on_output: bool = False
    categories: dict[str, str] = field(default_factory=dict)
    unsafe: Any = None  # regex format: compiled RE2 pattern
    parallel: bool = False  # on input: beside the upstream call, the answer held until it passes
    data_class: str = ""  # a reroute verdict: the data class it gives the request ("": the most sensitive)

    def read(self, answer: str) -> tuple[bool, list[str]] | None:
        """(unsafe, categories) from the guard's answer; None when it cannot be read."""
        text = answer.strip()
        if self.format == "regex":
            return (self.unsafe.search(text) is not None), []
        first, _, rest = text.partition("\n")
        word = first.strip().lower().rstrip(".")
        if self.format == "llamaguard":
            if word == "safe":
                return False, []
            if word == "unsafe":
                cats = [c.strip().upper() for c in rest.replace("\n", ",").split(",") if c.strip()]
                return True, cats
            return None
        # shieldgemma / granite_guardian: "Yes" = the content violates the policy / is risky
        if word.startswith("yes"):
            return True, []
        if word.startswith("no"):
            return False, []
        return None

    def action_for(self, categories: list[str]) -> str:
        if not categories:
            return self.action
        return max((self.categories.get(c, self.action) for c in categories), key=SEVERITY.__getitem__)


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The gateway's guardrail model is unavailable; retry later.",
                              code="guardrail_unavailable", headers={"retry-after": "5"})


def compile_guard(c: GuardCheckConfig, policy: str) -> GuardModelCheck:
    unsafe = None
    if c.format == "regex" and c.unsafe_pattern:
        import re2  # type: ignore[import-untyped]

        try:
            unsafe = re2.compile(c.unsafe_pattern)
        except re2.error:
            raise ValueError("unsafe_pattern: not a valid RE2 pattern") from None
    assert c.model is not None
    return GuardModelCheck(c.name or c.type, policy, c.model, c.format, c.action, c.timeout_seconds, c.on_error,
                           c.stage in ("input", "both"), c.stage in ("output", "both"),
                           {k.upper(): v for k, v in c.categories.items()}, unsafe, c.mode == "parallel",
                           c.data_class or "")


def compile_guard_models(cfg: GuardrailsConfig) -> dict[str, tuple[GuardModelCheck, ...]]:
    return {name: tuple(compile_guard(c, name) for c in p.checks if c.type == "guard_model")
            for name, p in cfg.policies.items()}


def _text_of(parts: list[Any]) -> str:
    out: list[str] = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append(p.text)
        elif isinstance(p, ToolResultPart):
            out.extend(t.text for t in p.content if isinstance(t, TextPart))
    return "\n".join(out)


def conversation(subject: Any, answer: str | None = None) -> list[Message]:
    """The prompt as alternating user/assistant turns starting with the user (what guard
    models' chat templates expect): system and tool text are folded into user turns."""
    turns: list[tuple[str, str]] = []
    if isinstance(subject, ChatRequest):
        system = "\n".join(p.text for p in subject.system)
        if system:
            turns.append(("user", system))
        turns += [("assistant" if m.role == "assistant" else "user", _text_of(m.content)) for m in subject.messages]
    elif isinstance(subject, CompletionRequest):
        turns.append(("user", subject.prompt + (subject.suffix or "")))
    elif isinstance(subject, EmbeddingRequest):
        turns.append(("user", "\n".join(subject.input)))
    if answer is not None:  # an output check: the answer is the last turn
        turns.append(("assistant", answer))
    merged: list[tuple[str, str]] = []
    for role, text in turns:
        if not text:
            continue
        if merged and merged[-1][0] == role:
            merged[-1] = (role, merged[-1][1] + "\n" + text)
        elif merged or role == "user":
            merged.append((role, text))
    return [Message(role, [TextPart(text)]) for role, text in merged]  # type: ignore[arg-type]


async def judge(check: GuardModelCheck, ask: Ask, messages: list[Message],
                request_id: str, traceparent: str | None = None) -> tuple[str, str, list[str]]:
    """(verdict, action, categories): verdict pass | match | skipped. `traceparent`: the guard
    call's trace context (its `guardrail <check>` span's), sent to the guard model's upstream."""
    try:
        answer = await asyncio.wait_for(ask(check.model, messages, check.timeout, request_id, traceparent),
                                        check.timeout)
        read = check.read(answer)
        if read is None:
            raise ValueError("the guard model's answer is not in the expected format")
    except Exception as e:
        log.warning("guard model check %s (%s) could not run for request %s: %s", check.name, check.model,
                    request_id, type(e).__name__)
        return "skipped", check.action, []  # the caller refuses the request under on_error: closed
    unsafe, categories = read
    if not unsafe:
        return "pass", check.action, []
    return "match", check.action_for(categories), categories
