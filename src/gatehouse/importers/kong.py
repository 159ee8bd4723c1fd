"""Kong declarative config (`kong.yaml`, `_format_version: "3.0"`) -> Gatehouse config.

Read: services and their routes with the `ai-proxy` / `ai-proxy-advanced` plugin (model
provider, name, upstream_url, auth header), `acl` plugins (allow lists), consumers with
`keyauth_credentials`, `acls` and `groups`, consumer groups, and `ai-rate-limiting-advanced` /
`rate-limiting` plugins on consumer groups. Each AI route's model becomes a Gatehouse model;
each consumer group a group whose models are those its members' ACLs reach.
"""
from __future__ import annotations

import re
from typing import Any

from gatehouse.importers.common import Draft, NotImportable, hashed, slug

_TYPES = {"openai": "openai", "azure": "openai", "mistral": "openai", "llama2": "openai", "cohere": None,
          "huggingface": None, "anthropic": "anthropic", "bedrock": "bedrock", "gemini": "gemini"}


def _plugins(node: dict[str, Any], top: list[dict[str, Any]], ref: str) -> list[dict[str, Any]]:
    """A service's/route's/consumer group's own plugins and the top-level ones that name it."""
    name = node.get("name") or node.get("id")
    own = [p for p in node.get("plugins") or [] if p.get("enabled", True)]
    return own + [p for p in top if p.get("enabled", True) and p.get(ref) in (name, node.get("id")) and name]


def _target(draft: Draft, where: str, cfg: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    model = cfg.get("model") or {}
    provider, upstream = model.get("provider"), model.get("name")
    ptype = _TYPES.get(provider or "")
    if ptype is None or not upstream:
        draft.notes.append(f"{where}: model provider '{provider}' (or its model name) has no Gatehouse equivalent; "
                           "left out")
        return None
    options = model.get("options") or {}
    auth = cfg.get("auth") or {}
    settings: dict[str, Any] = {}
    if ptype == "bedrock":
        settings["region"] = (options.get("bedrock") or {}).get("aws_region")
    else:
        # Kong's upstream_url is the whole endpoint; a Gatehouse provider takes the base URL
        url = options.get("upstream_url")
        settings["base_url"] = (re.sub(r"/(chat/completions|completions|embeddings|messages)/?$", "", url)
                                if url else None)
        header, value = str(auth.get("header_name") or ""), auth.get("header_value")
        secret = value.removeprefix("Bearer ").strip() if isinstance(value, str) else None
        ref = draft.secret(secret, f"{provider}_API_KEY", f"API key for {provider} (was the ai-proxy auth header)")
        if ref and (header.lower() == "authorization" or (ptype == "anthropic" and header.lower() == "x-api-key")
                    or (ptype == "gemini")):
            settings["api_key"] = ref
        elif ref:
            settings["headers"] = {header: ref}
        elif auth.get("param_value"):
            settings["api_key"] = draft.secret(auth["param_value"], f"{provider}_API_KEY", f"API key for {provider}")
        if ptype == "gemini" and "api_key" not in settings:
            settings["api_key"] = draft.secret("os.environ/GEMINI_API_KEY", "GEMINI_API_KEY",
                                               "Google AI Studio API key")
    if provider == "azure":
        draft.notes.append(f"{where}: an Azure OpenAI deployment became an openai provider; check its base_url")
    dep: dict[str, Any] = {"provider": draft.provider(ptype, provider or ptype, **settings), "model": upstream}
    return upstream, dep


def _limits(plugins: list[dict[str, Any]], draft: Draft, who: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in plugins:
        cfg = p.get("config") or {}
        if p.get("name") == "ai-rate-limiting-advanced":
            strategy = cfg.get("tokens_count_strategy", "total_tokens")
            for prov in cfg.get("llm_providers") or []:
                limits, windows = prov.get("limit"), prov.get("window_size")
                limit = (limits[0] if isinstance(limits, list) else limits) or 0
                window = (windows[0] if isinstance(windows, list) else windows) or 60
                if strategy == "cost":
                    if window <= 86400:
                        out["budget_usd_per_day"] = round(float(limit) * 86400 / window, 6)
                    else:
                        out["budget_usd_per_month"] = round(float(limit) * 2592000 / window, 6)
                else:
                    tpm = int(float(limit) * 60 / window)
                    out["tokens_per_minute"] = min(tpm, out.get("tokens_per_minute", tpm))
                if window not in (60, 86400, 2592000):
                    draft.notes.append(f"{who}: a {window}s window was scaled to Gatehouse's per-minute/day/month")
        elif p.get("name") == "rate-limiting":
            per_min = cfg.get("minute") or (cfg.get("second") and cfg["second"] * 60) or \
                (cfg.get("hour") and max(1, cfg["hour"] // 60))
            if per_min:
                out["requests_per_minute"] = int(per_min)
    return out


def convert(doc: Any) -> Draft:
    if not isinstance(doc, dict) or "_format_version" not in doc:
        raise NotImportable("not a Kong declarative config: no _format_version")
    draft = Draft()
    top = [p for p in doc.get("plugins") or [] if isinstance(p, dict)]
    routes: list[tuple[str, set[str] | None]] = []  # (model, ACL groups allowed; None = everyone)
    for s, service in enumerate(doc.get("services") or []):
        service_plugins = _plugins(service, top, "service")
        for r, route in enumerate(service.get("routes") or [{}]):
            plugins = service_plugins + (_plugins(route, top, "route") if route else [])
            where = f"services[{s}].routes[{r}]"
            targets: list[tuple[str, dict[str, Any]] | None] = []
            allow: set[str] | None = None
            for p in plugins:
                if p.get("name") == "ai-proxy":
                    targets.append(_target(draft, where, p.get("config") or {}))
                elif p.get("name") == "ai-proxy-advanced":
                    targets += [_target(draft, where, t) for t in (p.get("config") or {}).get("targets") or []]
                elif p.get("name") == "acl":
                    allow = set((p.get("config") or {}).get("allow") or [])
            found = [t for t in targets if t is not None]
            if not found:
                continue
            model = found[0][0]
            for _, dep in found:
                draft.deploy(model, dep)
            routes.append((model, allow))
    if not draft.models:
        raise NotImportable("no service or route with the ai-proxy or ai-proxy-advanced plugin")
    group_plugins = {g.get("name"): _plugins(g, top, "consumer_group") for g in doc.get("consumer_groups") or []}
    for c, consumer in enumerate(doc.get("consumers") or []):
        name = slug(str(consumer.get("username") or consumer.get("custom_id") or f"consumer-{c}"))
        acls = {a.get("group") for a in consumer.get("acls") or []}
        reach = [m for m, allow in routes if allow is None or acls & allow]
        groups = [g.get("name") if isinstance(g, dict) else g for g in consumer.get("groups") or []]
        group = slug(str(groups[0])) if groups else "default"
        if len(groups) > 1:
            draft.notes.append(f"consumers[{c}] ({name}): in several consumer groups; put in '{group}' only")
        entry = draft.groups.setdefault(group, {"models": []})
        entry["models"] = list(dict.fromkeys([*entry["models"], *reach]))
        keys = [hashed(k["key"]) for k in consumer.get("keyauth_credentials") or [] if k.get("key")]
        draft.consumers[name] = {"group": group, "keys": keys, "_reach": reach}
    for name, entry in draft.groups.items():
        entry.update(_limits(group_plugins.get(name, []), draft, f"consumer_groups.{name}"))
    for consumer in draft.consumers.values():
        reach = consumer.pop("_reach")
        if set(reach) != set(draft.groups[consumer["group"]]["models"]):
            consumer["models"] = reach  # narrower than the group's: this member's own ACLs
    if not draft.groups:
        draft.groups["default"] = {"models": ["*"]}
    for g in doc.get("consumer_groups") or []:
        limits = _limits(group_plugins.get(g.get("name"), []), draft, f"consumer_groups.{g.get('name')}")
        draft.groups.setdefault(slug(str(g.get("name"))), {"models": [], **limits})
    return draft
