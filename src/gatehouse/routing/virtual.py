"""Virtual models: a name clients ask for (`auto`, `cheap-but-able`) that picks one configured
model per request, from cheap signals decided at load (docs/policy-routing.md#virtual-models).

`rules`: ordered rules on the last user message (keywords, an RE2 pattern), the prompt estimate,
tools or images present, the caller's group and User-Agent; the first whose conditions all hold
names the model, else `default`. `cheapest`: of the candidates that can serve the request (the
prompt estimate plus max_tokens fits the context window; tools -> `tools`, images -> `vision`,
a json_schema response format -> `json_schema` capability), the one the price book makes
cheapest for this request; `best`: the first able candidate (best first) whose estimated cost
is within the per-request ceiling. The choice is in the `x-gatehouse-routed-to` response header and the
access log; the caller must be allowed both the virtual model and the model it picks (a rule
naming a model the caller may not use is skipped).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gatehouse.errors import InvalidRequest, PermissionDenied
from gatehouse.routing.classifier import ClassifierSignal
from gatehouse.routing.policy_metrics import PolicyRouteCounts
from gatehouse.routing.semantic import SemanticSignal
from gatehouse.types import ChatRequest, CompletionRequest, ImagePart, TextPart

if TYPE_CHECKING:
    from gatehouse.config.schema import Config, RouteRuleConfig, VirtualModelConfig
    from gatehouse.gateway.endpoint import Call
    from gatehouse.gateway.exchange import Exchange
    from gatehouse.gateway.relay import Reply
    from gatehouse.policy.principal import Principal
    from gatehouse.routing.table import ModelEntry
    from gatehouse.runtime import Runtime

ROUTED_HEADER = "x-gatehouse-routed-to"
MAX_COST_HEADER = "x-gatehouse-max-cost-usd"  # (best) a ceiling the client sets, below the configured one
OUTPUT_GUESS = 500  # output tokens a request without max_tokens is priced at (cheapest)


def _re2(pattern: str) -> Any:
    import re2  # type: ignore[import-untyped]  # linear time: a configured pattern cannot hang the gateway

    opts = re2.Options()
    opts.log_errors = False
    return re2.compile(pattern, opts)


def keywords_pattern(words: list[str]) -> str:
    """Any of the words where a word starts, any case (as the guardrails' keywords)."""
    ws = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    return "(?i)\\b(?:" + "|".join(re.escape(w) for w in ws) + ")"


class Signals:
    """What the rules read from one request, each worked out on first use."""

    __slots__ = ("subject", "estimate", "_text")

    def __init__(self, subject: Any, estimate: int):
        self.subject = subject
        self.estimate = estimate
        self._text: str | None = None

    @property
    def text(self) -> str:
        """The last user message's text (a completion: its prompt)."""
        if self._text is None:
            s, text = self.subject, ""
            if isinstance(s, ChatRequest):
                last = next((m for m in reversed(s.messages) if m.role == "user"), None)
                if last is not None:
                    text = " ".join(p.text for p in last.content if isinstance(p, TextPart))
            elif isinstance(s, CompletionRequest):
                text = s.prompt
            self._text = text
        return self._text

    @property
    def tools(self) -> bool:
        return isinstance(self.subject, ChatRequest) and bool(self.subject.tools)

    @property
    def images(self) -> bool:
        s = self.subject
        return isinstance(s, ChatRequest) and any(isinstance(p, ImagePart) for m in s.messages for p in m.content)

    @property
    def json_schema(self) -> bool:
        s = self.subject
        return isinstance(s, ChatRequest) and bool(s.response_format) and \
            (s.response_format or {}).get("type") == "json_schema"


class Rule:
    __slots__ = ("model", "words", "regex", "min_tokens", "tools", "images", "groups", "user_agent", "why")

    def __init__(self, c: RouteRuleConfig, index: int):
        self.model = c.model
        self.words = _re2(keywords_pattern(c.keywords)) if c.keywords else None
        self.regex = _re2(c.regex) if c.regex else None
        self.min_tokens = c.min_prompt_tokens
        self.tools, self.images = c.tools, c.images
        self.groups = frozenset(c.groups)
        self.user_agent = _re2(c.user_agent) if c.user_agent else None
        self.why = f"rule {index}"

    def matches(self, sig: Signals, group: str | None, headers: Mapping[str, str]) -> bool:
        # cheapest conditions first: the text searches run only when the others hold
        if self.groups and group not in self.groups:
            return False
        if self.min_tokens is not None and sig.estimate < self.min_tokens:
            return False
        if self.tools is not None and sig.tools != self.tools:
            return False
        if self.images is not None and sig.images != self.images:
            return False
        if self.user_agent is not None and self.user_agent.search(headers.get("user-agent", "")) is None:
            return False
        if self.words is not None and self.words.search(sig.text) is None:
            return False
        return self.regex is None or self.regex.search(sig.text) is not None


class Candidate:
    __slots__ = ("name", "caps", "context_window", "input_per_mtok", "output_per_mtok")

    def __init__(self, name: str, caps: frozenset[str], context_window: int | None, prices: tuple[float, float]):
        self.name, self.caps, self.context_window = name, caps, context_window
        self.input_per_mtok, self.output_per_mtok = prices


class VirtualModel:
    def __init__(self, name: str, c: VirtualModelConfig, cfg: Config, counts: PolicyRouteCounts | None = None):
        from gatehouse.metering.pricing import PriceBook

        self.name = name
        self.strategy = c.strategy
        self.rules = tuple(Rule(r, i) for i, r in enumerate(c.rules))
        self.default = c.default
        self.semantic = SemanticSignal(c.semantic) if c.semantic is not None else None
        self.classifier = ClassifierSignal(c.classifier) if c.classifier is not None else None
        self.max_usd = c.max_request_usd
        book = PriceBook(cfg)
        models = {m.name: m for m in cfg.models}
        self.candidates = tuple(
            Candidate(n, frozenset(models[n].capabilities), models[n].context_window,
                      (book.worst_by_model[n].input_per_mtok, book.worst_by_model[n].output_per_mtok))
            for n in c.candidates)
        # the model the request is first bound to (its endpoint builds the canonical request)
        self.first = c.default if c.strategy == "rules" and c.default else c.candidates[0]
        # (virtual model, routed to, signal) -> requests: gatehouse_virtual_route_total (routing/policy_metrics.py)
        self.counts = (counts or PolicyRouteCounts()).virtual

    async def route(self, rt: Runtime, ex: Exchange, call: Call, principal: Principal,
                    headers: Mapping[str, str]) -> tuple[ModelEntry, Reply | None]:
        """Bind the request, pick the model, bind it to that one: (the model, the endpoint's
        own answer if it gave one)."""
        if principal.allowed is not None and self.name not in principal.allowed:
            raise PermissionDenied(f"You are not allowed to use the model '{self.name}'.", param="model")
        first = ex.entry = rt.table.models[self.first]
        ready = await call.bind(rt, ex, first)
        if ready is not None:
            return first, ready
        sig = Signals(call.subject, call.prompt_estimate)
        name, why = self.pick(sig, call.max_tokens, principal, headers)
        signal = "rule" if why[0] == "r" else why  # (rule <n>, default, cheapest, best)
        comp = rt.compliance  # the signals' models see the prompt: only those that may receive its class
        if why == "default" and self.semantic is not None and (
                comp is None or comp.may_see(self.semantic.model, call.subject, principal, headers)):
            near = await self.semantic.pick(rt.table.models[self.semantic.model], sig.text, ex.request_id)
            if near is not None and (principal.allowed is None or near[0] in principal.allowed):
                name, why, signal = near[0], f"semantic {near[1]:.2f}", "semantic"
        if why == "default" and self.classifier is not None and (
                comp is None or comp.may_see(self.classifier.model, call.subject, principal, headers)):
            # last: a small model's label
            label = await self.classifier.pick(rt.table.models[self.classifier.model], sig.text, ex.request_id)
            if label is not None and (principal.allowed is None or label[0] in principal.allowed):
                name, why, signal = label[0], f"classifier {label[1]}", "classifier"
        entry = rt.table.resolve(name, principal)
        ex.response_headers[ROUTED_HEADER] = entry.name
        ex.virtual_route = {"virtual_model": self.name, "routed_to": entry.name, "reason": why}
        counts, key = self.counts, (self.name, entry.name, signal)
        counts[key] = counts.get(key, 0) + 1
        if entry is not first:
            ex.entry = entry
            ready = await call.bind(rt, ex, entry)
        return entry, ready

    def pick(self, sig: Signals, max_tokens: int | None, principal: Principal,
             headers: Mapping[str, str]) -> tuple[str, str]:
        allowed = principal.allowed
        if self.strategy == "rules":
            for rule in self.rules:
                if (allowed is None or rule.model in allowed) and rule.matches(sig, principal.group, headers):
                    return rule.model, rule.why
            assert self.default is not None
            return self.default, "default"
        ceiling = None
        if self.strategy == "best":
            ceiling = self.max_usd
            asked = headers.get(MAX_COST_HEADER)
            if asked is not None:
                try:
                    mine = float(asked)
                except ValueError:
                    raise InvalidRequest(f"{MAX_COST_HEADER} must be a number of US dollars.",
                                         param=MAX_COST_HEADER) from None
                ceiling = mine if ceiling is None else min(ceiling, mine)
        return self.choose(sig, max_tokens, allowed, ceiling)

    def choose(self, sig: Signals, max_tokens: int | None, allowed: frozenset[str] | None,
               ceiling: float | None) -> tuple[str, str]:
        """cheapest: the able candidate of least estimated cost; best: the first able one (in the
        configured order) whose estimated cost is within `ceiling`."""
        needs = [cap for cap, need in (("tools", sig.tools), ("vision", sig.images),
                                       ("json_schema", sig.json_schema)) if need]
        total = sig.estimate + (max_tokens or 0)
        out = max_tokens or OUTPUT_GUESS
        best: Candidate | None = None
        best_cost = 0.0
        for c in self.candidates:
            if allowed is not None and c.name not in allowed:
                continue
            if c.context_window is not None and total > c.context_window:
                continue
            if any(n not in c.caps for n in needs):
                continue
            cost = (sig.estimate * c.input_per_mtok + out * c.output_per_mtok) / 1e6
            if self.strategy == "best":
                if ceiling is None or cost <= ceiling:
                    return c.name, "best"
                continue
            if best is None or cost < best_cost:
                best, best_cost = c, cost
        if best is None:
            what = [*needs, f"{total} tokens of context"]
            if ceiling is not None:
                what.append(f"at most ${ceiling:g}")
            raise InvalidRequest(f"No model behind '{self.name}' can serve this request (it needs: "
                                 f"{', '.join(what)}).", param="model")
        return best.name, "cheapest"


def build_virtual(cfg: Config, counts: PolicyRouteCounts | None = None) -> dict[str, VirtualModel]:
    return {name: VirtualModel(name, c, cfg, counts) for name, c in cfg.routers.items()}


def check_virtual(cfg: Config) -> str | None:
    """The first problem of `routers:` as 'path: message', or None."""
    models = {m.name for m in cfg.models}
    for name, v in cfg.routers.items():
        path = f"routers.{name}"
        if name in models or name in cfg.model_aliases:
            return f"{path}: a model (or alias) already has this name"
        if v.strategy == "rules":
            if not v.default:
                return f"{path}.default: a rules router needs the model it uses when no rule matches"
            if v.default not in models:
                return f"{path}.default: unknown model '{v.default}'"
            if v.candidates:
                return f"{path}.candidates: only for strategy cheapest (rules name their models)"
            sem = v.semantic
            if sem is not None:
                embedders = {m.name for m in cfg.models if m.embeddings}
                if sem.model not in embedders:
                    return f"{path}.semantic.model: '{sem.model}' is not a configured embeddings model"
                if not sem.routes:
                    return f"{path}.semantic.routes: at least one route with example utterances"
                for target, examples in sem.routes.items():
                    if target not in models:
                        return f"{path}.semantic.routes.{target}: unknown model '{target}'"
                    if not examples or any(not e.strip() for e in examples):
                        return f"{path}.semantic.routes.{target}: a non-empty list of example utterances"
            cl = v.classifier
            if cl is not None:
                chat_models = {m.name for m in cfg.models if not m.embeddings}
                if cl.model not in chat_models:
                    return f"{path}.classifier.model: '{cl.model}' is not a configured chat model"
                if not cl.labels:
                    return f"{path}.classifier.labels: at least one label -> model"
                for label, target in cl.labels.items():
                    if not label.strip():
                        return f"{path}.classifier.labels: an empty label"
                    if target not in models:
                        return f"{path}.classifier.labels.{label}: unknown model '{target}'"
            for i, r in enumerate(v.rules):
                if r.model not in models:
                    return f"{path}.rules[{i}].model: unknown model '{r.model}'"
                for field_name, pattern in (("regex", r.regex), ("user_agent", r.user_agent),
                                            ("keywords", keywords_pattern(r.keywords) if r.keywords else None)):
                    if pattern is None:
                        continue
                    try:
                        _re2(pattern)
                    except Exception as e:
                        return f"{path}.rules[{i}].{field_name}: not a valid RE2 pattern ({e})"
        else:
            if not v.candidates:
                return f"{path}.candidates: {v.strategy} needs at least one candidate model"
            if v.max_request_usd is not None and v.strategy != "best":
                return f"{path}.max_request_usd: only for strategy best"
            if v.rules or v.default or v.semantic or v.classifier:
                return f"{path}.rules: rules, default, semantic and classifier are only for strategy rules"
            for i, c in enumerate(v.candidates):
                if c not in models:
                    return f"{path}.candidates[{i}]: unknown model '{c}'"
    return None
