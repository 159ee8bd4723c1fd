"""Default deny for the namespace, then exactly the flow matrix of docs/deploy-kubernetes.md.

The allowed flows are computed from the rendered NetworkPolicies (which pods each selects, which
peers and ports each rule opens) and compared with the matrix written out below, so a missing or
an extra allow fails. Pod-to-pod flows must be allowed at both ends (egress at the source and
ingress at the destination), or default deny drops them."""
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.manifests import (
    VALUES_FILES,
    merged_values,
    of_kind,
    pod_labels,
    render,
    rendered,
    selects,
    workloads,
)

Flow = tuple[str, str, str]  # (from, to, port/protocol)


def _components(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {pod_labels(d)["app.kubernetes.io/component"]: pod_labels(d) for d in workloads(docs)}


def _peer_names(peer: dict[str, Any], values: dict[str, Any], pods: dict[str, dict[str, str]]) -> list[str]:
    """Name a peer: a release component, or the values entry it came from."""
    np = values["networkPolicy"]
    if set(peer) == {"podSelector"}:
        return [c for c, labels in pods.items() if selects(peer["podSelector"].get("matchLabels", {}), labels)] \
            or [f"pods{json.dumps(peer)}"]
    if peer in np["clients"]:
        return ["clients"]
    if peer in np["prometheus"]:
        return ["prometheus"]
    if peer.get("namespaceSelector", {}).get("matchLabels") == np["dns"]["namespaceSelector"] and \
            peer.get("podSelector", {}).get("matchLabels") == np["dns"]["podSelector"]:
        return ["dns"]
    cidr = peer.get("ipBlock", {}).get("cidr")
    if cidr in np["database"]["postgres"]["cidrs"] and cidr in np["database"]["redis"]["cidrs"]:
        return ["database-subnets"]
    for name in ("providerEgress", "downloadEgress"):
        if cidr in np[name]["cidrs"] and peer["ipBlock"].get("except", []) == np[name]["except"]:
            return ["internet-https"]
    return [f"other{json.dumps(peer, sort_keys=True)}"]


def _ports(rule: dict[str, Any]) -> list[str]:
    return [f"{p['port']}/{p.get('protocol', 'TCP')}" for p in rule.get("ports", [])] or ["any"]


def flows(values: str, *extra: str) -> tuple[set[Flow], set[Flow]]:
    """(ingress flows, egress flows) the rendered policies allow (`extra`: --set flags)."""
    docs = render(values, *extra) if extra else rendered(values)
    vals = merged_values(values)
    pods = _components(docs)
    ingress: set[Flow] = set()
    egress: set[Flow] = set()
    for pol in of_kind(docs, "NetworkPolicy"):
        targets = [c for c, labels in pods.items() if selects(pol["spec"]["podSelector"].get("matchLabels", {}), labels)]
        for rule in pol["spec"].get("ingress", []):
            for peer in rule["from"]:
                for src in _peer_names(peer, vals, pods):
                    ingress |= {(src, t, port) for t in targets for port in _ports(rule)}
        for rule in pol["spec"].get("egress", []):
            for peer in rule["to"]:
                for dst in _peer_names(peer, vals, pods):
                    egress |= {(t, dst, port) for t in targets for port in _ports(rule)}
    return ingress, egress


DNS = {"53/UDP", "53/TCP"}


def _dns(components: set[str]) -> set[Flow]:
    return {(c, "dns", p) for c in components for p in DNS}


GATEWAY_IN = {("clients", "gateway", "8080/TCP"), ("prometheus", "gateway", "8080/TCP")}
UI = {("clients", "open-webui", "8080/TCP"), ("open-webui", "gateway", "8080/TCP")}
EVAL = {("eval", "gateway", "8080/TCP")}     # the nightly eval CronJob; Postgres below (evals.record)

MATRIX: dict[str, set[Flow]] = {
    "laptop-kind": GATEWAY_IN | UI | EVAL | {
        ("gateway", "ollama", "11434/TCP"), ("model-pull", "ollama", "11434/TCP"),
        ("gateway", "postgresql", "5432/TCP"), ("gateway", "redis", "6379/TCP"),
        ("ollama", "internet-https", "443/TCP"), ("eval", "postgresql", "5432/TCP"),
    } | _dns({"gateway", "ollama", "model-pull", "open-webui", "postgresql", "redis", "eval"}),
    "eks-ollama": GATEWAY_IN | UI | EVAL | {
        ("gateway", "ollama", "11434/TCP"), ("model-pull", "ollama", "11434/TCP"),
        ("gateway", "database-subnets", "5432/TCP"), ("gateway", "database-subnets", "6379/TCP"),
        ("migrations", "database-subnets", "5432/TCP"), ("ollama", "internet-https", "443/TCP"),
        ("eval", "database-subnets", "5432/TCP"),
    } | _dns({"gateway", "migrations", "ollama", "model-pull", "open-webui", "eval"}),
    "eks-vllm": GATEWAY_IN | UI | EVAL | {
        ("gateway", "vllm", "8000/TCP"), ("prometheus", "vllm", "8000/TCP"),
        ("gateway", "database-subnets", "5432/TCP"), ("gateway", "database-subnets", "6379/TCP"),
        ("gateway", "internet-https", "443/TCP"),          # Bedrock, STS
        ("migrations", "database-subnets", "5432/TCP"), ("model-preload", "internet-https", "443/TCP"),
        ("eval", "database-subnets", "5432/TCP"),
    } | _dns({"gateway", "migrations", "vllm", "model-preload", "open-webui", "eval"}),
}
IN_RELEASE = {"gateway", "migrations", "vllm", "model-preload", "ollama", "model-pull", "open-webui", "postgresql",
              "redis", "eval"}


@pytest.mark.parametrize("values", VALUES_FILES)
def test_default_deny_covers_every_pod_of_the_namespace(values: str) -> None:
    policies = of_kind(rendered(values), "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1
    assert sorted(deny[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny[0]["spec"] and "egress" not in deny[0]["spec"]
    # every allow names its pods; none opens a whole namespace's pods to everything
    for p in policies:
        if p is not deny[0]:
            assert p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "gh"
            for rule in p["spec"].get("ingress", []) + p["spec"].get("egress", []):
                assert rule.get("from", rule.get("to")), f"{p['metadata']['name']}: a rule without peers allows all"
                assert rule.get("ports"), f"{p['metadata']['name']}: a rule without ports allows every port"


@pytest.mark.parametrize("values", VALUES_FILES)
def test_allowed_flows_are_exactly_the_flow_matrix(values: str) -> None:
    ingress, egress = flows(values)
    pod_to_pod_in = {f for f in ingress if f[0] in IN_RELEASE}
    pod_to_pod_out = {f for f in egress if f[1] in IN_RELEASE}
    # both ends agree, or default deny drops the flow
    assert pod_to_pod_in == pod_to_pod_out
    allowed = ingress | egress
    assert allowed == MATRIX[values], (
        f"extra: {sorted(allowed - MATRIX[values])}\nmissing: {sorted(MATRIX[values] - allowed)}")


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_pod_has_an_allow_policy_for_its_flows(values: str) -> None:
    docs = rendered(values)
    named = [p for p in of_kind(docs, "NetworkPolicy") if p["spec"]["podSelector"] != {}]
    for doc in workloads(docs):
        labels = pod_labels(doc)
        own = [p for p in named if "app.kubernetes.io/component" in p["spec"]["podSelector"]["matchLabels"]
               and selects(p["spec"]["podSelector"]["matchLabels"], labels)]
        assert len(own) == 1, labels["app.kubernetes.io/component"]
