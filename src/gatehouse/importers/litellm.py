"""LiteLLM proxy `config.yaml` -> Gatehouse config.

Read: `model_list` (model_name, litellm_params: model with its provider prefix, api_base,
api_key, aws_region_name, input/output_cost_per_token), `router_settings.model_group_alias`,
`general_settings.master_key`, and — as exported from LiteLLM's `/team/list` and `/key/list`
and appended to the file — `teams` (team_id or team_alias, models, tpm_limit, rpm_limit,
max_budget, budget_duration) and `keys` (key or key_alias, team_id, user_id, models,
tpm_limit, rpm_limit, max_budget).
"""
from __future__ import annotations

from typing import Any

from gatehouse.importers.common import Draft, NotImportable, hashed, slug

# LiteLLM's provider prefix -> (Gatehouse provider type, default base_url)
_PREFIX: dict[str, tuple[str, str | None]] = {
    "openai": ("openai", None), "hosted_vllm": ("openai", None), "text-completion-openai": ("openai", None),
    "openai_like": ("openai", None), "vllm": ("openai", None), "llamafile": ("openai", None),
    "lm_studio": ("openai", None), "ollama": ("ollama", "http://localhost:11434"),
    "ollama_chat": ("ollama", "http://localhost:11434"), "anthropic": ("anthropic", None),
    "bedrock": ("bedrock", None), "gemini": ("gemini", None),
}


def _budget(group: dict[str, Any], item: dict[str, Any], draft: Draft, who: str) -> None:
    if item.get("tpm_limit") is not None:
        group["tokens_per_minute"] = int(item["tpm_limit"])
    if item.get("rpm_limit") is not None:
        group["requests_per_minute"] = int(item["rpm_limit"])
    budget = item.get("max_budget")
    if budget is not None:
        duration = str(item.get("budget_duration") or "30d")
        if duration in ("1d", "24h"):
            group["budget_usd_per_day"] = float(budget)
        else:
            group["budget_usd_per_month"] = float(budget)
            if duration not in ("30d", "1mo", "1m"):
                draft.notes.append(f"{who}: budget_duration {duration} became a monthly budget of ${budget}")


def _deployment(draft: Draft, i: int, entry: dict[str, Any]) -> None:
    name = entry.get("model_name")
    params = entry.get("litellm_params") or {}
    target = params.get("model")
    if not isinstance(name, str) or not isinstance(target, str):
        raise NotImportable(f"model_list[{i}]: needs model_name and litellm_params.model")
    prefix, sep, upstream = target.partition("/")
    if not sep:
        prefix, upstream = "openai", target
    if prefix == "bedrock" and upstream.startswith("converse/"):
        upstream = upstream[len("converse/"):]
    if prefix not in _PREFIX:
        draft.notes.append(f"model_list[{i}] ({name}): provider '{prefix}' has no Gatehouse equivalent; left out")
        return
    ptype, default_url = _PREFIX[prefix]
    base_url = params.get("api_base") or default_url
    if ptype == "ollama" and base_url and base_url.rstrip("/").endswith("/v1"):
        ptype = "openai"  # Ollama's OpenAI-compatible endpoint
    if ptype == "bedrock":
        region = params.get("aws_region_name")
        pname = draft.provider("bedrock", f"bedrock-{region}" if region else "bedrock", region=region)
    else:
        key = draft.secret(params.get("api_key"), f"{prefix}_API_KEY",
                           f"API key for {prefix} ({base_url or 'default URL'})")
        if ptype == "gemini" and key is None:
            key = draft.secret("os.environ/GEMINI_API_KEY", "GEMINI_API_KEY", "Google AI Studio API key")
        pname = draft.provider(ptype, prefix if prefix != "hosted_vllm" else "vllm", base_url=base_url, api_key=key)
    dep: dict[str, Any] = {"provider": pname, "model": upstream}
    for ours, theirs in (("input_per_mtok", "input_cost_per_token"), ("output_per_mtok", "output_cost_per_token")):
        if params.get(theirs) is not None:
            dep[ours] = round(float(params[theirs]) * 1_000_000, 6)
    if params.get("rpm") or params.get("tpm"):
        draft.notes.append(f"model_list[{i}] ({name}): per-deployment rpm/tpm are not carried over "
                           "(limits are per group)")
    draft.deploy(name, dep)


def convert(doc: Any) -> Draft:
    if not isinstance(doc, dict) or not isinstance(doc.get("model_list"), list):
        raise NotImportable("not a LiteLLM proxy config: no model_list")
    draft = Draft()
    for i, entry in enumerate(doc["model_list"]):
        if not isinstance(entry, dict):
            raise NotImportable(f"model_list[{i}]: expected a mapping")
        _deployment(draft, i, entry)
    aliases = (doc.get("router_settings") or {}).get("model_group_alias") or {}
    for alias, target in aliases.items():
        target = target.get("model") if isinstance(target, dict) else target
        if target in draft.models:
            draft.model_aliases[str(alias)] = target
    master = (doc.get("general_settings") or {}).get("master_key")
    draft.admin_key = draft.secret(master, "GATEHOUSE_ADMIN_KEY", "the admin key (was LiteLLM's master_key)")
    team_names: dict[str, str] = {}
    for t, team in enumerate(doc.get("teams") or []):
        name = slug(str(team.get("team_alias") or team.get("team_id") or f"team-{t}"))
        team_names[str(team.get("team_id") or name)] = name
        models = ["*" if m == "all-proxy-models" else m for m in (team.get("models") or ["*"])]
        group: dict[str, Any] = {"models": [m for m in models if m == "*" or m in draft.models or "*" in m]}
        if team.get("team_alias") and team.get("team_id"):
            group["description"] = f"LiteLLM team {team['team_id']}"
        _budget(group, team, draft, f"teams[{t}]")
        draft.groups[name] = group
    keys = doc.get("keys") or []
    if keys and "default" not in draft.groups and any(not k.get("team_id") for k in keys):
        draft.groups["default"] = {"models": ["*"]}
    for k, key in enumerate(keys):
        group_name = team_names.get(str(key.get("team_id")), "default") if key.get("team_id") else "default"
        cname = slug(str(key.get("user_id") or key.get("key_alias") or f"key-{k}"))
        consumer = draft.consumers.setdefault(cname, {"group": group_name, "keys": []})
        plain = key.get("key")
        if isinstance(plain, str) and plain:
            consumer["keys"].append(hashed(plain))
        else:
            draft.notes.append(f"keys[{k}] ({cname}): no key value; issue one with `gatehouse keys create {cname}`")
        if key.get("models"):
            consumer["models"] = list(key["models"])
        _budget(consumer, key, draft, f"keys[{k}]")
    if not draft.groups:
        draft.groups["default"] = {"models": ["*"]}
        draft.notes.append("no teams: one group 'default' with every model; add consumers and keys "
                           "(gatehouse consumers create NAME --group default; gatehouse keys create NAME)")
    return draft
