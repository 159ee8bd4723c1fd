"""deploy/terraform with the real terraform binary, offline: `terraform fmt -check`, and the parts
that need no provider evaluated by Terraform itself: the Helm values module (its gateway config is
then loaded by `gatehouse check`) and the NodePool/EC2NodeClass/vLLM templates (validated against the
vendored CRD schemas). `terraform validate/plan` need the AWS provider, which cannot be fetched here:
`make tf-validate` runs them where it can. Skipped, with the reason, when terraform is not on PATH."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.in_process import run_cli

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "deploy" / "terraform"
SCHEMAS = Path(__file__).resolve().parents[2] / "deploy" / "crd-schemas"  # the chart's vendored CRD schemas
TERRAFORM = shutil.which("terraform")

needs_terraform = pytest.mark.skipif(TERRAFORM is None, reason="terraform is not on PATH")


def tf_env(home: Path) -> dict[str, str]:
    # An empty CLI config (the machine's points at a missing file) and no checkpoint calls.
    return {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
            "TF_DATA_DIR": str(home / ".terraform"), "HOME": str(home)}


def terraform(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    done = subprocess.run([TERRAFORM, *args], cwd=cwd, env=tf_env(home), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"terraform {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@needs_terraform
def test_fmt_check(tmp_path: Path) -> None:
    terraform("fmt", "-check", "-recursive", "-diff", str(TF), cwd=ROOT, home=tmp_path)


KARPENTER = TF / "modules" / "karpenter" / "templates"
VLLM = TF / "examples" / "eks-vllm-karpenter" / "templates" / "vllm.yaml.tftpl"
VALUES = TF / "modules" / "gatehouse-values"

# A scratch root module with no provider at all: `terraform init` installs nothing from a registry.
SCRATCH = f"""
module "ollama" {{
  source                 = "{VALUES}"
  image_repository       = "123456789012.dkr.ecr.us-west-2.amazonaws.com/gatehouse"
  image_tag              = "0.1.0"
  ollama                 = {{ base_url = "http://ollama.ollama.svc.cluster.local:11434/v1", models = ["qwen3-coder:30b"] }}
}}
module "vllm" {{
  source                      = "{VALUES}"
  image_repository            = "ghcr.io/gatehouse/gatehouse"
  image_tag                   = "0.1.0"
  replicas                    = 2
  use_redis                   = true
  node_selector               = {{ "gatehouse.dev/pool" = "general" }}
  service_account_annotations = {{ "eks.amazonaws.com/role-arn" = "arn:aws:iam::123456789012:role/gh" }}
  vllm_models = [
    {{ name = "qwen3-coder:30b", provider = "vllm-qwen3-coder-30b", base_url = "http://vllm-qwen3-coder-30b.llm.svc.cluster.local:8000/v1" }},
    {{ name = "llama3.1:8b", provider = "vllm-llama3-1-8b", base_url = "http://vllm-llama3-1-8b.llm.svc.cluster.local:8000/v1" }},
  ]
  bedrock_region            = "us-west-2"
  bedrock_overflow_model_id = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
}}
locals {{
  nodeclass = {{
    node_role_name = "gh-karpenter-node-1", ami_alias = "al2023@latest", cluster_name = "gatehouse",
    security_group_id = "sg-0123456789abcdef0", tags_json = jsonencode({{ "karpenter.sh/discovery" = "gatehouse", owner = "platform" }})
  }}
}}
output "values_ollama" {{ value = module.ollama.values_yaml }}
output "values_vllm" {{ value = module.vllm.values_yaml }}
output "ec2nodeclass_gpu" {{ value = templatefile("{KARPENTER}/ec2nodeclass.yaml.tftpl", merge(local.nodeclass, {{ name = "gpu", disk_size_gib = 200 }})) }}
output "nodepool_gpu" {{
  value = templatefile("{KARPENTER}/nodepool-gpu.yaml.tftpl", {{
    instance_families_json = jsonencode(["g6", "g6e", "g5"]), capacity_types_json = jsonencode(["spot", "on-demand"]),
    gpu_limit = 4, consolidate_after = "10m"
  }})
}}
output "nodepool_general" {{ value = templatefile("{KARPENTER}/nodepool-general.yaml.tftpl", {{ cpu_limit = 64 }}) }}
output "vllm" {{
  value = templatefile("{VLLM}", {{
    slug = "qwen3-coder-30b", namespace = "llm", image = "vllm/vllm-openai:v0.11.0",
    model_json = jsonencode("Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"), served_name_json = jsonencode("qwen3-coder:30b"),
    gpus = 1, max_model_len = 32768, max_replicas = 2, cache_gib = 100, min_gpu_memory_mib = 40960,
    cooldown_seconds = 900, prometheus_url = "http://prometheus-operated.monitoring.svc.cluster.local:9090",
    requests_per_second_per_replica = 2
  }})
}}
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if TERRAFORM is None:
        pytest.skip("terraform is not on PATH")
    work = tmp_path_factory.mktemp("tf-render")
    (work / "main.tf").write_text(textwrap.dedent(SCRATCH))
    terraform("init", "-input=false", "-backend=false", cwd=work, home=work)
    terraform("apply", "-auto-approve", "-input=false", cwd=work, home=work)
    out = json.loads(terraform("output", "-json", cwd=work, home=work).stdout)
    return {k: v["value"] for k, v in out.items()}


def gatehouse_check(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "gatehouse.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "GATEHOUSE_HOME": str(tmp_path / "home"), "GATEHOUSE_SECRET": "s" * 64,
           "GATEHOUSE_ADMIN_KEY": "a" * 48,
           "GATEHOUSE_DATABASE_URL": "postgresql://gatehouse:pw@db.internal:5432/gatehouse?ssl=require",
           "GATEHOUSE_REDIS_URL": "rediss://:token@redis.internal:6379/0"}
    return run_cli("check", "--config", str(path), env=env)


@pytest.mark.parametrize("shape", ["values_ollama", "values_vllm"])
def test_helm_values_carry_a_gateway_config_gatehouse_accepts(rendered: dict[str, str], shape: str,
                                                             tmp_path: Path) -> None:
    values = yaml.safe_load(rendered[shape])
    assert {"image", "replicaCount", "serviceAccount", "existingSecret", "service", "config"} <= set(values)
    done = gatehouse_check(values["config"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # Secrets are only ever references to the environment the chart fills from existingSecret.
    text = rendered[shape]
    assert "${GATEHOUSE_ADMIN_KEY}" in text and "${GATEHOUSE_SECRET}" in text and "${GATEHOUSE_DATABASE_URL}" in text


def test_helm_values_shapes(rendered: dict[str, str], tmp_path: Path) -> None:
    ollama, vllm = yaml.safe_load(rendered["values_ollama"]), yaml.safe_load(rendered["values_vllm"])
    assert ollama["service"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert ollama["config"]["models"][0]["private"] is True  # no overflow: the model stays private
    assert "redis_url" not in ollama["config"]["store"]
    assert vllm["config"]["store"]["redis_url"] == "${GATEHOUSE_REDIS_URL}"
    assert vllm["serviceAccount"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/gh"}
    for model in vllm["config"]["models"]:
        assert [d["provider"] for d in model["deployments"]][-1] == "bedrock"  # overflow comes last
        assert model["private"] is False
    # The check is not a rubber stamp: a config with an unknown field is refused.
    broken = {**vllm["config"], "store": {**vllm["config"]["store"], "redis": "x"}}
    assert gatehouse_check(broken, tmp_path).returncode != 0


def validate_crd(doc: dict[str, Any]) -> None:
    import jsonschema

    group, version = doc["apiVersion"].split("/")
    schema = json.loads((SCHEMAS / group / f"{doc['kind'].lower()}_{version}.json").read_text())
    jsonschema.validate(doc, schema)


def test_karpenter_manifests_match_the_crd_schemas(rendered: dict[str, str]) -> None:
    for name in ("ec2nodeclass_gpu", "nodepool_gpu", "nodepool_general"):
        validate_crd(yaml.safe_load(rendered[name]))
    gpu = yaml.safe_load(rendered["nodepool_gpu"])["spec"]
    assert gpu["template"]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert gpu["disruption"]["consolidationPolicy"] == "WhenEmpty"  # empty GPU nodes go away: scale to zero
    nodeclass = yaml.safe_load(rendered["ec2nodeclass_gpu"])["spec"]
    assert nodeclass["metadataOptions"]["httpTokens"] == "required"
    assert nodeclass["blockDeviceMappings"][0]["ebs"]["encrypted"] is True


def test_crd_schema_check_is_real(rendered: dict[str, str]) -> None:
    import jsonschema

    doc = yaml.safe_load(rendered["nodepool_gpu"])
    doc["spec"]["disruption"]["consolidationPolicy"] = "Sometimes"
    with pytest.raises(jsonschema.ValidationError):
        validate_crd(doc)


def test_vllm_manifests(rendered: dict[str, str]) -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all(rendered["vllm"])}
    assert set(docs) == {"PersistentVolumeClaim", "Deployment", "Service", "ScaledObject"}
    validate_crd(docs["ScaledObject"])
    scaled = docs["ScaledObject"]["spec"]
    assert scaled["minReplicaCount"] == 0 and scaled["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    assert scaled["triggers"][0]["metadata"]["query"] == 'sum(rate(gatehouse_requests_total{model="qwen3-coder:30b"}[2m]))'
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:4] == ["--model", "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", "--served-model-name",
                                     "qwen3-coder:30b"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0] == {"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "Gt",
                                           "values": ["40959"]}


CHECKOV = os.environ.get("GATEHOUSE_CHECKOV_BIN") or shutil.which("checkov")


@pytest.mark.skipif(CHECKOV is None, reason="checkov not installed (make tf-checkov installs it in .cache/checkov)")
def test_checkov_has_no_unreviewed_findings(tmp_path: Path) -> None:
    """Every finding is either fixed or skipped at its resource with a reason (#checkov:skip=...)."""
    assert CHECKOV is not None
    done = subprocess.run([CHECKOV, "-d", str(TF), "--framework", "terraform", "--quiet", "--compact", "-o", "json"],
                          env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [f"{f['check_id']} {f['resource']} ({f['file_path']})" for r in reports
              for f in r["results"]["failed_checks"]]
    assert failed == []
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)


@pytest.mark.parametrize("azs", [2, 3])
def test_vpc_address_plan_has_no_overlaps(tmp_path: Path, azs: int) -> None:
    """The vpc module's own locals block (copied verbatim), evaluated by terraform for 2 and 3 AZs."""
    import ipaddress
    import re

    if TERRAFORM is None:
        pytest.skip("terraform is not on PATH")
    main = (TF / "modules" / "vpc" / "main.tf").read_text()
    block = re.search(r"^locals \{\n.*?^\}\n", main, re.S | re.M)
    assert block, "no locals block in modules/vpc/main.tf"
    (tmp_path / "main.tf").write_text(textwrap.dedent("""
        variable "cidr_block" { default = "10.40.0.0/16" }
        variable "azs" { type = list(string) }
        variable "single_nat_gateway" { default = false }
        output "plan" {
          value = { public = local.public_cidrs, private = local.private_cidrs, database = local.database_cidrs }
        }
    """) + block.group(0))
    names = json.dumps([f"us-west-2{c}" for c in "abc"[:azs]])
    terraform("init", "-input=false", "-backend=false", cwd=tmp_path, home=tmp_path)
    terraform("apply", "-auto-approve", "-input=false", f"-var=azs={names}", cwd=tmp_path, home=tmp_path)
    plan = json.loads(terraform("output", "-json", "plan", cwd=tmp_path, home=tmp_path).stdout)
    vpc = ipaddress.ip_network("10.40.0.0/16")
    nets = [ipaddress.ip_network(c) for tier in ("public", "private", "database") for c in plan[tier]]
    assert all(len(plan[tier]) == azs for tier in plan)
    assert all(n.subnet_of(vpc) for n in nets)
    assert not [(a, b) for i, a in enumerate(nets) for b in nets[i + 1:] if a.overlaps(b)]
    assert all(ipaddress.ip_network(c).prefixlen == 18 for c in plan["private"])  # room for pod IPs
