"""`gatehouse eval` against a real gateway over real sockets: every assertion type passes and
fails where it should, reports are written, retries happen, and /metrics shows recorded runs."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatehouse.cli import main
from tests.conftest import ADMIN_KEY, ALICE_KEY
from tests.support import Gatehouse, run_cli as gatehouse_cli
from tests.upstreams import eval_wire
from tests.upstreams.harness import ServerThread

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
SCHEMA = {"type": "object", "required": ["name", "size"], "properties": {"size": {"type": "integer"}}}

# (case id, case fields); ids ending in "-pass" must pass and "-fail" must fail.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("equals-pass", {"prompt": "hi {{who}}", "vars": {"who": "there"},
                     "assert": [{"type": "equals", "value": "echo: hi there"}]}),
    ("equals-fail", {"prompt": "hi", "assert": [{"type": "equals", "value": "hello"}]}),
    ("contains-pass", {"prompt": "alpha beta", "assert": [{"type": "contains", "value": "beta"}]}),
    ("contains-fail", {"prompt": "alpha", "assert": [{"type": "contains", "value": "Alpha"}]}),
    ("icontains-pass", {"prompt": "alpha", "assert": [{"type": "icontains", "value": "ALPHA"}]}),
    ("icontains-fail", {"prompt": "alpha", "assert": [{"type": "icontains", "value": "gamma"}]}),
    ("not-contains-pass", {"prompt": "alpha", "assert": [{"type": "not-contains", "value": "gamma"}]}),
    ("not-contains-fail", {"prompt": "alpha", "assert": [{"type": "not-contains", "value": "alpha"}]}),
    ("regex-pass", {"prompt": "order 1234", "assert": [{"type": "regex", "value": r"\d{4}$"}]}),
    ("regex-fail", {"prompt": "order x", "assert": [{"type": "regex", "value": r"\d{4}$"}]}),
    ("is-json-pass", {"prompt": "JSONPLEASE", "assert": [{"type": "is-json"}]}),
    ("is-json-fail", {"prompt": "plain", "assert": [{"type": "is-json"}]}),
    ("json-schema-pass", {"prompt": "JSONPLEASE", "assert": [{"type": "json-schema", "value": SCHEMA}]}),
    ("json-schema-fail", {"prompt": "JSONPLEASE", "assert": [
        {"type": "json-schema", "value": {**SCHEMA, "required": ["colour"]}}]}),
    ("tool-call-pass", {"prompt": "TOOL weather", "tools": TOOLS, "assert": [
        {"type": "tool-call", "value": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}),
    ("tool-call-fail", {"prompt": "TOOL weather", "tools": TOOLS, "assert": [
        {"type": "tool-call", "value": {"name": "get_weather", "arguments": {"city": "Rome"}}}]}),
    ("latency-ms-pass", {"prompt": "quick", "assert": [{"type": "latency-ms", "value": 5000}]}),
    ("latency-ms-fail", {"prompt": "SLOW", "assert": [{"type": "latency-ms", "value": 100}]}),
    ("cost-pass", {"prompt": "cheap", "assert": [{"type": "cost", "value": 1.0}]}),
    ("cost-fail", {"prompt": "dear words here", "assert": [{"type": "cost", "value": 0.0000001}]}),
    ("refusal-pass", {"prompt": "REFUSE this", "assert": [{"type": "refusal"}]}),
    ("refusal-fail", {"prompt": "answer this", "assert": [{"type": "refusal"}]}),
    ("not-refusal-pass", {"prompt": "answer this", "assert": [{"type": "not-refusal"}]}),
    ("not-refusal-fail", {"prompt": "REFUSE this", "assert": [{"type": "not-refusal"}]}),
    ("guardrail-blocked-pass", {"prompt": "FILTERED", "assert": [{"type": "guardrail-blocked"}]}),
    ("guardrail-blocked-fail", {"prompt": "fine", "assert": [{"type": "guardrail-blocked"}]}),
    ("header-pass", {"prompt": "x", "assert": [{"type": "header", "name": "x-gatehouse-tokens-output",
                                                "value": r"^\d+$"}]}),
    ("header-fail", {"prompt": "x", "assert": [{"type": "header", "name": "x-no-such-header", "value": "."}]}),
    ("llm-rubric-pass", {"prompt": "GOOD answer", "assert": [{"type": "llm-rubric", "value": "is good"}]}),
    ("llm-rubric-fail", {"prompt": "bad answer", "assert": [{"type": "llm-rubric", "value": "is good"}]}),
    ("model-graded-fail", {"prompt": "GOOD", "category": "graded",
                           "assert": [{"type": "model-graded", "value": "is good", "threshold": 0.95}]}),
    ("fim-pass", {"fim": {"prompt": "def add(a, b):\n", "suffix": "\n"}, "category": "fim",
                  "assert": [{"type": "contains", "value": "return a + b"}]}),
    ("retried-pass", {"prompt": "FLAKY once", "assert": [{"type": "contains", "value": "FLAKY"}]}),
]


@pytest.fixture(scope="module")
def eval_upstream() -> Iterator[ServerThread]:
    with ServerThread(eval_wire.make_app) as srv:
        yield srv


def eval_config(upstream: str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "admin": {"key": ADMIN_KEY},
        "providers": {"ev": {"type": "openai", "base_url": f"{upstream}/v1", "api_key": "k"}},
        "models": [{"name": n, "deployments": [{"provider": "ev", "model": n, "input_per_mtok": 1.0,
                                                "output_per_mtok": 2.0}]} for n in ("m1", "m2", "judge")],
        "groups": {"evals": {"models": ["*"]}},
        "consumers": {"eval-bot": {"group": "evals", "keys": [ALICE_KEY]}},
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def gateway(eval_upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    gh = Gatehouse(eval_config(eval_upstream.url), tmp_path_factory.mktemp("evalgh")).start()
    yield gh
    gh.stop()


def write_suite(path: Path, cases: list[tuple[str, dict[str, Any]]], **extra: Any) -> Path:
    suite = {"description": "unit", "models": ["m1"], "judge": {"model": "judge"}, "threshold": 0.4,
             "cases": [{"id": cid, **fields} for cid, fields in cases], **extra}
    path.write_text(yaml.safe_dump(suite))
    return path


def run_cli(*args: str) -> int:
    return main(["eval", *args])


def test_every_assertion_type_passes_and_fails_where_it_should(gateway: Gatehouse, tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite.yaml", CASES)
    code = run_cli(str(suite), "--url", gateway.url, "--key", ALICE_KEY, "--out", str(tmp_path / "out"),
                   "--retries", "2")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    status = {r["case"]: r["status"] for r in results["results"]}
    wrong = {cid: s for cid, s in status.items() if (s == "passed") != cid.endswith("-pass")}
    assert not wrong, wrong
    assert len(status) == len(CASES)
    retried = next(r for r in results["results"] if r["case"] == "retried-pass")
    assert retried["response"]["attempts"] == 2  # the upstream's 503 reached the eval as a 5xx and was retried
    ratio = results["models"]["m1"]["pass_ratio"]
    assert code == (0 if ratio >= 0.4 else 1)
    assert results["models"]["m1"]["categories"]["fim"] == 1.0


def test_reports_junit_markdown_and_a_baseline_regression_first(gateway: Gatehouse, tmp_path: Path) -> None:
    cases = [("steady", {"prompt": "alpha", "assert": [{"type": "contains", "value": "alpha"}]}),
             ("planted", {"prompt": "{{word}}", "vars": {"word": "alpha"},
                          "assert": [{"type": "contains", "value": "alpha"}]})]
    base = run_cli(str(write_suite(tmp_path / "a.yaml", cases)), "--url", gateway.url, "--key", ALICE_KEY,
                   "--out", str(tmp_path / "base"))
    assert base == 0
    cases[1] = ("planted", {**cases[1][1], "vars": {"word": "beta"}})  # now fails
    code = run_cli(str(write_suite(tmp_path / "b.yaml", cases, threshold=0.9)), "--url", gateway.url,
                   "--key", ALICE_KEY, "--out", str(tmp_path / "now"),
                   "--baseline", str(tmp_path / "base" / "results.json"))
    assert code == 1  # 50% < 90%
    report = (tmp_path / "now" / "report.md").read_text()
    assert report.index("Regressions against the baseline") < report.index("Pass rate per model")
    assert "**m1** / `planted`: passed before, failed now" in report
    root = ET.parse(tmp_path / "now" / "junit.xml").getroot()
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "m1"
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["planted"]
    prom = (tmp_path / "now" / "eval.prom").read_text()
    assert 'gatehouse_eval_pass_ratio{category="default",model="m1",suite="unit"} 0.5' in prom


def test_an_unreachable_gateway_is_retried_then_reported_as_error(tmp_path: Path) -> None:
    from tests.upstreams.harness import free_port

    suite = write_suite(tmp_path / "s.yaml", [("x", {"prompt": "hi"})])
    code = run_cli(str(suite), "--url", f"http://127.0.0.1:{free_port()}", "--key", "k", "--retries", "1",
                   "--out", str(tmp_path / "o"))
    result = json.loads((tmp_path / "o" / "results.json").read_text())["results"][0]
    assert result["status"] == "error" and result["response"]["attempts"] == 2
    assert code == 1
    junit = ET.parse(tmp_path / "o" / "junit.xml").getroot()
    assert junit.get("errors") == "1"


def test_recorded_runs_appear_in_the_gateways_metrics(eval_upstream: ServerThread, tmp_path: Path,
                                                      start_gatehouse: Callable[..., Gatehouse]) -> None:
    import urllib.request

    home = tmp_path / "home"
    gh = start_gatehouse(eval_config(eval_upstream.url), home=home)
    assert gh.config_path is not None
    suite = write_suite(tmp_path / "s.yaml", [("ok", {"prompt": "hi", "category": "smoke"})], models=["m1", "m2"])
    env = {**os.environ, "GATEHOUSE_HOME": str(home)}
    proc = gatehouse_cli("eval", str(suite), "--url", gh.url, "--key", ALICE_KEY, "--record", "--config",
                   str(gh.config_path), env=env)
    assert proc.returncode == 0, proc.stderr
    req = urllib.request.Request(gh.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    body = urllib.request.urlopen(req, timeout=5).read().decode()
    assert 'gatehouse_eval_pass_ratio{category="smoke",model="m2",suite="unit"} 1.0' in body
    assert 'gatehouse_eval_cases{model="m1",status="passed",suite="unit"} 1.0' in body


def test_in_process_gateway_from_a_config(eval_upstream: ServerThread, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_HOME", str(tmp_path / "home"))
    config = tmp_path / "gw.yaml"
    config.write_text(yaml.safe_dump(eval_config(eval_upstream.url)))
    suite = write_suite(tmp_path / "s.yaml", [("ok", {"prompt": "hi", "assert": [{"type": "contains",
                                                                                  "value": "hi"}]})])
    assert run_cli(str(suite), "--config", str(config), "--key", ALICE_KEY, "--out", str(tmp_path / "o")) == 0
    assert json.loads((tmp_path / "o" / "results.json").read_text())["results"][0]["status"] == "passed"


@pytest.mark.process  # stderr a pipe, then a terminal
def test_progress_bar_only_on_a_terminal(gateway: Gatehouse, tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "s.yaml", [("ok", {"prompt": "hi"})])
    cmd = [sys.executable, "-m", "gatehouse.cli", "eval", str(suite), "--url", gateway.url, "--key", ALICE_KEY]
    piped = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "━" not in piped.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    assert "━".encode() in seen and b"1/1" in seen
