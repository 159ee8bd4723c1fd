"""One source of truth for alert rules and dashboards: deploy/prometheus/gatehouse-rules.yaml and
deploy/grafana/dashboards/ (tested in tests/observability). The chart ships copies that
deploy/helm/sync-observability.py writes (Helm reads only files inside the chart); compose mounts
the canonical files themselves."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import yaml

from tests.deploy.manifests import REPO, of_kind, rendered

SYNC = REPO / "deploy" / "helm" / "sync-observability.py"
RULES = REPO / "deploy" / "prometheus" / "gatehouse-rules.yaml"
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"


def _sync_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_observability", SYNC)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_chart_copies_are_the_canonical_files() -> None:
    proc = subprocess.run([sys.executable, str(SYNC), "--check"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    chart = REPO / "deploy" / "helm" / "gatehouse" / "files"
    assert yaml.safe_load((chart / "prometheus-rules.yaml").read_text()) == yaml.safe_load(RULES.read_text())
    assert sorted(p.name for p in (chart / "dashboards").glob("*")) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert len(list(DASHBOARDS.glob("*.json"))) == 5


def test_the_check_names_a_stale_missing_or_extra_copy_and_the_sync_repairs_it(tmp_path: Path) -> None:
    """The sync script run over a copy of the tree: an edited canonical rule, a deleted chart
    dashboard and a chart-only dashboard are each reported, and a sync leaves nothing to report."""
    sync = _sync_module()
    shutil.copytree(REPO / "deploy" / "prometheus", tmp_path / "deploy" / "prometheus")
    shutil.copytree(DASHBOARDS, tmp_path / "deploy" / "grafana" / "dashboards")
    shutil.copytree(REPO / "deploy" / "helm" / "gatehouse" / "files", tmp_path / "deploy" / "helm" / "gatehouse" / "files")
    sync.REPO = tmp_path
    sync.RULES = tmp_path / "deploy" / "prometheus" / "gatehouse-rules.yaml"
    sync.DASHBOARDS = tmp_path / "deploy" / "grafana" / "dashboards"
    sync.CHART_FILES = tmp_path / "deploy" / "helm" / "gatehouse" / "files"
    sync.CHART_RULES = sync.CHART_FILES / "prometheus-rules.yaml"
    sync.CHART_DASHBOARDS = sync.CHART_FILES / "dashboards"
    assert sync.differences() == []
    sync.RULES.write_text(sync.RULES.read_text().replace("> 0.05", "> 0.06"))
    (sync.CHART_DASHBOARDS / "gatehouse-usage.json").unlink()
    (sync.CHART_DASHBOARDS / "gatehouse-old.json").write_text("{}")
    assert sync.main(["--check"]) == 1
    assert sorted(sync.differences()) == [
        "deploy/helm/gatehouse/files/dashboards/gatehouse-old.json has no canonical source",
        "deploy/helm/gatehouse/files/dashboards/gatehouse-usage.json is missing",
        "deploy/helm/gatehouse/files/prometheus-rules.yaml differs",
    ]
    assert sync.main([]) == 0
    assert sync.differences() == [] and sync.main(["--check"]) == 0
    assert "> 0.06" in sync.CHART_RULES.read_text()


def test_the_dashboards_config_map_carries_every_canonical_dashboard() -> None:
    for values in ("eks-ollama", "eks-vllm"):
        maps = [d for d in of_kind(rendered(values), "ConfigMap") if d["metadata"]["name"] == "gh-gatehouse-dashboards"]
        assert len(maps) == 1, values
        assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
        data = maps[0]["data"]
        assert sorted(data) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
        for name, text in data.items():
            assert json.loads(text) == json.loads((DASHBOARDS / name).read_text()), name
        uids = [json.loads(text)["uid"] for text in data.values()]
        assert len(set(uids)) == len(uids) == 5


def test_laptop_kind_ships_neither_rules_nor_dashboards_it_does_not_enable() -> None:
    docs = rendered("laptop-kind")
    assert not of_kind(docs, "PrometheusRule")
    assert not [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboards")]
