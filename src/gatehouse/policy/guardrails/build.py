"""Build the guardrail step from the config (None when no policy is configured: no step at all)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gatehouse.policy.guardrails.engine import compile_policies
from gatehouse.policy.guardrails.step import Guard, GuardrailStep

if TYPE_CHECKING:
    from gatehouse.config import Config
    from gatehouse.observability.metrics import Metrics
    from gatehouse.policy.directory import AccessControl
    from gatehouse.policy.pipeline import Exchange


def build_step(cfg: Config, directory: AccessControl, metrics: Metrics) -> GuardrailStep | None:
    if not cfg.guardrails.policies:
        return None
    policies = compile_policies(cfg.guardrails)
    model_policies = {m.name: list(m.guardrails) for m in cfg.models if m.guardrails}
    verdicts = metrics.track_guardrails()

    def group_policies(group: str | None) -> list[str]:
        spec = directory.current.groups.get(group) if group else None
        return list(spec.guardrails) if spec is not None else []

    def on_verdicts(guard: Guard, ex: Exchange) -> None:
        guard.finish()
        p = ex.principal
        group = metrics.group(p.group if p else None)
        for (check, stage), (verdict, action, _category, policy) in guard.verdicts.items():
            verdicts.labels(check, policy, stage, verdict, action, group).inc()
        ex.notes["guardrails"] = guard.audit()  # the access log's record of what ran

    step = GuardrailStep(policies, model_policies, group_policies, on_verdicts)
    directory.on_change.append(step.forget)
    return step
