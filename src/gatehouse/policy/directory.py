"""Who may use what: groups and consumers from the config file and the store, compiled.

A Directory is immutable: each consumer's group, allowed models (glob patterns expanded)
and effective limits are computed once when it is built, so authenticating a request is
one dict lookup. AccessControl holds the current Directory and rebuilds it when the store's
version counter moves - on this replica at once after a change, on the others within the
poll interval (0.5 s).

Config entries win over store entries of the same name (the admin API refuses to create
such names, and refuses to change config entries: the file is their source of truth).

A consumer that names no group is in `access.default_group`. A key whose consumer is defined
nowhere - its consumer was removed from the config file, say - gets nothing (401, as for an
unknown key), unless the operator opted into `access.unknown_consumers: default_group`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from msgspec import Struct

from gatehouse.config import Config, ConsumerConfig, GroupConfig
from gatehouse.errors import AuthenticationFailed
from gatehouse.policy.access import expand
from gatehouse.policy.auth import INVALID_KEY
from gatehouse.policy.limits_config import effective_limits
from gatehouse.policy.principal import Limits, Principal
from gatehouse.store.directory_sql import DirectoryStore, Row

log = logging.getLogger("gatehouse.directory")

POLL_SECONDS = 0.5
_SUBJECT_CACHE_MAX = 100_000


class Grant(Struct, frozen=True):
    group: str | None
    allowed: frozenset[str] | None
    limits: Limits | None


NOTHING = frozenset[str]()
_WARNED_MAX = 10_000


class Directory:
    def __init__(self, cfg: Config, model_names: list[str], store_groups: dict[str, Row[GroupConfig]],
                 store_consumers: dict[str, Row[ConsumerConfig]]):
        self.groups: dict[str, GroupConfig] = {n: r.spec for n, r in store_groups.items()}
        self.groups.update(cfg.groups)
        self.consumers: dict[str, ConsumerConfig] = {n: r.spec for n, r in store_consumers.items()}
        self.consumers.update(cfg.consumers)
        self.config_groups = frozenset(cfg.groups)
        self.config_consumers = frozenset(cfg.consumers)
        self.default_group = cfg.access.default_group
        self.unknown_get_default = cfg.access.unknown_consumers == "default_group"
        self._names = model_names
        self._group_models = {n: expand(g.models, model_names) for n, g in self.groups.items()}
        self.grants = {n: self._grant(n, c) for n, c in self.consumers.items()}
        self._subjects: dict[tuple[str, str], Grant] = {}
        self._unknown: dict[str, Grant] = {}  # consumers defined nowhere, under unknown_consumers: default_group
        self._warned: set[str] = set()

    def _grant(self, name: str, c: ConsumerConfig) -> Grant:
        group_name = c.group or self.default_group
        group = self.groups.get(group_name) if group_name else None
        if group_name is None or group is None:  # never "every model": without a usable group, nothing
            log.warning("consumer %r is in group %r, which does not exist: it may use no model", name, group_name)
            return Grant(group_name, NOTHING, None)
        allowed = self._group_models[group_name]
        if c.models is not None:
            own = expand(c.models, self._names)
            allowed = own if allowed is None else (allowed if own is None else allowed & own)
        return Grant(group_name, allowed, effective_limits(name, group_name, group, c))

    def principal(self, consumer: str, key_id: str) -> Principal:
        g = self.grants.get(consumer)
        if g is None:
            g = self._unknown_consumer(consumer, key_id)
        return Principal(consumer, g.group, key_id, g.allowed, g.limits)

    def _unknown_consumer(self, consumer: str, key_id: str) -> Grant:
        """A key whose consumer is defined nowhere: refused like an unknown key, unless the
        operator opted into serving such keys in the default group."""
        if self.unknown_get_default and self.default_group in self.groups:
            g = self._unknown.get(consumer)
            if g is None:
                g = self._grant(consumer, ConsumerConfig(group=self.default_group))
                if len(self._unknown) >= _SUBJECT_CACHE_MAX:
                    self._unknown.clear()
                self._unknown[consumer] = g
            return g
        if key_id not in self._warned and len(self._warned) < _WARNED_MAX:
            self._warned.add(key_id)
            log.warning("refused key %s: its consumer %r is defined neither in the config file nor in the store "
                        "(revoke the key, or define the consumer again)", key_id, consumer)
        raise AuthenticationFailed(INVALID_KEY)

    def principal_in_group(self, subject: str, group: str, key_id: str) -> Principal | None:
        """A JWT identity (consumer_prefix + subject): the group's models and allowance,
        counted per identity. None when the group does not exist."""
        g = self._subjects.get((subject, group))
        if g is None:
            spec = self.groups.get(group)
            if spec is None:
                return None
            g = Grant(group, self._group_models[group], effective_limits(subject, group, spec, None))
            if len(self._subjects) >= _SUBJECT_CACHE_MAX:
                self._subjects.clear()
            self._subjects[(subject, group)] = g
        return Principal(subject, g.group, key_id, g.allowed, g.limits)


class AccessControl:
    def __init__(self, cfg: Config, model_names: list[str], store: DirectoryStore):
        self.cfg = cfg
        self.model_names = model_names
        self.store = store
        self.current = Directory(cfg, model_names, {}, {})
        self.version = -1
        self.on_change: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def principal(self, consumer: str, key_id: str) -> Principal:
        return self.current.principal(consumer, key_id)

    async def reload(self) -> None:
        """Rebuild from the store (after a change here, or when the version moved)."""
        async with self._lock:
            version = await self.store.version()
            groups, consumers = await self.store.groups(), await self.store.consumers()
            self.current = Directory(self.cfg, self.model_names, groups, consumers)
            self.version = version
        for callback in self.on_change:
            callback()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _poll(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                if await self.store.version() != self.version:
                    await self.reload()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep serving with the directory we have
                if not failing:
                    log.error("cannot reload groups and consumers from the store (%s); keeping the "
                              "current ones", type(e).__name__)
                failing = True
