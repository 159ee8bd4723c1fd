"""Build the guardrail step from the config (None when no policy is configured: no step at all)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gatehouse.errors import UpstreamUnavailable
from gatehouse.policy.guardrails.engine import compile_policies
from gatehouse.policy.guardrails.guard_model import Ask, compile_guard_models
from gatehouse.policy.guardrails.step import Guard, GuardrailStep
from gatehouse.providers.base import CallContext
from gatehouse.types import ChatRequest, Message, TextPart

if TYPE_CHECKING:
    from gatehouse.config import Config
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.observability.metrics import Metrics
    from gatehouse.observability.tracing import Tracing
    from gatehouse.policy.directory import AccessControl
    from gatehouse.routing.table import ModelEntry


def asker(models: dict[str, ModelEntry]) -> Ask:
    """Ask a configured model (its deployments in order, skipping ejected ones) for a verdict.
    The guard's tokens are not metered (docs/guardrails.md#guard-models)."""

    async def ask(model: str, messages: list[Message], timeout: float, request_id: str,
                  traceparent: str | None) -> str:
        entry = models[model]
        last: Exception = UpstreamUnavailable(f"Every upstream for guard model '{model}' is failing.")
        for dep in entry.deployments:
            if not dep.breaker.allow():
                continue
            ctx = CallContext(request_id, entry.name, dep.upstream_model, {}, dep.model_swap, False, traceparent)
            req = ChatRequest(model=entry.name, messages=messages, max_tokens=32, temperature=0.0)
            try:
                resp = await dep.provider.chat(req, ctx)
            except Exception as e:
                dep.breaker.record_failure()
                last = e
                continue
            dep.breaker.record_success()
            return "".join(p.text for p in resp.content if isinstance(p, TextPart))
        raise last

    return ask


def build_step(cfg: Config, directory: AccessControl, metrics: Metrics,
               models: dict[str, ModelEntry], tracing: Tracing | None = None) -> GuardrailStep | None:
    if not cfg.guardrails.policies:
        return None
    policies = compile_policies(cfg.guardrails)
    guards = compile_guard_models(cfg.guardrails)
    model_policies = {m.name: list(m.guardrails) for m in cfg.models if m.guardrails}
    verdicts = metrics.track_guardrails()

    def group_policies(group: str | None) -> list[str]:
        spec = directory.current.groups.get(group) if group else None
        return list(spec.guardrails) if spec is not None else []

    full = cfg.guardrails.audit_log == "full"

    def on_verdicts(guard: Guard, ex: Exchange) -> None:
        # (nothing but passes: the outcome audit.outcome keeps under the scanned stages alone)
        out = None if guard.verdicts else guard.plan.outcomes.get(guard.scanned)
        if out is None:
            out = guard.finish()
        p = ex.principal
        group = p.group if p else None
        verdicts.count(out, group if group in metrics.groups else "")  # (metrics.group, without the call)
        # the access log's record of what ran (JSON, built once per outcome)
        ex.guard_audit = out.json if full else out.findings
        ex.guard_outcome = out

    private = frozenset(m.name for m in cfg.models if m.private)
    step = GuardrailStep(policies, model_policies, group_policies, on_verdicts, guards, asker(models), private,
                         tracing if guards else None)
    directory.on_change.append(step.forget)
    return step
