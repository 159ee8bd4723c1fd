"""Copies the canonical alert rules and Grafana dashboards into the Helm chart, which can read
only files inside its own directory:

    deploy/prometheus/gatehouse-rules.yaml  ->  deploy/helm/gatehouse/files/prometheus-rules.yaml
    deploy/grafana/dashboards/*.json        ->  deploy/helm/gatehouse/files/dashboards/

Edit the canonical files (the dashboards through deploy/grafana/generate.py), then run
`make chart-observability` (this script). `--check` writes nothing and exits 1 naming every chart
copy that differs, is missing or is left over; tests/deploy/test_chart_observability.py runs it."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "gatehouse-rules.yaml"
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
CHART_FILES = REPO / "deploy" / "helm" / "gatehouse" / "files"
CHART_RULES = CHART_FILES / "prometheus-rules.yaml"
CHART_DASHBOARDS = CHART_FILES / "dashboards"
HEADER = ("# GENERATED from deploy/prometheus/gatehouse-rules.yaml by deploy/helm/sync-observability.py\n"
          "# (`make chart-observability`): do not edit; edit that file and rerun.\n")


def expected() -> dict[Path, str]:
    """Every chart copy and the text it must have."""
    want = {CHART_RULES: HEADER + RULES.read_text()}
    for src in sorted(DASHBOARDS.glob("*.json")):
        want[CHART_DASHBOARDS / src.name] = src.read_text()
    return want


def differences() -> list[str]:
    want = expected()
    out = [f"{p.relative_to(REPO)} differs" for p, text in want.items() if p.exists() and p.read_text() != text]
    out += [f"{p.relative_to(REPO)} is missing" for p in want if not p.exists()]
    out += [f"{p.relative_to(REPO)} has no canonical source" for p in sorted(CHART_DASHBOARDS.glob("*"))
            if p not in want]
    return out


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        stale = differences()
        for line in stale:
            print(f"{line}: run `make chart-observability`", file=sys.stderr)
        return 1 if stale else 0
    if argv:
        print(f"usage: {Path(__file__).name} [--check]", file=sys.stderr)
        return 2
    want = expected()
    CHART_DASHBOARDS.mkdir(parents=True, exist_ok=True)
    for path in CHART_DASHBOARDS.glob("*"):
        if path not in want:
            path.unlink()
            print(f"removed {path.relative_to(REPO)}")
    for path, text in want.items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
