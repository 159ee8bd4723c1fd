"""The chart renders for every values file and passes helm lint, the Kubernetes schemas of the
oldest and newest supported versions, the vendored CRD schemas (with their CEL rules), checkov
with the reviewed baseline, and promtool on the rendered PrometheusRule (the canonical rules)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    CEL_EVALUATED,
    CHART,
    KUBE_VERSIONS,
    REPO,
    VALUES_DIR,
    VALUES_FILES,
    RenderError,
    of_kind,
    render,
    rendered,
    run,
    tool,
    validate,
)


@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_lint_strict(values: str) -> None:
    proc = run([tool("helm"), "lint", "--strict", CHART, "-f", VALUES_DIR / f"{values}.yaml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_helm_lint_strict_on_chart_defaults() -> None:
    proc = run([tool("helm"), "lint", "--strict", CHART])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_values_file_renders_at_each_supported_version(kube_version: str) -> None:
    for values in VALUES_FILES:
        assert render(values, kube_version=kube_version) == rendered(values)


def test_kube_versions_below_the_floor_are_refused() -> None:
    with pytest.raises(RenderError, match="kubeVersion"):
        render("laptop-kind", kube_version="1.27.0")


def test_manifests_match_kubernetes_and_crd_schemas() -> None:
    """Every object of every values file, plus the optional parts the files leave off."""
    documents = [(values, d) for values in VALUES_FILES for d in rendered(values)]
    extra = render("eks-ollama", "--set", "gateway.ingress.enabled=true", "--set",
                   "gateway.ingress.className=alb", "--set", "gateway.ingress.tlsSecretName=llm-tls")
    documents += [("eks-ollama+ingress", d) for d in extra if d["kind"] == "Ingress"]
    kinds = {d["kind"] for _, d in documents}
    # the custom resources the issue names are all among what was checked
    assert {"ScaledObject", "NodePool", "EC2NodeClass", "ServiceMonitor", "PrometheusRule", "ExternalSecret",
            "HTTPRoute", "Ingress"} <= kinds
    assert validate(documents) == []
    print(f"CEL rules evaluated: {CEL_EVALUATED[-1]}")
    assert CEL_EVALUATED[-1] >= 20  # Karpenter's and KEDA's rules did run


def test_the_validator_catches_schema_cel_and_removed_api_problems() -> None:
    """The check above can fail: a bad field, a CEL rule, a removed apiVersion, an unknown CRD."""
    docs = rendered("eks-vllm")
    node_class = next(d for d in of_kind(docs, "EC2NodeClass"))
    bad_alias = json.loads(json.dumps(node_class))
    # passes the JSON schema, not CEL: an alias must be the only AMI selector term
    bad_alias["spec"]["amiSelectorTerms"] = [{"alias": "al2023@latest"}, {"tags": {"team": "ml"}}]
    scaled = json.loads(json.dumps(of_kind(docs, "ScaledObject")[0]))
    scaled["spec"]["cooldownPeriod"] = "300s"
    deployment = json.loads(json.dumps(of_kind(docs, "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = {"a": 1}
    old_pdb = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"},
               "spec": {"maxUnavailable": 1}}
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}}
    problems = validate([("bad", bad_alias), ("bad", scaled), ("bad", deployment), ("bad", old_pdb),
                         ("bad", unknown)])
    text = "\n".join(problems)
    assert "CEL rule failed" in text and "EC2NodeClass" in text
    assert "ScaledObject" in text and "cooldownPeriod" in text
    assert "Deployment" in text and "cpu" in text
    assert "policy/v1beta1" in text and "no such built-in kind" in text
    assert "Widget" in text and "no schema for this custom resource" in text


@pytest.mark.parametrize("setting, message", [
    ("gateway.replicas=0", "gateway.replicas"),
    ("gateway.replica=2", "replica is not allowed"),
    ("vllmDefaults.autoscaling.targetRunningRatio=1.5", "targetRunningRatio"),
    ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
    ("karpenter.capacityTypes={spot,preemptible}", "capacityTypes"),
])
def test_values_schema_refuses_bad_values(setting: str, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render("eks-vllm", "--set", setting)


def test_required_values_fail_with_a_message() -> None:
    with pytest.raises(RenderError, match="karpenter.nodeClass.role is required"):
        render("eks-vllm", "--set", "karpenter.nodeClass.role=")
    with pytest.raises(RenderError, match="postgresql.password is required"):
        render("laptop-kind", "--set", "postgresql.password=")
    with pytest.raises(RenderError, match="migrations.enabled needs a database"):
        render("laptop-kind", "--set", "migrations.enabled=true")


def test_checkov_has_no_findings_beyond_the_reviewed_baseline(tmp_path: Path) -> None:
    checkov = tool("checkov")
    for values in VALUES_FILES:
        (tmp_path / f"{values}.yaml").write_text(yaml.safe_dump_all(rendered(values)))
    (tmp_path / "Dockerfile").write_text((REPO / "Dockerfile").read_text())
    proc = run([checkov, "-d", tmp_path, "--framework", "kubernetes", "dockerfile", "--config-file",
                REPO / "deploy" / "checkov.yaml", "-o", "json"])
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    failed = [f"{f['check_id']} {f['resource']} ({f['file_path']})"
              for r in reports for f in r["results"]["failed_checks"]]
    assert failed == []
    assert sum(r["summary"]["passed"] for r in reports) > 500


def test_promtool_accepts_the_rendered_prometheus_rule(tmp_path: Path) -> None:
    """The PrometheusRule carries the canonical rule set (deploy/prometheus/gatehouse-rules.yaml,
    unit-tested alert by alert in tests/observability/rules_test.yaml), every rule of it."""
    promtool = tool("promtool")
    rules = of_kind(rendered("eks-vllm"), "PrometheusRule")
    assert len(rules) == 1
    canonical = yaml.safe_load((REPO / "deploy/prometheus/gatehouse-rules.yaml").read_text())
    assert rules[0]["spec"] == canonical
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules[0]["spec"]))
    proc = run([promtool, "check", "rules", path])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = sum(len(g["rules"]) for g in canonical["groups"])
    assert count >= 40 and f"SUCCESS: {count} rules found" in proc.stdout
