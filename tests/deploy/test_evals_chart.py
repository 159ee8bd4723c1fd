"""The nightly eval CronJob (docs/evals.md#in-the-cluster): a restricted, non-overlapping Job whose
suites load with gatehouse's own suite loader, whose record config loads with only what its pod
is given, whose network policy allows exactly the gateway (and Postgres when it records), and
whose own command, run against a live gateway built from the chart's config, records a run that
the gateway's /metrics then exports."""
from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatehouse.config import from_mapping
from gatehouse.evals.suite import parse_suite
from tests.deploy.manifests import (
    VALUES_FILES,
    RenderError,
    merged_values,
    of_kind,
    pod_labels,
    pod_spec,
    render,
    rendered,
)
from tests.deploy.test_network_policy import flows
from tests.support import Gatehouse, PostgresServer

SUITES_DIR, OUT_DIR, CONFIG = "/etc/gatehouse-evals", "/tmp/eval-out", "/etc/gatehouse/config.yaml"


def _eval_objects(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    (cron,) = of_kind(docs, "CronJob")
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "gh-gatehouse-eval"]
    return cron, cm


def _suites(cm: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in cm["data"].items() if k != "config.yaml"}


def test_evals_are_off_by_default() -> None:
    docs = render(None)
    assert not of_kind(docs, "CronJob")
    assert not [d for d in docs if d["metadata"]["name"].endswith("-eval")]


@pytest.mark.parametrize("values", VALUES_FILES)
def test_the_cronjob_runs_nightly_restricted_and_never_overlaps(values: str) -> None:
    docs = rendered(values)
    cron, cm = _eval_objects(docs)
    e = merged_values(values)["evals"]
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == e["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == e["failedJobsHistoryLimit"] == 3
    assert spec["startingDeadlineSeconds"] == e["startingDeadlineSeconds"]
    assert re.fullmatch(r"\d+ \d+ \* \* \*", spec["schedule"]), "nightly"
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == e["activeDeadlineSeconds"] and job["backoffLimit"] == 0
    pod = pod_spec(cron)
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert c["resources"] == e["resources"]
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    gateway = next(d for d in of_kind(docs, "Deployment") if pod_labels(d)["app.kubernetes.io/component"] == "gateway")
    assert c["image"] == pod_spec(gateway)["containers"][0]["image"]
    # one `gatehouse eval` per suite file, its reports under --out on the emptyDir
    assert c["command"][:2] == ["/bin/sh", "-c"]
    script = c["command"][2]
    assert f"for suite in {SUITES_DIR}/*.yaml" in script
    assert f'gatehouse eval "$suite" --out "{OUT_DIR}/$name" "$@"' in script
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts[SUITES_DIR]["readOnly"] is True
    suites_volume = volumes[mounts[SUITES_DIR]["name"]]["configMap"]
    assert suites_volume["name"] == cm["metadata"]["name"]
    assert {i["path"] for i in suites_volume["items"]} == set(_suites(cm))
    # the gateway's in-cluster Service, on its Service port
    (svc,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "gh-gatehouse"]
    args = c["args"]
    assert args[args.index("--url") + 1] == f"http://gh-gatehouse:{svc['spec']['ports'][0]['port']}"
    assert args[args.index("--concurrency") + 1] == str(e["concurrency"])
    assert e["record"] is True
    assert args[args.index("--record"):][:3] == ["--record", "--config", CONFIG]
    assert mounts["/etc/gatehouse"]["readOnly"] is True
    # from the gateway's Secret only the eval key and the store URL; nothing else (no envFrom)
    assert "envFrom" not in c
    from_secret = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in c["env"] if "valueFrom" in v}
    secret = pod_spec(gateway)["containers"][0]["envFrom"][0]["secretRef"]["name"]
    assert from_secret == {"GATEHOUSE_EVAL_KEY": {"name": secret, "key": e["keySecretKey"]},
                           "GATEHOUSE_DATABASE_URL": {"name": secret, "key": "GATEHOUSE_DATABASE_URL"}}


@pytest.mark.parametrize("values", VALUES_FILES)
def test_the_suites_load_with_gatehouses_suite_loader_and_name_served_models(values: str) -> None:
    _, cm = _eval_objects(rendered(values))
    config = merged_values(values)["config"]
    served = {m["name"] for m in config["models"]}
    suites = {name: parse_suite(yaml.safe_load(text), name) for name, text in _suites(cm).items()}
    assert suites
    # --record keys a run by the suite's name: two files of one name would overwrite each other
    names = [s.description or Path(f).stem for f, s in suites.items()]
    assert len(names) == len(set(names)), names
    (consumer,) = [c for c in config["consumers"].values() if "${GATEHOUSE_EVAL_KEY}" in c.get("keys", [])]
    allowed = config["groups"][consumer["group"]]["models"]
    for name, suite in suites.items():
        models = set(suite.models) | {m for case in suite.cases for m in case.models or ()}
        assert models and models <= served, (name, models - served)
        for m in models:   # the eval consumer may call every model it evaluates
            assert any(fnmatch.fnmatchcase(m, pattern) for pattern in allowed), (name, m)


def test_a_suite_without_models_runs_against_the_first_configured_model() -> None:
    _, cm = _eval_objects(rendered("laptop-kind"))
    smoke = parse_suite(yaml.safe_load(cm["data"]["smoke.yaml"]))
    assert smoke.models == [merged_values("laptop-kind")["config"]["models"][0]["name"]]
    with pytest.raises(RenderError, match="has no `models:` and config.models is empty"):
        render(None, "--set", "evals.enabled=true", "--set", "secrets.values.GATEHOUSE_EVAL_KEY=k")


@pytest.mark.parametrize("values", VALUES_FILES)
def test_the_record_config_loads_with_only_what_the_pod_is_given(values: str) -> None:
    _, cm = _eval_objects(rendered(values))
    cfg = from_mapping(yaml.safe_load(cm["data"]["config.yaml"]),
                       env={"GATEHOUSE_DATABASE_URL": "postgresql://u:p@db.example:5432/g"})
    assert cfg.store.url == "postgresql://u:p@db.example:5432/g"


def _eval_flows(values: str, *extra: str) -> set[tuple[str, str, str]]:
    ingress, egress = flows(values, *extra)
    return {f for f in ingress | egress if "eval" in f[:2]}


def test_the_eval_pod_reaches_the_gateway_postgres_and_dns_only() -> None:
    db = {("eval", "database-subnets", "5432/TCP")}
    base = {("eval", "gateway", "8080/TCP"), ("eval", "dns", "53/UDP"), ("eval", "dns", "53/TCP")}
    assert _eval_flows("eks-ollama") == base | db
    # without --record it has no business with the database
    assert _eval_flows("eks-ollama", "--set", "evals.record=false") == base
    # with the in-cluster Postgres: that pod, which must let it in
    assert _eval_flows("laptop-kind") == base | {("eval", "postgresql", "5432/TCP")}
    assert _eval_flows("laptop-kind", "--set", "evals.record=false") == base


def test_without_record_the_pod_gets_neither_the_store_nor_its_url() -> None:
    cron, cm = _eval_objects(render("eks-vllm", "--set", "evals.record=false", "--set-json", "evals.threshold=0.6",
                                    "--set", "evals.models={qwen3-coder}"))
    c = pod_spec(cron)["containers"][0]
    assert "--record" not in c["args"] and "--config" not in c["args"]
    assert c["args"][c["args"].index("--threshold") + 1] == "0.6"
    assert c["args"][c["args"].index("--models") + 1] == "qwen3-coder"
    assert {v["name"] for v in c["env"] if "valueFrom" in v} == {"GATEHOUSE_EVAL_KEY"}
    assert "config.yaml" not in cm["data"] and "/etc/gatehouse" not in {m["mountPath"] for m in c["volumeMounts"]}


@pytest.mark.parametrize("setting, message", [
    ("evals.threshold=1.5", "threshold"),
    ("evals.concurrency=0", "concurrency"),
    ("evals.schedule=nightly", "schedule"),
    ("evals.record=yes", "record"),
    ("evals.suite=x", "suite is not allowed"),
    ("evals.suites.bad name\\.yaml=x", "bad name"),
])
def test_values_schema_refuses_bad_eval_values(setting: str, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render("eks-vllm", "--set", setting)


def test_a_chart_made_secret_must_hold_the_eval_key() -> None:
    with pytest.raises(RenderError, match="needs the eval consumer's key in secrets.values.GATEHOUSE_EVAL_KEY"):
        render("laptop-kind", "--set", "secrets.values.GATEHOUSE_EVAL_KEY=")


def _get(url: str, token: str) -> str:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


@pytest.mark.process  # the CronJob's shell command, running `gatehouse eval` as the pod would
def test_the_cronjobs_command_records_a_run_the_gateway_exports(
        start_gatehouse: Callable[..., Gatehouse], postgres_server: PostgresServer, tmp_path: Path) -> None:
    """The chart's config for the gateway, the chart's default smoke suite, the CronJob's own
    command and environment (Secret values resolved from the chart's Secret), real Postgres."""
    echo = [{"name": "echo", "deployments": [{"provider": "echo", "model": "echo"}]}]
    docs = render(None, "--set", "evals.enabled=true", "--set", "migrations.enabled=false",
                  "--set-json", 'config.providers={"echo": {"type": "echo"}}',
                  "--set-json", f"config.models={json.dumps(echo)}",
                  "--set-json", 'config.groups={"eval": {"models": ["echo"]}}',
                  "--set-json", 'config.consumers={"eval": {"group": "eval", "keys": ["${GATEHOUSE_EVAL_KEY}"]}}',
                  "--set", f"secrets.values.GATEHOUSE_DATABASE_URL={postgres_server.url}",
                  "--set", "secrets.values.GATEHOUSE_EVAL_KEY=gh-eval-key",
                  "--set", "secrets.values.GATEHOUSE_SECRET=hmac", "--set", "secrets.values.GATEHOUSE_ADMIN_KEY=adm",
                  "--set", "secrets.values.GATEHOUSE_METRICS_TOKEN=metrics-t")
    (secret,) = of_kind(docs, "Secret")
    env: dict[str, str] = secret["stringData"]
    gw_cm = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "gh-gatehouse")
    gh = start_gatehouse(yaml.safe_load(gw_cm["data"]["config.yaml"]), env=env)
    cron, cm = _eval_objects(docs)
    # the pod's files and environment, at test paths
    suites = tmp_path / "suites"
    suites.mkdir()
    for name, text in _suites(cm).items():
        (suites / name).write_text(text)
    (tmp_path / "config.yaml").write_text(cm["data"]["config.yaml"])
    shim = tmp_path / "bin" / "gatehouse"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m gatehouse "$@"\n')
    shim.chmod(0o755)
    c = pod_spec(cron)["containers"][0]
    pod_env = {"PATH": f"{shim.parent}:/usr/bin:/bin"}
    for v in c["env"]:
        ref = v.get("valueFrom", {}).get("secretKeyRef")
        pod_env[v["name"]] = env[ref["key"]] if ref else v["value"].replace("/tmp", str(tmp_path))
    script = c["command"][2].replace(SUITES_DIR, str(suites)).replace(OUT_DIR, str(tmp_path / "out"))
    args = [str(tmp_path / "config.yaml") if a == CONFIG else a for a in c["args"]]
    args[args.index("--url") + 1] = gh.url
    proc = subprocess.run([c["command"][0], "-c", script, *c["command"][3:], *args], env=pod_env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr + gh.logs()
    assert "== smoke" in proc.stdout
    results = json.loads((tmp_path / "out" / "smoke" / "results.json").read_text())
    assert results and (tmp_path / "out" / "smoke" / "junit.xml").exists()
    metrics = _get(gh.url + "/metrics", env["GATEHOUSE_METRICS_TOKEN"])
    assert re.search(r'^gatehouse_eval_model_pass_ratio\{model="echo",suite="smoke"\} 1\.0$', metrics, re.MULTILINE), \
        "\n".join(line for line in metrics.splitlines() if "eval" in line)
    assert re.search(r'^gatehouse_eval_pass_ratio\{category="smoke",model="echo",suite="smoke"\} 1\.0$', metrics,
                     re.MULTILINE)
