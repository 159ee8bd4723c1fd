"""The chart and config reload (docs/operations.md#reload): by default a changed config rolls
the gateway pods (checksum/config); with config.server.reload_watch the pods read the
updated ConfigMap themselves, so a config change is no rollout."""
from __future__ import annotations

from tests.deploy.manifests import of_kind, pod_labels, render


def gateway_annotations(*extra: str) -> dict[str, str]:
    docs = render(None, *extra)
    gw = next(d for d in of_kind(docs, "Deployment") if pod_labels(d)["app.kubernetes.io/component"] == "gateway")
    annotations: dict[str, str] = gw["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations


def test_a_config_change_rolls_the_pods_unless_they_watch_the_file() -> None:
    assert "checksum/config" in gateway_annotations()
    watching = gateway_annotations("--set", "config.server.reload_watch=true")
    assert "checksum/config" not in watching
    docs = render(None, "--set", "config.server.reload_watch=true")
    cm = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "gh-gatehouse")
    assert "reload_watch: true" in cm["data"]["config.yaml"]
