"""The `guardrails:` config section's load-time checks (its structs are in config/schema.py)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gatehouse.config.schema import GuardCheckConfig, GuardPolicyConfig, GuardrailsConfig

__all__ = ["GuardCheckConfig", "GuardPolicyConfig", "GuardrailsConfig", "check_parallel", "check_policies"]


def check_policies(cfg: GuardrailsConfig) -> str | None:
    """The first problem as 'path: message', or None. Compiles every pattern (RE2)."""
    from gatehouse.policy.guardrails.engine import compile_check  # late: it imports re2
    from gatehouse.policy.guardrails.guard_model import compile_guard

    for pname, policy in cfg.policies.items():
        if not policy.checks:
            return f"guardrails.policies.{pname}.checks: at least one check is required"
        names: set[str] = set()
        for i, check in enumerate(policy.checks):
            path = f"guardrails.policies.{pname}.checks[{i}]"
            problem = _check_one(check)
            if problem is None:
                try:
                    if check.type == "guard_model":
                        compile_guard(check, pname)
                    else:
                        compile_check(check)
                except ValueError as e:
                    problem = str(e)
            if problem:
                return f"{path}.{problem}"
            name = check.name or check.type
            if name in names:
                return f"{path}.name: duplicate check name '{name}' in the policy (set `name`)"
            names.add(name)
    return None


def _check_one(c: GuardCheckConfig) -> str | None:
    if c.type == "keywords":
        if not c.words or any(not w.strip() for w in c.words):
            return "words: keywords need a non-empty list of non-empty words"
    elif c.words:
        return f"words: only for type 'keywords' (this check is '{c.type}')"
    if c.type == "regex":
        if not c.patterns or any(not p for p in c.patterns):
            return "patterns: regex needs a non-empty list of patterns"
        if not 1 <= c.max_length <= 4096:
            return "max_length: must be 1..4096 characters"
    elif c.patterns:
        return f"patterns: only for type 'regex' (this check is '{c.type}')"
    if c.type == "high_entropy" and (c.min_length < 8 or not 0 < c.min_entropy <= 8):
        return "min_length: at least 8, and min_entropy in (0, 8] bits per character"
    guard_fields = c.model is not None or c.categories or c.unsafe_pattern is not None
    if c.type == "guard_model":
        if not c.model:
            return "model: guard_model needs the name of a configured model"
        if c.action == "redact" or "redact" in c.categories.values():
            return "action: a guard model cannot redact (block, flag or reroute)"
        if c.format == "regex" and not c.unsafe_pattern:
            return "unsafe_pattern: the regex format needs the pattern that marks an answer unsafe"
        if not 0 < c.timeout_seconds <= 120:
            return "timeout_seconds: must be more than 0 and at most 120"
        if c.mode == "parallel" and c.stage == "output":
            return "mode: parallel is for prompts (stage input or both); an answer is judged once it is whole"
        if c.mode == "parallel" and (c.action == "reroute" or "reroute" in c.categories.values()):
            return "action: a parallel guard cannot reroute (the upstream is already chosen when it answers)"
    elif guard_fields or c.mode != "before":
        return ("model: model, categories, unsafe_pattern and mode are only for type 'guard_model' "
                f"(this check is '{c.type}')")
    if c.name is not None and not c.name.replace("-", "").replace("_", "").isalnum():
        return "name: letters, digits, '-' and '_' only"
    return None


def check_parallel(cfg: GuardrailsConfig, models: Sequence[Any], groups: dict[str, Any]) -> str | None:
    """A policy with a `mode: parallel` guard lets the upstream see the prompt before the guard
    judged it: it may only apply to `private: true` models (docs/guardrails.md#parallel-mode).
    `models`: the config's ModelConfig list; `groups`: its GroupConfig by name."""
    from fnmatch import fnmatchcase

    parallel = {n for n, p in cfg.policies.items()
                if any(c.type == "guard_model" and c.mode == "parallel" for c in p.checks)}
    if not parallel:
        return None
    why = "has a mode: parallel guard model, so the upstream sees prompts before the guard judged them"
    for i, m in enumerate(models):
        for k, name in enumerate(m.guardrails):
            if name in parallel and not m.private:
                return f"models[{i}].guardrails[{k}]: policy '{name}' {why}; model '{m.name}' must be private: true"
    for gname, g in groups.items():
        for k, name in enumerate(g.guardrails):
            if name not in parallel:
                continue
            for m in models:
                if not m.private and any(fnmatchcase(m.name, pat) for pat in g.models):
                    return (f"groups.{gname}.guardrails[{k}]: policy '{name}' {why}; the group's model "
                            f"'{m.name}' must be private: true")
    return None
