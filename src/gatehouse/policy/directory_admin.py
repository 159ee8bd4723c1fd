"""Create, show, update and delete groups and consumers: the rules shared by the admin API and
the CLI. Inputs go through the same structs and validators as the config file; config
entries are read-only here (the file is their source of truth). Names follow one pattern
(limits_config.NAME_PATTERN) wherever they are made; descriptions are stored and returned
exactly as given: SQL is parameterised and nothing is ever templated.
"""
from __future__ import annotations

from typing import Any

import msgspec

from gatehouse.config import Config, ConfigError, ConsumerConfig, GroupConfig
from gatehouse.errors import Conflict, InvalidRequest, NotFound
from gatehouse.policy.access import expand
from gatehouse.policy.audit import AuditTrail
from gatehouse.policy.limits_config import LIMIT_FIELDS, check_limit_settings, check_name, effective_limits
from gatehouse.store.directory_sql import DirectoryStore, NameTaken, Row
from gatehouse.wire.common import convert


def _invalid(e: ConfigError) -> InvalidRequest:
    text = str(e)
    param = text.split(":", 1)[0] if ":" in text else None
    return InvalidRequest(f"Invalid value for '{param}': {text.split(':', 1)[1].strip()}" if param else text,
                          param=param, code="invalid_value")


def checked_name(name: Any, param: str = "name") -> str:
    """The name, or 400 invalid_value naming the rule."""
    try:
        check_name(name, param)
    except ConfigError as e:
        raise _invalid(e) from None
    assert isinstance(name, str)
    return name


def _limits_view(spec: GroupConfig | ConsumerConfig) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in LIMIT_FIELDS}


class DirectoryAdmin:
    def __init__(self, cfg: Config, store: DirectoryStore, model_names: list[str], audit: AuditTrail | None = None):
        self.cfg = cfg
        self.store = store
        self.model_names = model_names
        self.audit = audit  # every change is recorded here once it is made

    async def record(self, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
        if self.audit is not None:
            await self.audit.record(action, target, detail)

    # ---- groups --------------------------------------------------------------------------------

    async def list_groups(self) -> list[dict[str, Any]]:
        rows = await self.store.groups()
        out = [self._group_view(n, g, "config") for n, g in self.cfg.groups.items()]
        out += [self._group_view(n, r.spec, "store", r) for n, r in rows.items() if n not in self.cfg.groups]
        return out

    async def get_group(self, name: str) -> dict[str, Any]:
        if name in self.cfg.groups:
            return self._group_view(name, self.cfg.groups[name], "config")
        row = (await self.store.groups()).get(name)
        if row is None:
            raise NotFound(f"No group named '{name}'.", code="group_not_found")
        return self._group_view(name, row.spec, "store", row)

    async def create_group(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        name = checked_name(body.pop("name", None))
        if name in self.cfg.groups:
            raise Conflict(f"Group '{name}' is defined in the config file.", code="defined_in_config")
        spec = self._group_spec(body)
        try:
            row = await self.store.put_group(name, spec, create=True)
        except NameTaken:
            raise Conflict(f"Group '{name}' already exists.", code="name_taken") from None
        assert row is not None
        await self.record("group.create", name, body)
        return self._group_view(name, spec, "store", row)

    async def update_group(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        self._writable(name, self.cfg.groups, "Group")
        row = (await self.store.groups()).get(name)
        if row is None:
            raise NotFound(f"No group named '{name}'.", code="group_not_found")
        spec = self._group_spec({**msgspec.structs.asdict(row.spec), **self._no_name(changes)})
        new = await self.store.put_group(name, spec, create=False)
        if new is None:
            raise NotFound(f"No group named '{name}'.", code="group_not_found")
        await self.record("group.update", name, changes)
        return self._group_view(name, spec, "store", new)

    async def delete_group(self, name: str) -> None:
        self._writable(name, self.cfg.groups, "Group")
        in_config = [c for c, spec in self.cfg.consumers.items() if spec.group == name]
        done = None if in_config else await self.store.delete_group(name)
        if done is None:
            raise Conflict(f"Group '{name}' still has consumers; move or delete them first.", code="group_in_use")
        if not done:
            raise NotFound(f"No group named '{name}'.", code="group_not_found")
        await self.record("group.delete", name)

    def _group_spec(self, body: dict[str, Any]) -> GroupConfig:
        spec = convert(body, GroupConfig)
        try:
            check_limit_settings(spec, "group")
        except ConfigError as e:
            raise _invalid(e) from None
        for i, name in enumerate(spec.guardrails):  # (docs/guardrails.md)
            if name not in self.cfg.guardrails.policies:
                raise InvalidRequest(f"Unknown guardrail policy '{name}' (policies are defined in the config file).",
                                     param=f"guardrails[{i}]")
        self._check_routes(spec)
        return spec

    def _check_routes(self, spec: GroupConfig) -> None:
        """`default_model` and `data_class` (docs/policy-routing.md), as config/check.py checks
        a config file's groups: a model (or virtual model) the group may use; a declared class."""
        if spec.default_model is not None:
            known = {*self.model_names, *self.cfg.routers}
            if spec.default_model not in known:
                raise InvalidRequest(f"Unknown model '{spec.default_model}' for default_model.", param="default_model",
                                     code="invalid_value")
            if expand(spec.models, [spec.default_model]) == frozenset():
                raise InvalidRequest(f"The group may not use model '{spec.default_model}' (its `models` list), so it "
                                     "cannot be its default_model.", param="default_model", code="invalid_value")
        if spec.data_class is not None:
            classes = self.cfg.compliance.classes if self.cfg.compliance is not None else []
            if spec.data_class not in classes:
                known_classes = ", ".join(classes) or "none: the config has no compliance section"
                raise InvalidRequest(f"Unknown data class '{spec.data_class}' (declared: {known_classes}).",
                                     param="data_class", code="invalid_value")

    def _group_view(self, name: str, g: GroupConfig, source: str, row: Row[Any] | None = None) -> dict[str, Any]:
        allowed = expand(g.models, self.model_names)
        return {
            "name": name, "source": source, "description": g.description, "models": g.models,
            "allowed_models": "*" if allowed is None else sorted(allowed), "limit_scope": g.limit_scope,
            "guardrails": g.guardrails, "default_model": g.default_model, "data_class": g.data_class,
            **_limits_view(g),
            "created_at": row.created_at if row else None, "updated_at": row.updated_at if row else None,
        }

    # ---- consumers -----------------------------------------------------------------------------

    async def list_consumers(self, group: str | None = None) -> list[dict[str, Any]]:
        groups = await self._all_groups()
        rows = await self.store.consumers()
        out = [self._consumer_view(n, c, "config", groups) for n, c in self.cfg.consumers.items()]
        out += [self._consumer_view(n, r.spec, "store", groups, r) for n, r in rows.items()
                if n not in self.cfg.consumers]
        return [c for c in out if group is None or c["group"] == group]

    async def get_consumer(self, name: str) -> dict[str, Any]:
        groups = await self._all_groups()
        if name in self.cfg.consumers:
            return self._consumer_view(name, self.cfg.consumers[name], "config", groups)
        row = (await self.store.consumers()).get(name)
        if row is None:
            raise NotFound(f"No consumer named '{name}'.", code="consumer_not_found")
        return self._consumer_view(name, row.spec, "store", groups, row)

    async def create_consumer(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        name = checked_name(body.pop("name", None))
        if name in self.cfg.consumers:
            raise Conflict(f"Consumer '{name}' is defined in the config file.", code="defined_in_config")
        groups = await self._all_groups()
        spec = self._consumer_spec(body, groups)
        try:
            row = await self.store.put_consumer(name, spec, create=True)
        except NameTaken:
            raise Conflict(f"Consumer '{name}' already exists.", code="name_taken") from None
        assert row is not None
        await self.record("consumer.create", name, {**body, "group": spec.group})
        return self._consumer_view(name, spec, "store", groups, row)

    async def update_consumer(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        self._writable(name, self.cfg.consumers, "Consumer")
        groups = await self._all_groups()
        row = (await self.store.consumers()).get(name)
        if row is None:
            raise NotFound(f"No consumer named '{name}'.", code="consumer_not_found")
        current = msgspec.structs.asdict(row.spec)
        current.pop("keys", None)
        spec = self._consumer_spec({**current, **self._no_name(changes)}, groups)
        new = await self.store.put_consumer(name, spec, create=False)
        if new is None:
            raise NotFound(f"No consumer named '{name}'.", code="consumer_not_found")
        await self.record("consumer.update", name, changes)
        return self._consumer_view(name, spec, "store", groups, new)

    async def require_consumer(self, name: Any, param: str = "consumer") -> str:
        """A consumer that exists (config file or store), for making keys: 400 for a malformed
        name, 404 for one defined nowhere - a key never gets access by naming a stranger."""
        name = checked_name(name, param)
        if name not in self.cfg.consumers and not await self.store.consumer_exists(name):
            raise NotFound(f"No consumer named '{name}': create it first (POST /admin/consumers, in a group).",
                           param=param, code="consumer_not_found")
        return str(name)

    async def delete_consumer(self, name: str) -> None:
        self._writable(name, self.cfg.consumers, "Consumer")
        if not await self.store.delete_consumer(name):
            raise NotFound(f"No consumer named '{name}'.", code="consumer_not_found")
        await self.record("consumer.delete", name, {"keys_revoked": True})

    def _consumer_spec(self, body: dict[str, Any], groups: dict[str, GroupConfig]) -> ConsumerConfig:
        if "keys" in body:
            raise InvalidRequest("Keys are not part of a consumer: create them with POST /admin/keys.",
                                 param="keys", code="invalid_value")
        if body.get("group") is None:
            if self.cfg.access.default_group is None:
                raise InvalidRequest("Every consumer belongs to a group: 'group' is required.", param="group",
                                     code="invalid_value")
            body = {**body, "group": self.cfg.access.default_group}
        spec = convert(body, ConsumerConfig)
        if spec.group not in groups:
            raise InvalidRequest(f"Unknown group '{spec.group}'.", param="group", code="invalid_value")
        try:
            check_limit_settings(spec, "consumer")
        except ConfigError as e:
            raise _invalid(e) from None
        return spec

    def _consumer_view(self, name: str, c: ConsumerConfig, source: str, groups: dict[str, GroupConfig],
                       row: Row[Any] | None = None) -> dict[str, Any]:
        group_name = c.group or self.cfg.access.default_group
        group = groups.get(group_name) if group_name else None
        allowed = expand(group.models, self.model_names) if group else frozenset()
        if c.models is not None:
            own = expand(c.models, self.model_names)
            allowed = own if allowed is None else (allowed if own is None else allowed & own)
        eff = effective_limits(name, group_name, group, c)
        return {
            "name": name, "source": source, "group": group_name, "description": c.description,
            "models": c.models, "overrides": {k: v for k, v in _limits_view(c).items() if v is not None},
            "allowed_models": "*" if allowed is None else sorted(allowed),
            "limits": {f: getattr(eff, f) for f in LIMIT_FIELDS} if eff else {},
            "created_at": row.created_at if row else None, "updated_at": row.updated_at if row else None,
        }

    # ---- shared --------------------------------------------------------------------------------

    async def _all_groups(self) -> dict[str, GroupConfig]:
        groups: dict[str, GroupConfig] = {n: r.spec for n, r in (await self.store.groups()).items()}
        groups.update(self.cfg.groups)
        return groups

    @staticmethod
    def _writable(name: str, configured: dict[str, Any], what: str) -> None:
        if name in configured:
            raise Conflict(f"{what} '{name}' is defined in the config file; change it there.",
                           code="defined_in_config")

    @staticmethod
    def _no_name(changes: dict[str, Any]) -> dict[str, Any]:
        if "name" in changes:
            raise InvalidRequest("A name cannot be changed; create a new entry instead.", param="name",
                                 code="invalid_value")
        return changes
