"""Validate rendered Kubernetes manifests offline; run by tests/deploy in the deploy-tools venv.

Reads {"versions": [...], "crd_dir": DIR, "documents": [{"source": S, "doc": {...}}]} on stdin and
prints a JSON list of problems. Built-in kinds are checked against kubernetes-validate's strict
schemas for every version given; a built-in kind without a schema (a removed apiVersion) is a
problem, not the library's warning. Custom resources are checked against the vendored CRD JSON
schemas ({group}/{kind}_{version}.json) and their CEL rules (x-kubernetes-validations) that
cel-python can evaluate.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

try:  # CEL rules are a bonus: the schema check stands without them
    import celpy
except ImportError:  # pragma: no cover - cel-python is in deploy/tools-requirements.txt
    celpy = None


def _crd_schema(crd_dir: Path, api_version: str, kind: str) -> Path | None:
    if "/" not in api_version:
        return None
    group, version = api_version.split("/", 1)
    path = crd_dir / group / f"{kind.lower()}_{version}.json"
    return path if path.exists() else None


def _cel_value(value: Any) -> Any:
    return celpy.json_to_cel(value)


CEL_EVALUATED = [0]


def _cel_problems(schema: dict[str, Any], doc: Any, where: str) -> list[str]:
    """Evaluate each x-kubernetes-validations rule cel-python can compile against `self`."""
    problems: list[str] = []
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []) if isinstance(schema, dict) else []:
        text = rule.get("rule", "")
        if "oldSelf" in text:
            continue  # transition rules need the previous object
        try:
            program = env.program(env.compile(text))
            ok = program.evaluate({"self": _cel_value(doc)})
        except Exception:
            continue
        if isinstance(ok, celpy.evaluation.CELEvalError):
            continue  # e.g. split(), a Kubernetes extension cel-python lacks
        CEL_EVALUATED[0] += 1
        if not bool(ok):
            problems.append(f"{where}: CEL rule failed: {rule.get('message') or text}")
    if isinstance(doc, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in doc:
                problems += _cel_problems(sub, doc[key], f"{where}.{key}")
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(doc):
            problems += _cel_problems(schema["items"], item, f"{where}[{i}]")
    return problems


def check(doc: dict[str, Any], source: str, versions: list[str], crd_dir: Path) -> list[str]:
    kind, api_version = doc.get("kind", "?"), doc.get("apiVersion", "?")
    name = f"{source}: {kind} {doc.get('metadata', {}).get('name', '?')} ({api_version})"
    crd = _crd_schema(crd_dir, api_version, kind)
    if crd is not None:
        schema = json.loads(crd.read_text())
        validator = jsonschema.Draft7Validator(schema)
        problems = [f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                    for e in validator.iter_errors(doc)]
        if celpy is not None:
            problems += _cel_problems(schema, doc, name)
        return problems
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    builtin = "." not in group or group.endswith(".k8s.io") and not group.startswith(("gateway.", "secrets-store."))
    if not builtin:
        return [f"{name}: no schema for this custom resource (vendor it under {crd_dir})"]
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(map(str, e.path))
            problems.append(f"{name} @ {version}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name} @ {version}: no such built-in kind/apiVersion")
    return problems


def main() -> int:
    job = json.load(sys.stdin)
    crd_dir = Path(job["crd_dir"])
    problems: list[str] = []
    for item in job["documents"]:
        problems += check(item["doc"], item["source"], job["versions"], crd_dir)
    json.dump({"problems": problems, "cel": celpy is not None, "cel_evaluated": CEL_EVALUATED[0]}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
