"""Compliance routing: each request gets a data class, and a model that may not receive that
class never sees the request: the class's policy sends it to a private model or refuses it.

The class is the highest of: the caller's group `data_class`, the `x-gatehouse-data-class`
request header (it can raise the class, never lower it), and the classes of what the built-in
guardrail detectors find in the prompt (`compliance.detectors`: payment_card -> pci, ...).
Everything is decided at load: which models restrict classes (only their requests are looked
at), which detectors could matter for each (none run when the model may receive every class a
detector gives), each class's policy. A request to a model that may receive every class costs
one dict lookup. Matched text never leaves the scan: errors, headers and the access log name
the class and the reason (`group`, `header`, the detector, a guardrail check), never the text.

gateway/handle.py calls `decide` after the endpoint built the canonical request and before
any policy step or attempt, so the guardrails, limits, cache and every attempt see the model
that will serve. Deployments may declare their own classes: the decision hands the router the
ids of the deployments that may receive the class (`ex.deployment_filter`, one precomputed set
per class), so load balancing, retries and fallbacks keep to them (routing/router.py,
routing/route.py). A guardrail `reroute` check raises the class after the decision
(`escalate`, through `reclass`: policy/guardrails/step.py calls it).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gatehouse.errors import InvalidRequest, PermissionDenied
from gatehouse.routing.policy_metrics import PolicyRouteCounts
from gatehouse.routing.policy_routes import deployment_classes

if TYPE_CHECKING:
    from gatehouse.config.schema import Config, GroupConfig
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.policy.guardrails.engine import Scanner
    from gatehouse.policy.principal import Principal
    from gatehouse.routing.table import ModelEntry
    from gatehouse.runtime import Runtime

HEADER = "x-gatehouse-data-class"


class DataClassDenied(PermissionDenied):
    code = "data_class_denied"


class Compliance:
    def __init__(self, cfg: Config, models: Mapping[str, ModelEntry], counts: PolicyRouteCounts | None = None):
        comp = cfg.compliance
        assert comp is not None
        self.classes = tuple(comp.classes)
        self.rank = {c: i for i, c in enumerate(self.classes)}
        self.top = len(self.classes) - 1
        self.group_rank = {n: self.rank[g.data_class] for n, g in cfg.groups.items() if g.data_class}
        # The detectors, as guardrail checks run in one RE2 pass (policy/guardrails/engine.py).
        self.detector_rank: dict[str, int] = {det: self.rank[c] for det, c in comp.detectors.items()}
        self.scanner: Scanner | None = None
        if self.detector_rank:
            from gatehouse.config.schema import GuardCheckConfig
            from gatehouse.policy.guardrails.engine import Scanner, compile_check

            self.scanner = Scanner(compile_check(GuardCheckConfig(type=det, action="flag", stage="input"))  # type: ignore[arg-type]
                                   for det in self.detector_rank)
        self.top_detected = max(self.detector_rank.values(), default=0)
        # Each deployment's most sensitive class (config/check.py: a deployment receives a prefix of
        # the classes; unset on the deployment: its model's), by id: the router filters on it.
        dep_rank: dict[int, int] = {}
        for m in cfg.models:
            for dc, dep in zip(m.deployments, models[m.name].deployments):
                allowed = deployment_classes(m, dc, cfg)
                dep_rank[id(dep)] = self.top if allowed is None else max((self.rank[c] for c in allowed), default=-1)
        # model -> (the most sensitive class one of its deployments may receive, the least sensitive
        # class every deployment it can reach, fallbacks too, may receive); models whose reach takes
        # every class are not listed: their requests are not looked at.
        self.limits: dict[str, int] = {}
        self.floors: dict[str, int] = {}
        for name, entry in models.items():
            reach = [entry, *(entry.route.fallbacks + entry.route.context_fallbacks if entry.route else ())]
            floor = min((dep_rank[id(d)] for e in reach for d in e.deployments), default=self.top)
            if floor >= self.top:
                continue
            self.limits[name] = max((dep_rank[id(d)] for d in entry.deployments), default=-1)
            self.floors[name] = floor
        # class rank -> the ids of the deployments that may receive it (gateway/attempts.py walks
        # only those: load balancing, retries, fallbacks); None: every deployment may
        everyone = len(dep_rank)
        self.filters: list[frozenset[int] | None] = []
        for r in range(len(self.classes)):
            ok = frozenset(i for i, lim in dep_rank.items() if lim >= r)
            self.filters.append(None if len(ok) == everyone else ok)
        # an embeddings request is rerouted only to an embeddings model (and a generation to a generating one)
        self.embedders = frozenset(m.name for m in cfg.models if m.embeddings)
        # class rank -> None (deny) or the model that serves it instead
        self.policies: dict[int, ModelEntry | None] = {
            self.rank[c]: None if p == "deny" else models[p.reroute] for c, p in comp.policies.items()}
        # (class, action, reason) -> requests: gatehouse_compliance_decisions_total (routing/policy_metrics.py)
        self.counts = (counts or PolicyRouteCounts()).compliance

    def set_groups(self, groups: Mapping[str, GroupConfig]) -> None:
        """Each group's class, the store's groups too (routing/policy_routes.py `follow_groups`).
        A class no longer declared (a store group after a config reload) counts as the most
        sensitive: fail closed."""
        self.group_rank = {n: self.rank.get(g.data_class, self.top) for n, g in groups.items() if g.data_class}

    def may_receive(self, model: str, data_class: str | None) -> bool:
        """May some deployment of `model` receive a request of this class?"""
        limit = self.limits.get(model)
        return limit is None or data_class is None or self.rank[data_class] <= limit

    def decide(self, ex: Exchange, entry: ModelEntry, subject: Any, principal: Principal,
               headers: Mapping[str, str]) -> ModelEntry:
        """The model that serves the request (`subject`: its canonical form, None when the endpoint
        could not build one): `entry`, or its class's reroute target; raises
        DataClassDenied for a `deny` class (or one without a policy the model may not receive)."""
        floor = self.floors.get(entry.name)
        if floor is None:
            return entry
        rank, reason = self._classify(subject, principal, headers, floor)
        return self._apply(ex, entry, rank, reason or "default", entry.name)

    def may_see(self, model: str, subject: Any, principal: Principal, headers: Mapping[str, str]) -> bool:
        """Before the request is decided: may every deployment `model` can reach receive its class?
        (A virtual model asks before it sends the prompt to its semantic or classifier model.)"""
        floor = self.floors.get(model)
        return floor is None or self._classify(subject, principal, headers, floor)[0] <= floor

    def _classify(self, subject: Any, principal: Principal, headers: Mapping[str, str], floor: int) -> tuple[int, str]:
        """(the request's class rank, what set it; "" for nothing), for a model whose deployments
        receive at least the class of rank `floor`: detectors run only when they could matter."""
        rank, reason = 0, ""
        group = principal.group
        if group is not None:
            r = self.group_rank.get(group, 0)
            if r:
                rank, reason = r, "group"
        asked = headers.get(HEADER)
        if asked is not None:
            r = self.rank.get(asked.strip(), -1)
            if r < 0:
                raise InvalidRequest(f"Unknown data class '{asked[:64]}' in {HEADER} (one of: "
                                     f"{', '.join(self.classes)}).", param=HEADER)
            if r > rank:
                rank, reason = r, "header"
        if rank < self.top_detected and self.top_detected > floor:  # a finding could still matter
            found, detector = self.detect(subject, rank)
            if found > rank:
                rank, reason = found, detector
        return rank, reason

    def escalate(self, ex: Exchange, entry: ModelEntry, raised: Mapping[str, str]) -> ModelEntry:
        """A guardrail `reroute` check matched (after `decide`): its class (`raised`: class, ""
        for the most sensitive -> the check) raises the request's; the model that serves it now."""
        record = ex.compliance
        if record is None:  # a model whose requests are not looked at
            return entry
        before = self.rank[record["data_class"]]
        rank, reason = before, record["reason"]
        for cls, check in raised.items():
            r = self.rank[cls] if cls else self.top
            if r > rank:
                rank, reason = r, check
        if rank == before:
            return entry
        counts = self.counts
        key = (record["data_class"], record.get("action", "pass"), record["reason"])
        counts[key] = counts.get(key, 1) - 1  # (counted once per request: as it ends up)
        return self._apply(ex, entry, rank, reason, record.get("routed_from", entry.name))

    def _apply(self, ex: Exchange, entry: ModelEntry, rank: int, reason: str, asked: str) -> ModelEntry:
        cls = self.classes[rank]
        ex.response_headers[HEADER] = cls
        record = {"data_class": cls, "reason": reason}
        ex.compliance = record
        ex.deployment_filter = self.filters[rank]
        counts = self.counts
        limit = self.limits.get(entry.name, self.top)
        if rank <= limit:
            action = "pass"
            if asked != entry.name:  # (escalated after a reroute: the target may receive this class too)
                action = record["action"] = "reroute"
                record["routed_from"] = asked
            key = (cls, action, reason)
            counts[key] = counts.get(key, 0) + 1
            return entry
        target = self.policies.get(rank)
        if target is not None and (ex.surface == "embeddings") != (target.name in self.embedders):
            target = None  # (its reroute model cannot serve this kind of request)
        action = record["action"] = "deny" if target is None else "reroute"
        key = (cls, action, reason)
        counts[key] = counts.get(key, 0) + 1
        if target is None:
            raise DataClassDenied(f"The request carries data of class '{cls}', which model '{entry.name}' may "
                                  "not receive (the gateway's compliance policy).", param="model",
                                  code="data_class_denied")
        record["routed_from"] = asked
        return target

    def detect(self, subject: Any, floor: int) -> tuple[int, str]:
        """(the highest class rank a detector finds in the prompt, that detector), from `floor`.
        A prompt the detectors cannot read is taken to hold the most sensitive class they give."""
        scanner = self.scanner
        if scanner is None:
            return floor, ""
        if subject is None:
            return self.top_detected, "uninspectable"
        from gatehouse.policy.guardrails.step import _texts

        best, why, top = floor, "", self.top_detected
        for holder, where in _texts(subject):
            text = holder[where] if isinstance(where, int) else getattr(holder, where)
            for hit in scanner.scan(text):
                r = self.detector_rank[hit.check.name]
                if r > best:
                    best, why = r, hit.check.name
                    if best >= top:
                        return best, why
        return best, why


async def reclass(rt: Runtime, ex: Exchange, raised: dict[str, str]) -> bool:
    """The guardrails' hook (policy/guardrails/step.py): a reroute check raised the class; when
    the model may not receive it, bind the request to the class's reroute model (or refuse it).
    True: the request now goes to another model."""
    comp, entry, call = rt.compliance, ex.entry, ex.call
    assert comp is not None and entry is not None and call is not None
    served = comp.escalate(ex, entry, raised)
    if served is entry:
        return False
    ex.entry = served
    await call.bind(rt, ex, served)  # (a route whose bind answers by itself is never admitted)
    ex.model, ex.prompt_estimate, ex.max_tokens, ex.subject = \
        served.name, call.prompt_estimate, call.max_tokens, call.subject
    return True


def build_compliance(cfg: Config, models: Mapping[str, ModelEntry],
                     counts: PolicyRouteCounts | None = None) -> Compliance | None:
    """None when no config section or no model restricts classes: the path skips the step."""
    if cfg.compliance is None:
        return None
    c = Compliance(cfg, models, counts)
    return c if c.limits else None
