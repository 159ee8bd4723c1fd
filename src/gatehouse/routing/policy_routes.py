"""Routes decided by who asks and what they send, checked at load: a group's default model
(a request without `model`, or with `model: default`) and the compliance section's references
(data classes, detectors, reroute targets). The per-request side is in routing/table.py
(`ModelTable.requested`) and policy/compliance.py; docs/policy-routing.md describes both.
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatehouse.config.schema import Config, DeploymentConfig, ModelConfig
    from gatehouse.policy.compliance import Compliance
    from gatehouse.policy.directory import AccessControl
    from gatehouse.routing.table import ModelTable

DEFAULT = "default"  # the model name that asks for the group's default (unless a model has it)


def group_defaults(cfg: Config) -> dict[str, str]:
    """Group name -> its default model, for the groups that have one."""
    return {name: g.default_model for name, g in cfg.groups.items() if g.default_model}


def allowed_classes(m: ModelConfig, cfg: Config) -> frozenset[str] | None:
    """The data classes model `m` may receive; None: every class (private, or no compliance).
    Undeclared: the classes less sensitive than the first one with a policy."""
    comp = cfg.compliance
    if comp is None or m.private:
        return None
    if m.data_classes is not None:
        return frozenset(m.data_classes)
    first = next((i for i, c in enumerate(comp.classes) if c in comp.policies), len(comp.classes))
    return frozenset(comp.classes[:first])


def follow_groups(table: ModelTable, compliance: Compliance | None, access: AccessControl) -> None:
    """Groups created through the admin API (the store's) have a default model and a data class
    too: the table's defaults and compliance's group classes follow the directory, now and on
    each change (a store group never shadows a config group: the admin API refuses the name)."""
    def update() -> None:
        groups = access.current.groups
        table.defaults = {n: g.default_model for n, g in groups.items() if g.default_model}
        if compliance is not None:
            compliance.set_groups(groups)

    update()
    access.on_change.append(update)


def deployment_classes(m: ModelConfig, d: DeploymentConfig, cfg: Config) -> frozenset[str] | None:
    """The data classes deployment `d` of model `m` may receive: its own `private`/`data_classes`,
    else its model's (None: every class)."""
    if cfg.compliance is None or d.private:
        return None
    if d.data_classes is not None:
        return frozenset(d.data_classes)
    return allowed_classes(m, cfg)


def reachable_classes(m: ModelConfig, cfg: Config) -> frozenset[str] | None:
    """The classes some deployment of `m` may receive (None: every class)."""
    out: set[str] = set()
    for d in m.deployments:
        allowed = deployment_classes(m, d, cfg)
        if allowed is None:
            return None
        out |= allowed
    return frozenset(out)


def check_policy_routing(cfg: Config) -> str | None:
    """The first problem as 'path: message', or None."""
    models = {m.name: m for m in cfg.models}
    for gname, g in cfg.groups.items():
        if g.default_model is not None:
            path = f"groups.{gname}.default_model"
            if g.default_model not in models and g.default_model not in cfg.routers:
                return f"{path}: unknown model '{g.default_model}'"
            if not any(fnmatchcase(g.default_model, pat) for pat in g.models):
                return f"{path}: the group may not use model '{g.default_model}' (its `models` list)"
    from gatehouse.routing.virtual import check_virtual

    return _check_compliance(cfg, models) or check_virtual(cfg)


def _check_compliance(cfg: Config, models: dict[str, ModelConfig]) -> str | None:
    comp = cfg.compliance
    classes = set(comp.classes) if comp is not None else set()
    named = [(f"models[{i}].data_classes", m.data_classes or []) for i, m in enumerate(cfg.models)]
    named += [(f"models[{i}].deployments[{j}].data_classes", d.data_classes or [])
              for i, m in enumerate(cfg.models) for j, d in enumerate(m.deployments)]
    guard_checks = [(f"guardrails.policies.{pn}.checks[{j}]", c)
                    for pn, pol in cfg.guardrails.policies.items() for j, c in enumerate(pol.checks)]
    for path, check in guard_checks:
        if check.data_class is None:
            continue
        if check.action != "reroute" and "reroute" not in check.categories.values():
            return f"{path}.data_class: only for a check whose action is reroute"
        if check.stage == "output":
            return f"{path}.data_class: only for a check on prompts (stage input or both): an answer cannot be rerouted"
        named.append((f"{path}.data_class", [check.data_class]))
    named += [(f"groups.{n}.data_class", [g.data_class] if g.data_class else []) for n, g in cfg.groups.items()]
    for path, names in named:
        for c in names:
            if c not in classes:
                return f"{path}: unknown data class '{c}' (declare it in compliance.classes)"
    if comp is None:
        return None
    if not comp.classes:
        return "compliance.classes: at least one class is required (least sensitive first)"
    if len(classes) != len(comp.classes):
        return "compliance.classes: duplicate class"
    prefixed = [(f"models[{i}]", "model", m.data_classes) for i, m in enumerate(cfg.models)]
    prefixed += [(f"models[{i}].deployments[{j}]", "deployment", d.data_classes)
                 for i, m in enumerate(cfg.models) for j, d in enumerate(m.deployments)]
    for path, what, listed in prefixed:
        if listed:  # a request's class is the highest of its signals: a model takes a prefix
            top = max(comp.classes.index(c) for c in listed)
            missing = [c for c in comp.classes[:top] if c not in listed]
            if missing:
                return (f"{path}.data_classes: a {what} that receives '{comp.classes[top]}' receives every "
                        f"less sensitive class too; add {', '.join(missing)}")
    from gatehouse.policy.guardrails.detectors import BUILTIN  # late: it compiles the detectors

    for det, c in comp.detectors.items():
        if det not in BUILTIN:
            return f"compliance.detectors.{det}: unknown detector (one of {', '.join(sorted(BUILTIN))})"
        if c not in classes:
            return f"compliance.detectors.{det}: unknown data class '{c}'"
    for c, policy in comp.policies.items():
        path = f"compliance.policies.{c}"
        if c not in classes:
            return f"{path}: unknown data class '{c}'"
        if policy == "deny":
            continue
        target = models.get(policy.reroute)
        if target is None:
            return f"{path}.reroute: unknown model '{policy.reroute}'"
        allowed = reachable_classes(target, cfg)
        if allowed is not None and c not in allowed:
            return (f"{path}.reroute: model '{policy.reroute}' may not receive class '{c}' "
                    "(make it or a deployment private: true, or list the class in its data_classes)")
    return None
