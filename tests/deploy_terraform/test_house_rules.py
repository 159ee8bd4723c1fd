"""House rules over deploy/terraform (parsed with python-hcl2), and each rule shown to catch a bad
snippet, so none of them passes by not looking."""
from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy_terraform import hcl_rules
from tests.deploy_terraform.hcl_rules import Module

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "deploy" / "terraform"
MODULES = ("vpc", "eks", "karpenter", "iam", "rds", "elasticache", "secrets", "bastion", "gatehouse-values")
EXAMPLES = ("eks-ollama", "eks-vllm-karpenter")


@pytest.fixture(scope="module")
def tree() -> list[Module]:
    return hcl_rules.load_tree(TF)


def test_layout(tree: list[Module]) -> None:
    dirs = {m.path.relative_to(TF).as_posix() for m in tree}
    assert {f"modules/{m}" for m in MODULES} | {f"examples/{e}" for e in EXAMPLES} <= dirs
    for example in EXAMPLES:
        assert (TF / "examples" / example / "terraform.tfvars.example").is_file()
        assert (TF / "examples" / example / "backend.tf.example").is_file()


@pytest.mark.parametrize("rule", hcl_rules.ALL_RULES, ids=lambda r: r.__name__)
def test_rule_holds(tree: list[Module], rule: Callable[[list[Module]], list[str]]) -> None:
    assert rule(tree) == []


def test_examples_print_the_next_commands(tree: list[Module]) -> None:
    by_path = {m.path.relative_to(TF).as_posix(): m for m in tree}
    for example in EXAMPLES:
        outputs = by_path[f"examples/{example}"].outputs
        for name in ("kubeconfig_command", "helm_values", "helm_install_command", "gateway_url_command",
                     "first_admin_key_command", "kubernetes_secret_command", "database_bootstrap_command"):
            assert name in outputs, f"{example}: output {name}"
        assert "deploy/helm/gatehouse" in outputs["helm_install_command"]["value"]
        assert outputs["database_role_password"].get("sensitive") is True


def test_examples_use_every_module(tree: list[Module]) -> None:
    used = {Path(str(body["source"])).name for m in tree if "examples" in m.path.parts for body in m.modules.values()}
    assert set(MODULES) <= used


# ---- each rule catches what it is for -------------------------------------------------------------

BAD = {
    "variables_typed_and_described": 'variable "x" {\n  default = 1\n}\n',
    "outputs_described": 'output "x" {\n  value = 1\n}\n',
    "versions_pinned": """
        terraform {
          required_version = ">= 1.6.0"
          required_providers {
            aws = { source = "hashicorp/aws", version = ">= 5.0" }
          }
        }
        resource "random_password" "p" { length = 8 }
    """,
    "no_registry_modules": 'module "vpc" {\n  source = "terraform-aws-modules/vpc/aws"\n}\n',
    "resources_tagged": 'resource "aws_sqs_queue" "q" {\n  name = "q"\n}\n',
    "roots_have_default_tags": 'provider "aws" {\n  region = "us-west-2"\n}\n',
    "no_open_database_ports": """
        resource "aws_vpc_security_group_ingress_rule" "pg" {
          security_group_id = "sg-1"
          ip_protocol       = "tcp"
          from_port         = 5400
          to_port           = 5500
          cidr_ipv4         = "0.0.0.0/0"
          tags              = {}
        }
    """,
    "policies_from_documents": """
        resource "aws_iam_role_policy" "p" {
          role   = "r"
          policy = jsonencode({ Statement = [{ Effect = "Allow", Action = "bedrock:*", Resource = "*" }] })
        }
    """,
    "references_resolve": """
        variable "a" {
          type        = string
          description = "a"
        }
        output "o" {
          description = "o"
          value       = "${var.a}-${var.b}-${local.c}-${aws_vpc.missing.id}"
        }
    """,
    "bedrock_least_privilege": """
        data "aws_iam_policy_document" "p" {
          statement {
            actions   = ["bedrock:InvokeModel"]
            resources = ["*"]
          }
        }
    """,
}


@pytest.mark.parametrize("rule", hcl_rules.ALL_RULES, ids=lambda r: r.__name__)
def test_rule_catches_a_bad_snippet(tmp_path: Path, rule: Callable[[list[Module]], list[str]]) -> None:
    (tmp_path / "main.tf").write_text(textwrap.dedent(BAD[rule.__name__]))
    assert rule([hcl_rules.load_module(tmp_path)]), f"{rule.__name__} let a bad snippet through"


@pytest.mark.parametrize("snippet", [
    # an all-ports rule open to the world reaches 5432 too
    'resource "aws_security_group" "s" {\n  ingress {\n    protocol = "-1"\n    from_port = 0\n'
    '    to_port = 0\n    cidr_blocks = ["0.0.0.0/0"]\n  }\n  tags = {}\n}\n',
    # ports given as expressions could be anything
    'resource "aws_security_group_rule" "r" {\n  type = "ingress"\n  protocol = "tcp"\n  from_port = var.p\n'
    '  to_port = var.p\n  ipv6_cidr_blocks = ["::/0"]\n  security_group_id = "sg"\n}\n',
])
def test_open_port_variants(tmp_path: Path, snippet: str) -> None:
    (tmp_path / "main.tf").write_text(snippet)
    assert hcl_rules.no_open_database_ports([hcl_rules.load_module(tmp_path)])


def test_open_port_rule_allows_https_and_security_group_sources(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(textwrap.dedent("""
        resource "aws_vpc_security_group_ingress_rule" "https" {
          security_group_id = "sg-1"
          ip_protocol       = "tcp"
          from_port         = 443
          to_port           = 443
          cidr_ipv4         = "0.0.0.0/0"
          tags              = {}
        }
        resource "aws_vpc_security_group_ingress_rule" "pg" {
          security_group_id            = "sg-1"
          ip_protocol                  = "tcp"
          from_port                    = 5432
          to_port                      = 5432
          referenced_security_group_id = "sg-2"
          tags                         = {}
        }
    """))
    assert hcl_rules.no_open_database_ports([hcl_rules.load_module(tmp_path)]) == []


@pytest.mark.parametrize("statement,ok", [
    ('actions = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]\nresources = var.bedrock_model_arns', True),
    ('actions = ["bedrock:InvokeModel"]\nresources = ["arn:aws:bedrock:*::foundation-model/anthropic.claude-x-v1:0"]', True),
    ('actions = ["bedrock:Invoke*"]\nresources = var.bedrock_model_arns', False),
    ('actions = ["*"]\nresources = ["arn:aws:s3:::b"]', False),
    ('actions = ["bedrock:InvokeModel"]\nresources = ["arn:aws:bedrock:*::foundation-model/*"]', False),
    ('actions = ["bedrock:InvokeModel"]\nresources = var.anything', False),
    ('not_actions = ["iam:*"]\nresources = ["*"]', False),
])
def test_bedrock_statements(tmp_path: Path, statement: str, ok: bool) -> None:
    (tmp_path / "main.tf").write_text(f'data "aws_iam_policy_document" "p" {{\n  statement {{\n{statement}\n  }}\n}}\n')
    assert (hcl_rules.bedrock_least_privilege([hcl_rules.load_module(tmp_path)]) == []) is ok


@pytest.mark.parametrize("example", EXAMPLES)
def test_tfvars_example_sets_declared_variables_and_every_required_one(tree: list[Module], example: str) -> None:
    import hcl2

    module = next(m for m in tree if m.path == TF / "examples" / example)
    with (TF / "examples" / example / "terraform.tfvars.example").open() as fh:
        tfvars = hcl_rules.unquote(hcl2.load(fh))
    unknown = set(tfvars) - set(module.variables)
    assert not unknown, f"terraform.tfvars.example sets undeclared variables {unknown}"
    required = {name for name, body in module.variables.items() if "default" not in body}
    assert required <= set(tfvars), f"terraform.tfvars.example misses required {required - set(tfvars)}"


def test_ollama_manifests_keep_models_on_a_volume_on_the_gpu_node() -> None:
    import yaml

    k8s = TF / "examples" / "eks-ollama" / "k8s"
    docs = {d["kind"]: d for d in yaml.safe_load_all((k8s / "ollama.yaml").read_text())}
    storage = yaml.safe_load((k8s / "storageclass-gp3.yaml").read_text())
    assert storage["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert storage["volumeBindingMode"] == "WaitForFirstConsumer"
    assert docs["PersistentVolumeClaim"]["spec"]["storageClassName"] == storage["metadata"]["name"]
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"  # one RWO volume
    assert pod["nodeSelector"] == {"gatehouse.dev/pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    models = {e["name"]: e["value"] for e in container["env"]}["OLLAMA_MODELS"]
    assert any(m["mountPath"] == models for m in container["volumeMounts"])
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    # The gateway config in the example points at this Service.
    service = docs["Service"]
    url = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:" \
          f"{service['spec']['ports'][0]['port']}/v1"
    assert url in (TF / "examples" / "eks-ollama" / "main.tf").read_text()
