"""Import the common subset of a promptfoo config as a Gatehouse suite.

Supported: `prompts` (strings, or objects with `raw`), `providers` that are OpenAI-compatible
(`openai:chat:MODEL`, `openai:completion:MODEL`, `openai:MODEL`, or `{id: ...}` objects; the base
URL is the gateway's, not the config's), `tests` with `vars`, `assert` and `description`,
`defaultTest` (`vars`, `assert`, `options.provider` as the judge). Assertions of other types are
skipped with a warning, never run half-understood.
"""
from __future__ import annotations

from typing import Any

from gatehouse.evals.suite import Suite, SuiteError, parse_suite

# promptfoo assertion type -> ours; latency and cost carry their limit in `threshold`.
_TYPES = {
    "equals": "equals", "contains": "contains", "icontains": "icontains", "not-contains": "not-contains",
    "not-icontains": "not-icontains", "regex": "regex", "not-regex": "not-regex", "is-json": "is-json",
    "llm-rubric": "llm-rubric", "model-graded-closedqa": "model-graded", "latency": "latency-ms", "cost": "cost",
    "is-refusal": "refusal", "not-is-refusal": "not-refusal",
}
_PREFIXES = ("openai:chat:", "openai:completion:", "openai:responses:", "openai:")


def _model(provider: Any) -> str:
    pid = provider.get("id") if isinstance(provider, dict) else provider
    if not isinstance(pid, str):
        raise SuiteError(f"promptfoo: a provider without an id: {provider!r}")
    for prefix in _PREFIXES:
        if pid.startswith(prefix):
            return pid[len(prefix):]
    raise SuiteError(f"promptfoo: provider '{pid}' is not OpenAI-compatible; point it at the gateway "
                     "as openai:chat:MODEL")


def _assertion(a: dict[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    kind = a.get("type", "")
    ours = _TYPES.get(kind)
    if ours is None:
        warnings.append(f"skipped assertion type '{kind}' (not supported)")
        return None
    out: dict[str, Any] = {"type": ours}
    if ours in ("latency-ms", "cost"):
        out["value"] = a.get("threshold")
    else:
        if "value" in a:
            out["value"] = a["value"]
        if a.get("threshold") is not None:
            out["threshold"] = a["threshold"]
    if "weight" in a:
        out["weight"] = a["weight"]
    return out


def _prompts(raw: Any) -> list[str]:
    prompts = raw if isinstance(raw, list) else [raw]
    out = []
    for p in prompts:
        text = p.get("raw") if isinstance(p, dict) else p
        if not isinstance(text, str) or text.startswith("file://"):
            raise SuiteError(f"promptfoo: only inline prompts are supported, not {p!r}")
        out.append(text)
    return out


def from_promptfoo(data: Any, judge: str | None = None) -> tuple[Suite, list[str]]:
    """(the suite, warnings about what was left out)."""
    if not isinstance(data, dict):
        raise SuiteError("promptfoo: the config is not a mapping")
    warnings: list[str] = []
    prompts = _prompts(data.get("prompts", []))
    models = [_model(p) for p in data.get("providers", [])]
    default = data.get("defaultTest") or {}
    judge_provider = (default.get("options") or {}).get("provider")
    judge = judge or (_model(judge_provider) if judge_provider else None)
    cases = []
    for ti, test in enumerate(data.get("tests") or [{}]):
        asserts = [x for a in [*default.get("assert", []), *test.get("assert", [])]
                   if (x := _assertion(a, warnings)) is not None]
        variables = {**default.get("vars", {}), **test.get("vars", {})}
        for pi, prompt in enumerate(prompts):
            cid = f"test-{ti + 1}" + (f"-prompt-{pi + 1}" if len(prompts) > 1 else "")
            cases.append({"id": cid, "description": test.get("description", ""), "prompt": prompt,
                          "vars": variables, "assert": asserts,
                          **({"category": test["metadata"]["category"]}
                             if isinstance(test.get("metadata"), dict) and "category" in test["metadata"] else {})})
    suite: dict[str, Any] = {"description": data.get("description", "imported from promptfoo"),
                             "models": models, "cases": cases}
    if judge:
        suite["judge"] = {"model": judge}
    return parse_suite(suite, "promptfoo"), sorted(set(warnings))
