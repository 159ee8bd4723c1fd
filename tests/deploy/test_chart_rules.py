"""House rules over the rendered YAML of every values file: restricted pods with resources and
probes, a PDB for every multi-replica workload, HPA and KEDA never on one target, GPU workloads
that land on (and only on) the NodePool's GPU nodes, ServiceMonitors and Services that select
something, and a ConfigMap the gateway itself accepts."""
from __future__ import annotations

from typing import Any

import pytest
import yaml

from gatehouse.config import from_mapping
from tests.deploy.manifests import (
    NAMESPACE,
    VALUES_FILES,
    merged_values,
    name_of,
    of_kind,
    pod_labels,
    pod_spec,
    render,
    rendered,
    selects,
    workloads,
)

GPU = "nvidia.com/gpu"
LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet")


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_pod_is_restricted_non_root_with_resources(values: str) -> None:
    for doc in workloads(rendered(values)):
        spec = pod_spec(doc)
        pod_ctx = spec.get("securityContext", {})
        assert pod_ctx.get("runAsNonRoot") is True, name_of(doc)
        assert pod_ctx.get("runAsUser", 0) > 0, name_of(doc)
        assert pod_ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", name_of(doc)
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name_of(doc)
        for c in _containers(doc):
            where = f"{name_of(doc)} container {c['name']}"
            ctx = c.get("securityContext", {})
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("privileged") is not True, where
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not ctx.get("capabilities", {}).get("add"), where
            assert ctx.get("runAsUser", pod_ctx["runAsUser"]) > 0, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(kind, {})), f"{where}: {kind}"


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_long_running_container_has_probes(values: str) -> None:
    for doc in workloads(rendered(values)):
        if doc["kind"] not in LONG_RUNNING:
            continue
        for c in pod_spec(doc)["containers"]:
            assert "livenessProbe" in c and "readinessProbe" in c, f"{name_of(doc)} {c['name']}"


@pytest.mark.parametrize("values", VALUES_FILES)
def test_the_gateway_pod_serves_its_mounted_config_read_only(values: str) -> None:
    docs = rendered(values)
    gw = next(d for d in of_kind(docs, "Deployment") if pod_labels(d)["app.kubernetes.io/component"] == "gateway")
    c = pod_spec(gw)["containers"][0]
    assert c["args"] == ["serve", "--config", "/etc/gatehouse/config.yaml"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/gatehouse"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod_spec(gw)["volumes"]}
    config_map = volumes[mounts["/etc/gatehouse"]["name"]]["configMap"]["name"]
    assert any(d["metadata"]["name"] == config_map and "config.yaml" in d["data"] for d in of_kind(docs, "ConfigMap"))
    # the journal lives on a writable volume under GATEHOUSE_HOME
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["GATEHOUSE_HOME"] in mounts and "emptyDir" in volumes[mounts[env["GATEHOUSE_HOME"]]["name"]]
    # secrets come from one Secret by name, which the chart or the External Secrets Operator makes
    secret = c["envFrom"][0]["secretRef"]["name"]
    made = [d["metadata"]["name"] for d in of_kind(docs, "Secret")]
    made += [d["spec"]["target"]["name"] for d in of_kind(docs, "ExternalSecret")]
    assert made == [secret]


@pytest.mark.parametrize("values", VALUES_FILES)
def test_the_config_map_is_a_config_the_gateway_accepts(values: str) -> None:
    """The gateway's own loader (typed structs, references) over the rendered config, with every
    ${VAR} the Secret provides; in-cluster providers point at rendered Services and ports."""
    docs = rendered(values)
    cm = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "gh-gatehouse")
    raw = yaml.safe_load(cm["data"]["config.yaml"])
    # what an External Secret would hold; a chart-made Secret's own values win
    env = {"GATEHOUSE_ADMIN_KEY": "admin-key", "GATEHOUSE_SECRET": "hmac", "GATEHOUSE_METRICS_TOKEN": "metrics",
           "GATEHOUSE_DATABASE_URL": "postgresql://u:p@db.example:5432/g", "GATEHOUSE_REDIS_URL": "redis://r:6379/0",
           "OPENWEBUI_API_KEY": "gh-open-webui", "GATEHOUSE_EVAL_KEY": "gh-eval"}
    for secret in of_kind(docs, "Secret"):
        env.update(secret["stringData"])
    cfg = from_mapping(raw, env=env)
    assert cfg.server.host == "0.0.0.0" and cfg.server.port == 8080
    assert cfg.metrics.token and cfg.admin.key
    assert cfg.store.migrate_on_start is (not merged_values(values)["migrations"]["enabled"])
    services = {d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]} for d in of_kind(docs, "Service")}
    urls = [getattr(p, "base_url", None) for p in cfg.providers.values()]  # (bedrock has none)
    in_cluster = [url for url in urls if url and "gh-gatehouse" in url]
    assert in_cluster, "no provider points at a model server of the release"
    for url in in_cluster:
        host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        assert int(port) in services[host], url


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_multi_replica_workload_has_a_pdb(values: str) -> None:
    docs = rendered(values)
    most: dict[str, int] = {}
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        most[hpa["spec"]["scaleTargetRef"]["name"]] = hpa["spec"]["maxReplicas"]
    for so in of_kind(docs, "ScaledObject"):
        most[so["spec"]["scaleTargetRef"]["name"]] = so["spec"]["maxReplicaCount"]
    pdbs = of_kind(docs, "PodDisruptionBudget")
    checked = 0
    for doc in of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet"):
        replicas = max(doc["spec"].get("replicas", 1), most.get(doc["metadata"]["name"], 0))
        if replicas > 1:
            checked += 1
            labels = pod_labels(doc)
            assert any(selects(p["spec"]["selector"]["matchLabels"], labels) for p in pdbs), name_of(doc)
    assert checked or values == "laptop-kind"


@pytest.mark.parametrize("values", VALUES_FILES)
def test_hpa_and_keda_never_scale_the_same_target(values: str) -> None:
    docs = rendered(values)
    hpa = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
           for h in of_kind(docs, "HorizontalPodAutoscaler")}
    keda = {(s["spec"]["scaleTargetRef"].get("kind", "Deployment"), s["spec"]["scaleTargetRef"]["name"])
            for s in of_kind(docs, "ScaledObject")}
    assert not hpa & keda
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    for _, name in hpa | keda:
        assert name in deployments, name
    for _, name in keda:  # KEDA owns the count: an upgrade must not reset it
        assert "replicas" not in deployments[name]["spec"], name


def _gpu_nodes(values: str, docs: list[dict[str, Any]]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    pools = of_kind(docs, "NodePool")
    if pools:
        assert len(pools) == 1
        tpl = pools[0]["spec"]["template"]
        return tpl["metadata"]["labels"], tpl["spec"]["taints"]
    nodes = merged_values(values)["gpuNodes"]  # a node group from Terraform carries these
    return nodes["labels"], nodes["taints"]


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        same = t.get("key") == taint["key"] and t.get("effect") in (None, taint["effect"])
        if same and (t.get("operator") == "Exists" or t.get("value") == taint.get("value")):
            return True
    return False


@pytest.mark.parametrize("values", VALUES_FILES)
def test_gpu_workloads_land_on_the_gpu_nodes_and_nothing_else_does(values: str) -> None:
    docs = rendered(values)
    labels, taints = _gpu_nodes(values, docs)
    gpu_workloads = 0
    for doc in workloads(docs):
        spec = pod_spec(doc)
        gpu = [c for c in spec["containers"] if GPU in c["resources"].get("limits", {})]
        if gpu:
            gpu_workloads += 1
            for c in gpu:
                assert int(c["resources"]["limits"][GPU]) >= 1
                assert c["resources"]["requests"].get(GPU) == c["resources"]["limits"][GPU], name_of(doc)
            assert spec.get("nodeSelector") and selects(spec["nodeSelector"], labels), name_of(doc)
            assert all(_tolerates(spec.get("tolerations", []), t) for t in taints), name_of(doc)
        else:
            assert not any(_tolerates(spec.get("tolerations", []), t) for t in taints), name_of(doc)
    expected = {"laptop-kind": 0, "eks-ollama": 1, "eks-vllm": 2}[values]
    assert gpu_workloads == expected


def test_the_node_pool_caps_gpus_and_mixes_capacity_types() -> None:
    pool = of_kind(rendered("eks-vllm"), "NodePool")[0]["spec"]
    assert pool["limits"] == {GPU: "8"}
    reqs = {r["key"]: r["values"] for r in pool["template"]["spec"]["requirements"]}
    assert reqs["karpenter.sh/capacity-type"] == ["on-demand", "spot"]
    assert reqs["karpenter.k8s.aws/instance-family"] == ["g6e", "g6", "g5"]
    assert {"key": GPU, "value": "true", "effect": "NoSchedule"} in pool["template"]["spec"]["taints"]


@pytest.mark.parametrize("values", VALUES_FILES)
def test_services_and_service_monitors_select_something(values: str) -> None:
    docs = rendered(values)
    pods = [pod_labels(d) for d in workloads(docs)]
    services = of_kind(docs, "Service")
    for svc in services:
        assert any(selects(svc["spec"]["selector"], labels) for labels in pods), name_of(svc)
    monitors = of_kind(docs, "ServiceMonitor")
    assert bool(monitors) == (values != "laptop-kind")
    for sm in monitors:
        assert sm["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
        matched = [s for s in services if selects(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert matched, name_of(sm)
        for svc in matched:
            ports = {p["name"] for p in svc["spec"]["ports"]}
            assert {e["port"] for e in sm["spec"]["endpoints"]} <= ports, name_of(svc)
            assert sm["spec"]["jobLabel"] in svc["metadata"]["labels"]
    gateway_monitor = [sm for sm in monitors if sm["metadata"]["name"] == "gh-gatehouse"]
    for sm in gateway_monitor:  # /metrics wants the metrics token, from the gateway's Secret
        auth = sm["spec"]["endpoints"][0]["authorization"]["credentials"]
        assert auth["key"] == "GATEHOUSE_METRICS_TOKEN"


def test_vllm_servers_scale_on_vllm_signals_and_match_their_args() -> None:
    docs = rendered("eks-vllm")
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    jobs = of_kind(docs, "Job")
    for so in of_kind(docs, "ScaledObject"):
        target = deployments[so["spec"]["scaleTargetRef"]["name"]]
        c = pod_spec(target)["containers"][0]
        seqs = next(a.split("=", 1)[1] for a in c["args"] if a.startswith("--max-num-seqs="))
        triggers = {t["name"]: t for t in so["spec"]["triggers"]}
        assert f"vllm:num_requests_running{{namespace=\"{NAMESPACE}\",service=\"{target['metadata']['name']}\"}}" in \
            triggers["running-ratio"]["metadata"]["query"]
        assert triggers["running-ratio"]["metadata"]["query"].endswith(f"/ {seqs}")
        assert "kv_cache_usage_perc" in triggers["kv-cache"]["metadata"]["query"]
        assert so["spec"]["cooldownPeriod"] == 300
        # the init container waits for the marker file the preload Job writes last
        wait = pod_spec(target)["initContainers"][0]["command"][-1]
        model = pod_labels(target)["gatehouse.io/model"]
        preload = [j for j in jobs if pod_labels(j).get("gatehouse.io/model") == model]
        assert len(preload) == 1
        marker = {e["name"]: e.get("value") for e in pod_spec(preload[0])["containers"][0]["env"]}["MARKER"]
        assert marker in wait
    by_model = {pod_labels(d).get("gatehouse.io/model"): d for d in deployments.values()}
    coder = pod_spec(by_model["qwen-coder"])["containers"][0]["args"]
    assert "--enable-auto-tool-choice" in coder and "--tool-call-parser=qwen3_coder" in coder
    llama = pod_spec(by_model["llama-8b"])["containers"][0]["args"]
    i = llama.index("--enable-lora")
    assert llama[i + 1] == "--lora-modules" and llama[i + 2] == "sql-helper=/models/llama-8b/loras/sql-helper"
    scaled = {s["metadata"]["name"]: s["spec"] for s in of_kind(docs, "ScaledObject")}
    assert scaled["gh-gatehouse-vllm-qwen-coder"]["minReplicaCount"] == 1
    assert scaled["gh-gatehouse-vllm-llama-8b"]["minReplicaCount"] == 0
    # at zero there is no vLLM metric: the gateway's attempts on the provider wake it
    wake = [t for t in scaled["gh-gatehouse-vllm-llama-8b"]["triggers"] if t["name"] == "gateway-demand"]
    assert 'provider="vllm-llama-8b"' in wake[0]["metadata"]["query"]
    assert not [t for t in scaled["gh-gatehouse-vllm-qwen-coder"]["triggers"] if t["name"] == "gateway-demand"]


def test_a_changed_model_is_a_new_preload_job_and_the_same_model_the_same_job() -> None:
    def preload_names(*extra: str) -> set[str]:
        return {j["metadata"]["name"] for j in of_kind(render("eks-vllm", *extra), "Job")
                if pod_labels(j)["app.kubernetes.io/component"] == "model-preload"}

    before = preload_names()
    assert preload_names() == before
    after = preload_names("--set", "vllm.models[0].revision=abc123")
    assert len(before - after) == 1 and len(after - before) == 1


def test_migrations_run_as_a_pre_install_hook_with_their_own_config() -> None:
    docs = rendered("eks-vllm")
    job = next(j for j in of_kind(docs, "Job") if pod_labels(j)["app.kubernetes.io/component"] == "migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    c = pod_spec(job)["containers"][0]
    assert c["args"][0] == "migrate"
    cm_name = pod_spec(job)["volumes"][0]["configMap"]["name"]
    cm = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == cm_name)
    assert int(cm["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0
    # everything the hook needs exists before it: no release ServiceAccount, a hooked secret source
    assert "serviceAccountName" not in pod_spec(job)
    (external,) = of_kind(docs, "ExternalSecret")
    assert int(external["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0
    # recreated by every upgrade's hook: the Secret it writes must not be garbage-collected with it
    assert external["spec"]["target"]["creationPolicy"] == "Orphan"


def test_the_service_account_carries_the_irsa_role_for_bedrock() -> None:
    docs = rendered("eks-vllm")
    (sa,) = of_kind(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    gw = next(d for d in of_kind(docs, "Deployment") if pod_labels(d)["app.kubernetes.io/component"] == "gateway")
    assert pod_spec(gw)["serviceAccountName"] == sa["metadata"]["name"]


def test_open_webui_calls_the_gateway_with_its_own_key() -> None:
    docs = rendered("eks-ollama")
    ui = next(d for d in of_kind(docs, "Deployment") if pod_labels(d)["app.kubernetes.io/component"] == "open-webui")
    env = {e["name"]: e for e in pod_spec(ui)["containers"][0]["env"]}
    (svc,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "gh-gatehouse"]
    assert env["OPENAI_API_BASE_URL"]["value"] == f"http://gh-gatehouse:{svc['spec']['ports'][0]['port']}/v1"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "OPENWEBUI_API_KEY"
    cm = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "gh-gatehouse")
    assert "${OPENWEBUI_API_KEY}" in cm["data"]["config.yaml"]


@pytest.mark.parametrize("values", VALUES_FILES)
def test_the_gateway_asks_model_servers_for_models_they_serve(values: str) -> None:
    """A deployment's `model` on an in-cluster provider is a name that server answers to: vLLM's
    --served-model-name or one of its LoRA adapters, or a model the Ollama pull Job pulls."""
    docs = rendered(values)
    cm = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "gh-gatehouse")
    raw = yaml.safe_load(cm["data"]["config.yaml"])
    served: dict[str, set[str]] = {}
    for d in of_kind(docs, "Deployment"):
        if pod_labels(d)["app.kubernetes.io/component"] == "vllm":
            args = pod_spec(d)["containers"][0]["args"]
            names = {a.split("=", 1)[1] for a in args if a.startswith("--served-model-name=")}
            if "--lora-modules" in args:
                after = args[args.index("--lora-modules") + 1:]
                adapters = after[:next((i for i, a in enumerate(after) if a.startswith("--")), len(after))]
                names |= {a.split("=", 1)[0] for a in adapters}
            served[f"vllm-{pod_labels(d)['gatehouse.io/model']}"] = names
    pulls = [j for j in of_kind(docs, "Job") if pod_labels(j)["app.kubernetes.io/component"] == "model-pull"]
    if pulls:
        env = {e["name"]: e.get("value") for e in pod_spec(pulls[0])["containers"][0]["env"]}
        served["ollama"] = set(env["MODELS"].split())
    asked = [(dep["provider"], dep["model"]) for m in raw["models"] for dep in m["deployments"]
             if dep["provider"] in served]
    assert asked
    for provider, model in asked:
        assert model in served[provider], (provider, model, served[provider])
