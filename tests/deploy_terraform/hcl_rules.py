"""House rules for deploy/terraform, checked over the HCL as python-hcl2 parses it.

Each rule takes the parsed tree (`load_tree`) and returns a list of violations, one readable line
each ("path: block: what is wrong"); an empty list means the rule holds. The tests run every rule over
the real tree and over small bad snippets, so a rule that cannot fail is noticed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

# AWS resource types used here that have no `tags` argument (everything else must be tagged).
UNTAGGABLE = frozenset({
    "aws_route",                               # part of a (tagged) route table
    "aws_route_table_association",
    "aws_iam_role_policy",                     # inline policy of a tagged role
    "aws_iam_role_policy_attachment",
    "aws_kms_alias",
    "aws_secretsmanager_secret_version",       # a version of a tagged secret
    "aws_eks_access_policy_association",       # belongs to a tagged access entry
    "aws_cloudwatch_event_target",             # belongs to a tagged rule
    "aws_sqs_queue_policy",                    # belongs to a tagged queue
})

# Argument names that carry IAM policy JSON; they must come from aws_iam_policy_document data sources
# (so the statements below are visible to these rules), never from jsonencode() or heredocs.
POLICY_ARGUMENTS = {
    "aws_iam_policy": ("policy",),
    "aws_iam_role_policy": ("policy",),
    "aws_iam_user_policy": ("policy",),
    "aws_iam_group_policy": ("policy",),
    "aws_iam_role": ("assume_role_policy", "inline_policy"),
    "aws_kms_key": ("policy",),
    "aws_sqs_queue_policy": ("policy",),
    "aws_kms_key_policy": ("policy",),
}

GUARDED_PORTS = {5432: "PostgreSQL", 6379: "Redis"}
OPEN_CIDRS = ("0.0.0.0/0", "::/0")
UPPER_BOUND = re.compile(r"(~>|<|^=?\s*\d+\.\d+\.\d+$)")


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals; drop them (recursively), and its own
    bookkeeping keys (__is_block__, __comments__, ...)."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if not (k.startswith("__") and k.endswith("__"))}
    return value


@dataclass
class Module:
    """One Terraform module directory (a root example or a child module)."""

    path: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: list[tuple[str, str, dict[str, Any], str]] = field(default_factory=list)  # type, name, body, file
    data: list[tuple[str, str, dict[str, Any], str]] = field(default_factory=list)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    providers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    locals: dict[str, Any] = field(default_factory=dict)


def _blocks(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [unquote(b) for b in doc.get(key, [])]


def load_module(directory: Path) -> Module:
    mod = Module(directory)
    for tf in sorted(directory.glob("*.tf")):
        with tf.open() as fh:
            doc = hcl2.load(fh)
        for block in _blocks(doc, "variable"):
            mod.variables.update(block)
        for block in _blocks(doc, "output"):
            mod.outputs.update(block)
        for block in _blocks(doc, "module"):
            mod.modules.update(block)
        for block in _blocks(doc, "resource"):
            for rtype, named in block.items():
                for name, body in named.items():
                    mod.resources.append((rtype, name, body, tf.name))
        for block in _blocks(doc, "data"):
            for dtype, named in block.items():
                for name, body in named.items():
                    mod.data.append((dtype, name, body, tf.name))
        mod.terraform += _blocks(doc, "terraform")
        for block in _blocks(doc, "locals"):
            mod.locals.update(block)
        for block in _blocks(doc, "provider"):
            mod.providers += list(block.items())
    return mod


def load_tree(root: Path) -> list[Module]:
    """Every directory under root holding .tf files, as a Module."""
    dirs = sorted({tf.parent for tf in root.rglob("*.tf") if ".terraform" not in tf.parts})
    return [load_module(d) for d in dirs]


def _where(mod: Module, root: Path | None = None) -> str:
    return str(mod.path if root is None else mod.path.relative_to(root))


def variables_typed_and_described(tree: list[Module]) -> list[str]:
    out = []
    for mod in tree:
        for name, body in mod.variables.items():
            if "type" not in body:
                out.append(f"{mod.path}: variable {name}: no type")
            if not str(body.get("description", "")).strip():
                out.append(f"{mod.path}: variable {name}: no description")
    return out


def outputs_described(tree: list[Module]) -> list[str]:
    return [f"{mod.path}: output {name}: no description"
            for mod in tree for name, body in mod.outputs.items() if not str(body.get("description", "")).strip()]


def _providers_used(mod: Module) -> set[str]:
    names = {rtype.split("_", 1)[0] for rtype, *_ in mod.resources} | {dtype.split("_", 1)[0] for dtype, *_ in mod.data}
    names |= {name for name, _ in mod.providers}
    return names - {"terraform"}  # terraform_data / terraform_remote_state are built in


def versions_pinned(tree: list[Module]) -> list[str]:
    """required_version with an upper bound in every module; every provider used is declared
    with a source and a version constraint that has both a lower and an upper bound."""
    out = []
    for mod in tree:
        versions = [t["required_version"] for t in mod.terraform if "required_version" in t]
        if len(versions) != 1:
            out.append(f"{mod.path}: expected one terraform.required_version, found {len(versions)}")
        elif not UPPER_BOUND.search(versions[0]):
            out.append(f"{mod.path}: required_version {versions[0]!r} has no upper bound")
        declared: dict[str, dict[str, Any]] = {}
        for t in mod.terraform:
            for rp in t.get("required_providers", []):
                declared.update(rp)
        for name in sorted(_providers_used(mod)):
            spec = declared.get(name)
            if spec is None:
                out.append(f"{mod.path}: provider {name} is used but not in required_providers")
                continue
            version = str(spec.get("version", ""))
            if not spec.get("source"):
                out.append(f"{mod.path}: provider {name} has no source")
            if not UPPER_BOUND.search(version):
                out.append(f"{mod.path}: provider {name} version {version!r} has no upper bound")
            if not re.search(r"(>=|~>|^=?\s*\d)", version):
                out.append(f"{mod.path}: provider {name} version {version!r} has no lower bound")
    return out


def no_registry_modules(tree: list[Module]) -> list[str]:
    """Module sources are local paths (registry modules cannot be fetched here, nor vendored)."""
    return [f"{mod.path}: module {name}: source {body.get('source')!r} is not a local path"
            for mod in tree for name, body in mod.modules.items()
            if not str(body.get("source", "")).startswith(("./", "../"))]


def resources_tagged(tree: list[Module]) -> list[str]:
    """Every taggable aws_* resource sets tags explicitly (the modules do not rely on the caller's
    provider default_tags); the examples' providers also set default_tags."""
    out = []
    for mod in tree:
        for rtype, name, body, _ in mod.resources:
            if rtype.startswith("aws_") and rtype not in UNTAGGABLE and "tags" not in body:
                out.append(f"{mod.path}: {rtype}.{name}: no tags")
    return out


def roots_have_default_tags(tree: list[Module]) -> list[str]:
    out = []
    for mod in tree:
        for name, body in mod.providers:
            if name == "aws" and not body.get("default_tags"):
                out.append(f"{mod.path}: provider aws: no default_tags")
    return out


def _port_range(body: dict[str, Any]) -> tuple[int, int] | None:
    """(from, to) when both are integer literals; None when the range is everything or unknown."""
    protocol = str(body.get("ip_protocol", body.get("protocol", "tcp")))
    if protocol in ("-1", "all"):
        return None
    lo, hi = body.get("from_port"), body.get("to_port")
    if isinstance(lo, int) and isinstance(hi, int) and lo >= 0:
        return lo, hi
    return None


def _cidrs(body: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("cidr_ipv4", "cidr_ipv6", "cidr_blocks", "ipv6_cidr_blocks"):
        value = body.get(key)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            found += [str(v) for v in value]
    return found


def _ingress_rules(mod: Module) -> list[tuple[str, dict[str, Any]]]:
    rules = []
    for rtype, name, body, _ in mod.resources:
        if rtype == "aws_vpc_security_group_ingress_rule":
            rules.append((f"{rtype}.{name}", body))
        elif rtype == "aws_security_group_rule" and body.get("type") == "ingress":
            rules.append((f"{rtype}.{name}", body))
        elif rtype in ("aws_security_group", "aws_default_security_group"):
            for i, rule in enumerate(body.get("ingress", []) or []):
                rules.append((f"{rtype}.{name}.ingress[{i}]", rule))
    return rules


def no_open_database_ports(tree: list[Module]) -> list[str]:
    """No ingress from 0.0.0.0/0 or ::/0 that reaches 5432 or 6379, including all-ports rules and
    rules whose ports are expressions (they could be anything)."""
    out = []
    for mod in tree:
        for where, body in _ingress_rules(mod):
            open_cidrs = [c for c in _cidrs(body) if any(o in c for o in OPEN_CIDRS)]
            if not open_cidrs:
                continue
            span = _port_range(body)
            hit = [n for p, n in GUARDED_PORTS.items() if span is None or span[0] <= p <= span[1]]
            if hit:
                out.append(f"{mod.path}: {where}: {', '.join(hit)} open to {', '.join(open_cidrs)}")
    return out


def _statements(mod: Module) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for dtype, name, body, _ in mod.data:
        if dtype == "aws_iam_policy_document":
            for i, st in enumerate(body.get("statement", []) or []):
                found.append((f"data.aws_iam_policy_document.{name}.statement[{i}]", st))
    return found


def policies_from_documents(tree: list[Module]) -> list[str]:
    """IAM policy arguments reference an aws_iam_policy_document (no jsonencode or heredoc JSON)."""
    out = []
    for mod in tree:
        for rtype, name, body, _ in mod.resources:
            for arg in POLICY_ARGUMENTS.get(rtype, ()):
                if arg in body and not re.fullmatch(r"\$\{data\.aws_iam_policy_document\.[\w\[\]\.]+\.json\}", str(body[arg])):
                    out.append(f"{mod.path}: {rtype}.{name}.{arg}: not from an aws_iam_policy_document")
    return out


def bedrock_least_privilege(tree: list[Module]) -> list[str]:
    """Allow statements: no "*" action anywhere, no wildcard Bedrock action, no NotAction; a
    statement with Bedrock actions names its resources from the listed model ARNs (a variable, or
    literal model/inference-profile ARNs without a wildcard in the model id), never "*"."""
    out = []
    for mod in tree:
        for where, st in _statements(mod):
            if str(st.get("effect", "Allow")) == "Deny":
                continue
            if "not_actions" in st:
                out.append(f"{mod.path}: {where}: not_actions in an Allow statement")
            actions = [str(a) for a in st.get("actions", []) or []]
            if "*" in actions:
                out.append(f"{mod.path}: {where}: action '*'")
            bedrock = [a for a in actions if a.lower().startswith("bedrock:")]
            for a in bedrock:
                if "*" in a:
                    out.append(f"{mod.path}: {where}: wildcard Bedrock action {a!r}")
            if not bedrock:
                continue
            resources = st.get("resources")
            if isinstance(resources, str):
                if not re.fullmatch(r"\$\{var\.\w*model_arns\w*\}", resources):
                    out.append(f"{mod.path}: {where}: Bedrock resources {resources!r} are not the listed model ARNs")
                continue
            for r in resources or []:
                r = str(r)
                model_id = r.rsplit("/", 1)[-1] if "/" in r else "*"
                if r == "*" or "*" in model_id or ":bedrock:" not in r:
                    out.append(f"{mod.path}: {where}: Bedrock resource {r!r} is not a listed model ARN")
    return out


def _expressions(value: Any) -> list[str]:
    """Every string holding an interpolation, anywhere in a parsed value."""
    if isinstance(value, str):
        return [value] if "${" in value else []
    if isinstance(value, list):
        return [e for v in value for e in _expressions(v)]
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _expressions(k) + _expressions(v)]
    return []


def _module_bodies(mod: Module) -> list[Any]:
    return [mod.variables, mod.outputs, mod.locals, mod.modules, [b for _, b in mod.providers],
            [b for *_, b, _ in mod.resources], [b for *_, b, _ in mod.data]]


def references_resolve(tree: list[Module]) -> list[str]:
    """What `terraform validate` would catch first, without a provider: every var., local., module.,
    data. and resource reference names something declared in the module; every module call passes
    only declared variables and all required ones, and reads only declared outputs."""
    out = []
    for mod in tree:
        resources = {(t, n) for t, n, *_ in mod.resources}
        data = {(t, n) for t, n, *_ in mod.data}
        text = "\n".join(_expressions(_module_bodies(mod)))
        for name in sorted(set(re.findall(r"\bvar\.(\w+)", text)) - set(mod.variables)):
            out.append(f"{mod.path}: var.{name} is not declared")
        for name in sorted(set(re.findall(r"\blocal\.(\w+)", text)) - set(mod.locals)):
            out.append(f"{mod.path}: local.{name} is not defined")
        for t, n in sorted(set(re.findall(r"\bdata\.(\w+)\.(\w+)", text)) - data):
            out.append(f"{mod.path}: data.{t}.{n} is not declared")
        for t, n in sorted(set(re.findall(r"(?<![\w.])((?:aws|random|tls)_\w+)\.(\w+)", text)) - resources):
            out.append(f"{mod.path}: {t}.{n} is not declared")
        called = {}
        for name, body in mod.modules.items():
            source = str(body.get("source", ""))
            if not source.startswith(("./", "../")):
                continue
            target = load_module((mod.path / source).resolve())
            called[name] = target
            args = set(body) - {"source", "count", "for_each", "depends_on", "providers", "version"}
            for arg in sorted(args - set(target.variables)):
                out.append(f"{mod.path}: module {name}: {arg} is not a variable of {source}")
            required = {v for v, b in target.variables.items() if "default" not in b}
            for arg in sorted(required - args):
                out.append(f"{mod.path}: module {name}: required variable {arg} not passed")
        for name, attr in sorted(set(re.findall(r"\bmodule\.(\w+)(?:\[\d+\])?\.(\w+)", text))):
            if name not in called:
                out.append(f"{mod.path}: module.{name} is not declared")
            elif attr not in called[name].outputs:
                out.append(f"{mod.path}: module.{name}.{attr} is not an output of {mod.modules[name]['source']}")
    return out


ALL_RULES = (
    variables_typed_and_described,
    outputs_described,
    versions_pinned,
    no_registry_modules,
    resources_tagged,
    roots_have_default_tags,
    no_open_database_ports,
    policies_from_documents,
    bedrock_least_privilege,
    references_resolve,
)
