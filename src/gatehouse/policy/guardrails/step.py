"""The guardrail policy step: checks the canonical request before any upstream call, and
hands the output checks to the relay (gateway/relay.py) through `ex.guard`.

The endpoint's canonical request is in `ex.subject` before admission (gateway/handle.py). A request
whose group and model have no policy costs one cached dict lookup. The audit (audit.py, built
once per outcome) says which checks ran on what, and what they decided; never the matched text.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from gatehouse.errors import InvalidRequest
from gatehouse.policy.guardrails.audit import INPUT, OUTPUT, Outcome, Verdict, outcome
from gatehouse.policy.guardrails.engine import Check, Hit, Plan, Scanner, plan_for, redact
from gatehouse.policy.guardrails.guard_model import Ask, GuardModelCheck, conversation, judge, unavailable
from gatehouse.types import ChatRequest, CompletionRequest, EmbeddingRequest, Message, TextPart, ToolResultPart

if TYPE_CHECKING:
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.observability.tracing import Tracing

log = logging.getLogger("gatehouse.guardrails")


class GuardrailBlocked(InvalidRequest):
    code = "guardrail_blocked"


def blocked(checks: Sequence[Check | GuardModelCheck], stage: str) -> GuardrailBlocked:
    names = ", ".join(sorted({c.name for c in checks}))
    what = "request" if stage == "input" else "answer"
    # The code is in the message too: Anthropic and Ollama errors have no field for it.
    return GuardrailBlocked(f"The {what} was blocked by the gateway's guardrails (guardrail_blocked; check: {names}).",
                            code="guardrail_blocked")


class Guard(msgspec.Struct):
    """One request's guardrail state: its plan, and the audit of what ran. (A msgspec Struct:
    built in C, a third of what a Python __init__ of these fields costs on every request.)"""

    plan: Plan
    subject: Any = None  # the canonical request (output guard models see it with the answer)
    ask: Ask | None = None
    # The verdicts that are not a plain pass: (check, stage) -> (verdict, action, category,
    # policy), verdict: match | pass | skipped (guard models say pass too). Every other check
    # of a stage in `scanned` passed; of a stage not scanned, was skipped (audit.outcome).
    verdicts: dict[tuple[str, str], Verdict] = msgspec.field(default_factory=dict)
    scanned: int = 0  # audit.INPUT | audit.OUTPUT: the stages whose checks ran on some text
    rewritten: bool = False  # the input was redacted: the client's raw body must not be forwarded
    sensitive: bool = False  # a reroute check matched
    raised: dict[str, str] | None = None  # its data class ("": the most sensitive) -> the check
    # the input guard models of `mode: parallel`, running beside the upstream call: the relay
    # awaits `passed()` before any of the answer goes out (gateway/relay.py)
    pending: asyncio.Task[None] | None = None
    # (tracing on, a guard model in the plan) where each guard model's verdict goes as a span
    traced: Any = None  # (Tracing, Exchange): Any, as msgspec reads a Struct's annotations at run time

    def __repr__(self) -> str:  # (never the request's text, which a Struct's own repr would show)
        return f"Guard(scanned={self.scanned}, verdicts={len(self.verdicts)})"

    async def passed(self) -> None:
        """Wait for the parallel input guards: raise GuardrailBlocked or (on_error: closed)
        ServiceUnavailable; the caller then discards the held answer."""
        task, self.pending = self.pending, None
        if task is not None:
            await task

    def drop(self) -> None:
        """The request ended without waiting for its parallel guards (an upstream error, a
        hang-up): stop them; their checks are recorded as skipped by `finish`."""
        task, self.pending = self.pending, None
        if task is None:
            return
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: the request already ended another way
        else:
            task.cancel()

    def record(self, checks: Scanner, hits: list[Hit], stage: str) -> None:
        self.scanned |= INPUT if stage == "input" else OUTPUT
        if not hits:
            return
        matched = {h.check.name for h in hits}
        for c in checks:
            if c.name in matched:
                self.verdicts[(c.name, stage)] = ("match", c.action, c.category, c.policy)
                if c.action == "reroute":
                    self.reroute(c.data_class, c.name)

    def reroute(self, data_class: str, check: str) -> None:
        """A reroute check matched: the request is sensitive, of (at least) this data class."""
        self.sensitive = True
        raised = self.raised
        if raised is None:
            raised = self.raised = {}
        raised.setdefault(data_class, check)

    def check_text(self, text: str, checks: Scanner, stage: str) -> str:
        """Scan one text: raise on a block, return it redacted (the same object when unchanged)."""
        new, blocking = self.screen(text, checks, stage)
        if blocking:
            raise blocked(blocking, stage)
        return new

    def screen(self, text: str, checks: Scanner, stage: str) -> tuple[str, list[Check]]:
        """One text's verdicts recorded: (the text redacted, the blocking checks that matched)."""
        hits = checks.scan(text)
        self.record(checks, hits, stage)
        if not hits:
            return text, []
        blocking = [h.check for h in hits if h.check.action == "block"]
        return (text if blocking else redact(text, hits)), blocking

    def finish(self) -> Outcome:
        """The full audit. Checks that never ran (the prompt was refused first, the upstream
        failed, the answer never came) are skipped: it never says a check passed that did not run."""
        return outcome(self.plan, self.scanned, self.verdicts)

    def audit(self) -> list[dict[str, str]]:
        return self.finish().audit()


def _texts(subject: Any) -> list[tuple[Any, str]]:
    """(holder, attribute-or-index) for every text the input checks read."""
    out: list[tuple[Any, Any]] = []
    if isinstance(subject, ChatRequest):
        out.extend((p, "text") for p in subject.system)
        for m in subject.messages:
            for part in m.content:
                if isinstance(part, TextPart):
                    out.append((part, "text"))
                elif isinstance(part, ToolResultPart):
                    out.extend((p, "text") for p in part.content if isinstance(p, TextPart))
    elif isinstance(subject, CompletionRequest):
        out.append((subject, "prompt"))
        if subject.suffix:
            out.append((subject, "suffix"))
    elif isinstance(subject, EmbeddingRequest):
        out.extend((subject.input, i) for i in range(len(subject.input)))
    return out


def request_texts(subject: Any) -> list[str]:
    """The texts `_texts` names, as they are (the fast path's input: Scanner.clean)."""
    if isinstance(subject, ChatRequest):
        out = [p.text for p in subject.system] if subject.system else []
        for m in subject.messages:
            for part in m.content:
                if isinstance(part, TextPart):
                    out.append(part.text)
                elif isinstance(part, ToolResultPart):
                    out.extend(p.text for p in part.content if isinstance(p, TextPart))
        return out
    if isinstance(subject, CompletionRequest):
        return [subject.prompt, subject.suffix] if subject.suffix else [subject.prompt]
    if isinstance(subject, EmbeddingRequest):
        return list(subject.input)
    return []


def inspect_request(guard: Guard, subject: Any) -> None:
    """Every text of the request is checked (so the audit is whole even when one blocks)."""
    checks = guard.plan.input
    blocking: list[Check] = []
    for holder, where in _texts(subject):
        text = holder[where] if isinstance(where, int) else getattr(holder, where)
        new, block = guard.screen(text, checks, "input")
        blocking += block
        if new is not text and not blocking:
            if isinstance(where, int):
                holder[where] = new
            else:
                setattr(holder, where, new)
            guard.rewritten = True
    if blocking:
        raise blocked(blocking, "input")


async def judge_all(guard: Guard, guards: tuple[GuardModelCheck, ...], messages: list[Message], stage: str,
                    request_id: str) -> None:
    """Ask each guard model; raise on a block, or on a failed guard under on_error: closed.
    On input the guard sees the prompt after redaction: what the upstream would see."""
    assert guard.ask is not None
    blocking: list[GuardModelCheck] = []
    failed = False
    for g in guards:
        if guard.traced is None:
            verdict, action, categories = await judge(g, guard.ask, messages, request_id)
        else:  # the guard's span, and its context sent to the guard model's upstream
            tracing, ex = guard.traced
            started, context = time.monotonic(), tracing.policy_context(ex)
            verdict, action, categories = await judge(g, guard.ask, messages, request_id,
                                                      context[1] if context else None)
            tracing.policy_span(ex, f"guardrail {g.name}", started,
                                ("guardrails", None, None, "chat", g.model, g.name, stage, verdict, action, None),
                                verdict == "skipped", context[0] if context else None)
        category = "guard_model:" + ",".join(categories) if categories else "guard_model"
        guard.verdicts[(g.name, stage)] = (verdict, action, category, g.policy)
        if verdict == "skipped" and g.on_error == "closed":
            failed = True
        elif verdict == "match" and action == "block":
            blocking.append(g)
        elif verdict == "match" and action == "reroute":
            guard.reroute(g.data_class, g.name)
    if blocking:
        raise blocked(blocking, stage)
    if failed:
        raise unavailable()


async def judge_answer(guard: Guard, answer: str, request_id: str) -> None:
    """The output guard models on a whole answer (streams: held until they pass)."""
    await judge_all(guard, guard.plan.guard_output, conversation(guard.subject, answer), "output", request_id)


_UNKNOWN: Any = object()  # (a group and model whose plan is not built yet)


class GuardrailStep:
    name = "guardrails"

    def __init__(self, policies: dict[str, tuple[Check, ...]], model_policies: dict[str, list[str]],
                 group_policies: Callable[[str | None], list[str]], on_verdicts: Callable[[Guard, Exchange], None],
                 guards: dict[str, tuple[GuardModelCheck, ...]] | None = None, ask: Ask | None = None,
                 private: frozenset[str] = frozenset(), tracing: Tracing | None = None):
        self.policies = policies
        self.tracing = tracing  # a span per guard model's verdict (Guard.traced)
        self.private = private  # models that may see a prompt before a parallel guard judged it
        self.guards = guards or {}
        self.ask = ask
        self.model_policies = model_policies
        self.group_policies = group_policies  # reads the current directory (store groups too)
        self.on_verdicts = on_verdicts
        # compliance routing, set by runtime.py when configured: (ex, raised classes) -> whether
        # the request now goes to another model (policy/compliance.py `reclass`)
        self.escalate: Callable[[Exchange, dict[str, str]], Awaitable[bool]] | None = None
        self._plans: dict[tuple[str | None, str], Plan | None] = {}
        # one Plan per combination of policies, whatever group and model it came from: its
        # audit outcomes (audit.outcome) are built once for all of them
        self._combos: dict[tuple[str, ...], Plan | None] = {}

    def forget(self) -> None:
        """The groups changed (directory reload): plans are rebuilt on next use."""
        self._plans, self._combos = {}, {}

    def plan(self, group: str | None, model: str) -> Plan | None:
        key = (group, model)
        try:
            return self._plans[key]
        except KeyError:
            pass
        names = [*self.group_policies(group), *self.model_policies.get(model, ())]
        unknown = [n for n in names if n not in self.policies]
        if unknown:  # a store group naming a policy this config lacks: fail closed
            log.error("group %r names unknown guardrail policies %s: its requests are refused", group, unknown)
            raise GuardrailBlocked("The gateway's guardrails for this group are misconfigured; ask an operator.",
                                   code="guardrail_blocked")
        combo = tuple(names)
        if combo in self._combos:
            plan = self._combos[combo]
        else:
            plan = plan_for(self.policies, names, self.guards)
            if len(self._combos) < 1_000:
                self._combos[combo] = plan
        if len(self._plans) < 10_000:
            self._plans[key] = plan
        return plan

    async def admit(self, ex: Exchange) -> None:
        p = ex.principal
        group = p.group if p else None
        plan = self._plans.get((group, ex.model), _UNKNOWN)
        if plan is _UNKNOWN:
            plan = self.plan(group, ex.model)
        if plan is None:
            return
        subject = ex.subject
        guard = Guard(plan, subject, self.ask)
        if self.tracing is not None and (plan.guard_input or plan.guard_output):
            guard.traced = (self.tracing, ex)
        ex.guard = guard
        if plan.checks_output and ex.call is not None:  # a forwarder reads the answer's texts with its usage
            ex.call.checks_answer = True
        if plan.checks_input:
            if subject is None:
                raise GuardrailBlocked("The request has content the gateway's guardrails cannot inspect.",
                                       code="guardrail_blocked")
            try:
                texts = request_texts(subject)
                if texts and plan.input.clean(texts):  # the common case: one match of the triggers
                    guard.scanned |= INPUT
                else:
                    inspect_request(guard, subject)
                if plan.guard_input:
                    before, beside = plan.guard_input, ()
                    if ex.model in self.private:  # elsewhere (a store group's policy) a parallel guard runs before
                        before = tuple(g for g in plan.guard_input if not g.parallel)
                        beside = tuple(g for g in plan.guard_input if g.parallel)
                    if before:
                        await judge_all(guard, before, conversation(subject), "input", ex.request_id)
                    if beside:
                        guard.pending = asyncio.ensure_future(
                            judge_all(guard, beside, conversation(subject), "input", ex.request_id))
            except BaseException:
                self.on_verdicts(guard, ex)  # the settle of a refused step does not run
                raise
            if guard.sensitive:  # a reroute check matched: compliance routing reads this (docs/guardrails.md)
                ex.sensitive = True
                if self.escalate is not None and guard.raised:
                    await self._escalate(ex, guard, plan)

    async def _escalate(self, ex: Exchange, guard: Guard, plan: Plan) -> None:
        """The reroute checks raised the request's data class: compliance routing (policy/
        compliance.py) may send it to another model (which then gets its own plan's checks, when
        they differ) or refuse it."""
        assert self.escalate is not None and guard.raised is not None
        try:
            moved = await self.escalate(ex, guard.raised)
        except BaseException:
            guard.drop()
            self.on_verdicts(guard, ex)  # the settle of a refused step does not run
            raise
        p = ex.principal
        if moved and self.plan(p.group if p else None, ex.model) is not plan:
            guard.drop()
            self.on_verdicts(guard, ex)
            ex.guard = None
            await self.admit(ex)

    async def settle(self, ex: Exchange) -> None:
        guard = ex.guard
        if guard is not None:
            if guard.pending is not None:
                guard.drop()
            self.on_verdicts(guard, ex)
