"""A run's outputs: JSON (everything), JUnit XML (CI), Markdown (people), Prometheus (dashboards)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from gatehouse.evals.runner import CaseResult, Run


@dataclass
class Rate:
    passed: float = 0.0  # weight of the passed cases
    total: float = 0.0
    counts: dict[str, int] | None = None

    @property
    def ratio(self) -> float:
        return self.passed / self.total if self.total else 0.0


def _add(rate: Rate, r: CaseResult) -> None:
    rate.total += r.weight
    rate.passed += r.weight if r.passed else 0.0
    rate.counts = rate.counts or {"passed": 0, "failed": 0, "error": 0}
    rate.counts[r.status] += 1


def by_model(results: list[CaseResult]) -> dict[str, Rate]:
    out: dict[str, Rate] = defaultdict(Rate)
    for r in results:
        _add(out[r.model], r)
    return dict(sorted(out.items()))


def by_category(results: list[CaseResult]) -> dict[tuple[str, str], Rate]:
    out: dict[tuple[str, str], Rate] = defaultdict(Rate)
    for r in results:
        _add(out[(r.model, r.category)], r)
    return dict(sorted(out.items()))


def below_threshold(results: list[CaseResult], threshold: float) -> list[str]:
    return [m for m, rate in by_model(results).items() if rate.ratio < threshold]


# ---- JSON --------------------------------------------------------------------------------------

def to_json(run: Run, suite_name: str, threshold: float) -> dict[str, Any]:
    models = {m: {"pass_ratio": round(rate.ratio, 4), **(rate.counts or {}),
                  "categories": {c: round(cr.ratio, 4) for (mm, c), cr in by_category(run.results).items() if mm == m}}
              for m, rate in by_model(run.results).items()}
    return {
        "suite": suite_name, "started_at": run.started_at, "duration_s": round(run.duration_s, 3),
        "threshold": threshold, "models": models,
        "results": [{"model": r.model, "case": r.case_id, "category": r.category, "weight": r.weight,
                     "status": r.status, "score": round(r.score, 4),
                     "checks": [asdict(c) for c in r.checks], "response": asdict(r.outcome)} for r in run.results],
    }


# ---- baseline diff -----------------------------------------------------------------------------

@dataclass
class Diff:
    regressions: list[tuple[str, str, str]]  # (model, case, now) that passed in the baseline
    fixed: list[tuple[str, str]]
    ratio_changes: dict[str, tuple[float, float]]  # model -> (baseline, now)


def diff(run: Run, baseline: dict[str, Any]) -> Diff:
    before = {(r["model"], r["case"]): r["status"] for r in baseline.get("results", ())}
    regressions, fixed = [], []
    for r in run.results:
        was = before.get((r.model, r.case_id))
        if was == "passed" and r.status != "passed":
            regressions.append((r.model, r.case_id, r.status))
        elif was is not None and was != "passed" and r.status == "passed":
            fixed.append((r.model, r.case_id))
    old = {m: float(v.get("pass_ratio", 0.0)) for m, v in baseline.get("models", {}).items()}
    changes = {m: (old[m], rate.ratio) for m, rate in by_model(run.results).items() if m in old}
    return Diff(sorted(regressions), sorted(fixed), changes)


# ---- Markdown ----------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def to_markdown(run: Run, suite_name: str, threshold: float, changes: Diff | None) -> str:
    lines = [f"# Eval: {suite_name}", "",
             f"{len(run.results)} cases in {run.duration_s:.1f} s; threshold {_pct(threshold)}.", ""]
    if changes is not None:
        lines += ["## Regressions against the baseline", ""]
        lines += [f"- **{m}** / `{c}`: passed before, {now} now" for m, c, now in changes.regressions] or ["- none"]
        if changes.fixed:
            lines += ["", "Fixed since the baseline: " + ", ".join(f"{m}/`{c}`" for m, c in changes.fixed)]
        lines.append("")
    lines += ["## Pass rate per model", "", "| model | pass rate | passed | failed | errors | vs baseline |",
              "|---|---|---|---|---|---|"]
    for m, rate in by_model(run.results).items():
        c = rate.counts or {}
        base = changes.ratio_changes.get(m) if changes else None
        delta = f"{_pct(base[0])} → {_pct(base[1])}" if base else "—"
        mark = " ⚠ below threshold" if rate.ratio < threshold else ""
        lines.append(f"| {m} | {_pct(rate.ratio)}{mark} | {c.get('passed', 0)} | {c.get('failed', 0)} "
                     f"| {c.get('error', 0)} | {delta} |")
    lines += ["", "## Pass rate per category", "", "| model | category | pass rate | cases |", "|---|---|---|---|"]
    for (m, cat), rate in by_category(run.results).items():
        lines.append(f"| {m} | {cat} | {_pct(rate.ratio)} | {sum((rate.counts or {}).values())} |")
    failures = [r for r in run.results if r.status != "passed"]
    if failures:
        lines += ["", "## Failures", ""]
        for r in failures:
            why = "; ".join(f"{c.type}: {c.reason}" for c in r.checks if not c.passed) or \
                (r.outcome.error_message or f"HTTP {r.outcome.status}")
            lines.append(f"- {r.model} / `{r.case_id}` ({r.category}): {why}")
    return "\n".join(lines) + "\n"


# ---- JUnit XML ---------------------------------------------------------------------------------

def to_junit(run: Run, suite_name: str) -> bytes:
    root = ET.Element("testsuites", name=suite_name, tests=str(len(run.results)),
                      failures=str(sum(r.status == "failed" for r in run.results)),
                      errors=str(sum(r.status == "error" for r in run.results)), time=f"{run.duration_s:.3f}")
    for model in by_model(run.results):
        mine = [r for r in run.results if r.model == model]
        suite = ET.SubElement(root, "testsuite", name=model, tests=str(len(mine)),
                              failures=str(sum(r.status == "failed" for r in mine)),
                              errors=str(sum(r.status == "error" for r in mine)), skipped="0",
                              time=f"{sum(r.outcome.latency_ms for r in mine) / 1000:.3f}")
        for r in mine:
            case = ET.SubElement(suite, "testcase", name=r.case_id, classname=f"{model}.{r.category}",
                                 time=f"{r.outcome.latency_ms / 1000:.3f}")
            if r.status == "error":
                ET.SubElement(case, "error", message=r.outcome.error_message or "no answer",
                              type=r.outcome.error_code or "transport")
            elif r.status == "failed":
                failed = [c for c in r.checks if not c.passed]
                message = "; ".join(f"{c.type}: {c.reason}" for c in failed) or f"HTTP {r.outcome.status}"
                node = ET.SubElement(case, "failure", message=message[:500], type="assertion")
                node.text = r.outcome.text[:2000]
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


# ---- Prometheus --------------------------------------------------------------------------------

def registry_for(run: Run, suite_name: str) -> CollectorRegistry:
    reg = CollectorRegistry()
    ratio = Gauge("gatehouse_eval_pass_ratio", "Weighted pass ratio of the last eval run, per model and category",
                  ["suite", "model", "category"], registry=reg)
    model_ratio = Gauge("gatehouse_eval_model_pass_ratio", "Weighted pass ratio of the last eval run, per model",
                        ["suite", "model"], registry=reg)
    cases = Gauge("gatehouse_eval_cases", "Cases of the last eval run by status", ["suite", "model", "status"],
                  registry=reg)
    Gauge("gatehouse_eval_run_duration_seconds", "Duration of the last eval run", ["suite"],
          registry=reg).labels(suite_name).set(run.duration_s)
    Gauge("gatehouse_eval_run_timestamp_seconds", "When the last eval run started (Unix time)", ["suite"],
          registry=reg).labels(suite_name).set(run.started_at)
    for (m, cat), rate in by_category(run.results).items():
        ratio.labels(suite_name, m, cat).set(rate.ratio)
    for m, rate in by_model(run.results).items():
        model_ratio.labels(suite_name, m).set(rate.ratio)
        for status, n in (rate.counts or {}).items():
            cases.labels(suite_name, m, status).set(n)
    return reg


def write_outputs(out_dir: Path, run: Run, suite_name: str, threshold: float,
                  baseline: dict[str, Any] | None) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    changes = diff(run, baseline) if baseline is not None else None
    files = {
        "json": out_dir / "results.json", "junit": out_dir / "junit.xml",
        "markdown": out_dir / "report.md", "prometheus": out_dir / "eval.prom",
    }
    files["json"].write_text(json.dumps(to_json(run, suite_name, threshold), indent=1, ensure_ascii=False))
    files["junit"].write_bytes(to_junit(run, suite_name))
    files["markdown"].write_text(to_markdown(run, suite_name, threshold, changes))
    files["prometheus"].write_bytes(generate_latest(registry_for(run, suite_name)))
    return files
