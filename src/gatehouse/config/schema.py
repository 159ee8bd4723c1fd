"""The config's types: msgspec structs whose fields carry their own rules (a leaf: it imports
nothing from gatehouse, so every module can depend on it and it depends on none).

Each field's range is a `Meta` constraint, each struct's rules between its own fields a
`__post_init__` raising ValueError("<field>: <why>"); msgspec then reports either with the
path of the field, which loader.py turns into `models[2].deployments[0].provider: ...`.
Rules between sections (a deployment's provider exists, ...) are in check.py.

Providers are a tagged union on `type`: one struct per provider type, so a field is accepted
only by the types that use it.
"""
from __future__ import annotations

import os
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from msgspec import Meta, field

from gatehouse.config.schema_base import (
    HTTP_URL as HTTP_URL,
    PATTERN_RULES as PATTERN_RULES,
    ConfigError as ConfigError,
    Deadline as Deadline,
    HttpUrl as HttpUrl,
    NonNegative as NonNegative,
    NonNegativeInt as NonNegativeInt,
    Positive as Positive,
    PositiveInt as PositiveInt,
    _Base as _Base,
)
from gatehouse.config.schema_policy import (
    Action as Action,
    CheckType as CheckType,
    ClassifierRouteConfig as ClassifierRouteConfig,
    ComplianceConfig as ComplianceConfig,
    GuardCheckConfig as GuardCheckConfig,
    GuardFormat as GuardFormat,
    GuardPolicyConfig as GuardPolicyConfig,
    GuardrailsConfig as GuardrailsConfig,
    ReroutePolicy as ReroutePolicy,
    RouteRuleConfig as RouteRuleConfig,
    SemanticRouteConfig as SemanticRouteConfig,
    Stage as Stage,
    VirtualModelConfig as VirtualModelConfig,
)
from gatehouse.config.schema_routing import (
    AdapterConfig as AdapterConfig,
    ColdStartConfig as ColdStartConfig,
    HealthCheckConfig as HealthCheckConfig,
    KubernetesScaleConfig as KubernetesScaleConfig,
    RoutingConfig as RoutingConfig,
    WakeConfig as WakeConfig,
)


class TlsConfig(_Base):
    """HTTPS on the listener (docs/operations.md#tls). PEM files; re-read when they change."""

    cert_file: str  # the certificate chain, leaf first
    key_file: str
    client_ca_file: str | None = None  # set: mutual TLS, clients without a certificate it signed are refused
    reload_seconds: NonNegative = 10.0  # how often the files are checked for a change (0: never)


class ServerConfig(_Base):
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: PositiveInt = 10 * 1024 * 1024
    # Read deadlines (seconds): a request's head must arrive within header_timeout of its first
    # byte, its body within body_timeout of the head; else 408 and the connection is closed.
    header_timeout: Deadline = 10.0
    body_timeout: Deadline = 30.0
    cors_origins: list[str] = field(default_factory=lambda: ["*"])
    # Secret for HMAC-hashing keys. Replicas sharing a store must share it; without it a
    # random one is generated once and kept in the data dir.
    secret: str | None = None
    shutdown_grace_seconds: float = 30.0
    # Before stopping, keep answering 503 (and /readyz 503) this long so load balancers
    # move traffic away first.
    drain_seconds: float = 0.0
    public_url: str | None = None  # shown in client-env and first-start hints
    # Requests in flight per process beyond which new ones get 503 + Retry-After (0 = no cap).
    max_in_flight: NonNegativeInt = 1024
    tls: TlsConfig | None = None
    # Poll the config file every reload_watch_seconds and reload it when its content changes
    # (a Kubernetes ConfigMap update); SIGHUP and POST /admin/reload work either way.
    reload_watch: bool = False
    reload_watch_seconds: float = 5.0


class StoreConfig(_Base):
    url: str | None = None  # sqlite:///path.db | postgresql://...; None = data dir SQLite
    redis_url: str | None = None
    pool_size: PositiveInt = 10  # Postgres connections per process (bounded: no overflow)
    migrate_on_start: bool = True  # apply schema migrations at start (else: `gatehouse migrate`)


class AdminConfig(_Base):
    key: str | None = None  # None: every admin route is denied


class ResponsesConfig(_Base):
    """POST /v1/responses (docs/responses-api.md)."""

    # OpenAI-hosted tools (web_search, file_search, code_interpreter, ...) cannot run elsewhere:
    # drop them from the request (named in x-gatehouse-dropped-tools), or refuse it with a 400.
    hosted_tools: Literal["drop", "refuse"] = "drop"
    # Responses kept with `store: true` (for previous_response_id, item_reference, GET/DELETE
    # /v1/responses/{id}) are deleted this long after they were made.
    store_ttl_seconds: Annotated[int, Meta(gt=0)] = 30 * 86400
    # Whether a request that does not say `store` is kept. OpenAI keeps it; the gateway keeps
    # prompts only when asked, unless this is true.
    store_default: bool = False


class UiConfig(_Base):
    """The admin web UI at /ui (docs/admin-ui.md). Off whenever admin.key is not set."""

    enabled: bool = True
    session_minutes: Annotated[int, Meta(gt=0, le=10080)] = 480
    login_attempts_per_minute: Annotated[int, Meta(gt=0)] = 10
    # Sign-in with an ID token (needs auth.jwt): the token's `role_claim` (a string or list of
    # strings; dotted paths allowed) gives the role. A value in admin_values: full admin; else a
    # value in read_only_values: read-only (GET admin routes only); else the sign-in is refused.
    role_claim: str = "groups"
    admin_values: list[str] = field(default_factory=list)
    read_only_values: list[str] = field(default_factory=list)


class GuardrailConfig(_Base):
    """A Bedrock guardrail applied to every Converse call of a provider (guardrailConfig)."""

    identifier: str
    version: str
    trace: Literal["enabled", "disabled", "enabled_full"] | None = None
    stream_processing_mode: Literal["sync", "async"] | None = None


# ---- providers: one struct per type, a tagged union on `type` -----------------------------


class UpstreamConfig(_Base, tag_field="type"):
    """What every provider type shares: the connection to its upstream. A type's own struct
    below adds its fields; a field of another type is refused (`unused_hints` may say why)."""

    # Why a field of another type is refused here, beyond "not used by <type>" (loader.py).
    unused_hints: ClassVar[dict[str, str]] = {}

    headers: dict[str, str] = field(default_factory=dict)
    connect_timeout: float = 5.0
    read_timeout: float = 600.0
    # Streamed requests: seconds until the upstream's response head; then 504 and failover.
    first_byte_timeout: Positive = 120.0
    max_connections: PositiveInt = 256  # requests in flight (each holds a connection) to this upstream
    pool_timeout: Positive = 30.0  # longest wait for one of those connections; then 503 upstream_busy
    health_check: HealthCheckConfig | None = None  # active checks (docs/routing.md#health)
    # Circuit breaker: this many consecutive failures (connect errors, timeouts, 5xx) eject a
    # deployment for ejection_seconds, doubled after each failed probe up to max_ejection_seconds.
    failure_threshold: NonNegativeInt = 3  # 0 = never eject
    ejection_seconds: Positive = 5.0
    max_ejection_seconds: Positive = 120.0
    # https upstreams: a CA bundle to verify the upstream with (instead of the system's), and a
    # client certificate for upstreams that require mutual TLS (PEM; key in the cert file or apart)
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None

    @property
    def type(self) -> str:
        """The provider type (the union's tag: `type:` in the file)."""
        return str(self.__struct_config__.tag)


class OpenAIConfig(UpstreamConfig, tag="openai"):
    """Anything that speaks OpenAI's API: OpenAI, vLLM, Ollama's /v1, llama.cpp, TGI."""

    base_url: HttpUrl | None = None  # None: https://api.openai.com/v1
    api_key: str | None = None
    # The deployments speak the Responses API themselves (OpenAI), so POST /v1/responses is
    # forwarded to them untouched (model swapped) instead of translated onto chat completions.
    responses_api: bool = False


class AnthropicConfig(UpstreamConfig, tag="anthropic"):
    base_url: HttpUrl | None = None
    api_key: str | None = None
    anthropic_version: str | None = None
    beta_allow: list[str] | None = None


class BedrockConfig(UpstreamConfig, tag="bedrock"):
    unused_hints: ClassVar[dict[str, str]] = {"base_url": "set region (and endpoint_url for a VPC endpoint)"}

    region: str | None = None  # None: $AWS_REGION, then $AWS_DEFAULT_REGION
    endpoint_url: HttpUrl | None = None
    profile: str | None = None
    api_key: str | None = None  # a Bedrock API key (bearer) instead of SigV4
    options: dict[str, Any] = field(default_factory=dict)  # additionalModelRequestFields
    guardrail: GuardrailConfig | None = None

    def __post_init__(self) -> None:
        if not (self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            raise ValueError("region: required for bedrock (or set AWS_REGION in the gateway's environment)")


class GeminiConfig(UpstreamConfig, tag="gemini"):
    base_url: HttpUrl | None = None
    api_key: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # generationConfig defaults

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key: required for gemini (a Google AI Studio API key)")


class OllamaConfig(UpstreamConfig, tag="ollama"):
    """Ollama's native API (/api/chat): keep_alive and options pass through."""

    base_url: HttpUrl | None = None  # the server root, http://127.0.0.1:11434 by default
    api_key: str | None = None  # for an Ollama behind an authenticating proxy
    keep_alive: str | int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # Ollama options defaults (num_ctx, ...)

    def __post_init__(self) -> None:
        if self.base_url and urlsplit(self.base_url).path.rstrip("/").endswith("/v1"):
            raise ValueError("base_url: the native ollama provider takes the server root (http://host:11434); "
                             "for Ollama's /v1 API use type: openai")


class EchoConfig(UpstreamConfig, tag="echo"):
    """The built-in deterministic model: no upstream, nothing to set beyond the shared fields."""


# A provider's config, chosen by its `type`. A new provider type adds its struct here.
ProviderConfig = OpenAIConfig | AnthropicConfig | BedrockConfig | GeminiConfig | OllamaConfig | EchoConfig




class DeploymentConfig(_Base):
    provider: str
    model: str
    weight: Annotated[int, Meta(ge=1)] = 1  # routing.strategy: weighted
    priority: Annotated[int, Meta(ge=1)] = 1  # tier: 2 takes traffic only when every 1 cannot
    max_in_flight: Annotated[int, Meta(ge=1)] | None = None  # saturated beyond: others first
    metrics_url: str | None = None  # load-aware: the engine's Prometheus endpoint (default: base_url's /metrics)
    scale_to_zero: bool = False  # cold start: out of rotation while its readiness probe says not ready
    # Compliance routing (docs/policy-routing.md#per-deployment-classes): what this deployment may
    # receive, when it differs from its model's (`private: true` = every class; unset: the model's).
    private: bool = False
    data_classes: list[str] | None = None
    # Prices in USD per million tokens (docs/metering.md). Cached input defaults to input.
    input_per_mtok: NonNegative | None = None
    output_per_mtok: NonNegative | None = None
    cached_input_per_mtok: NonNegative | None = None
    # Self-hosted: the GPU's hourly cost amortised over its measured aggregate throughput.
    gpu_cost_per_hour: NonNegative | None = None
    gpu_output_tokens_per_second: Positive | None = None
    gpu_input_tokens_per_second: Positive | None = None

    def __post_init__(self) -> None:
        if self.gpu_cost_per_hour is not None and self.gpu_output_tokens_per_second is None \
                and self.output_per_mtok is None:
            raise ValueError("gpu_output_tokens_per_second: required with gpu_cost_per_hour "
                             "(the measured aggregate output throughput of the backend)")


# ---- response cache (policy/cache.py, docs/cache.md) --------------------------------------


class SemanticCacheConfig(_Base):
    """Approximate matching of the last user message (docs/cache.md#semantic-cache): off unless set."""

    model: str  # an embeddings model of this config (models[].name)
    threshold: Annotated[float, Meta(gt=0, le=1)] = 0.95  # cosine similarity to count as the same
    max_entries: PositiveInt = 10_000  # vectors held per cache block (oldest go first)


class CacheConfig(_Base):
    """`cache:` on a model or a group: answers to identical requests are served from a store."""

    enabled: bool = True  # false on a group: its members are never served from or stored in a cache
    ttl_seconds: Positive = 300.0
    # Who shares entries: the consumer's group (default), each consumer alone, or everyone.
    scope: Literal["group", "consumer", "global"] = "group"
    backend: Literal["memory", "redis"] = "memory"  # redis: store.redis_url, shared by replicas
    max_bytes: PositiveInt = 64 * 1024 * 1024  # memory: LRU bound on stored answers
    max_entry_bytes: PositiveInt = 1024 * 1024  # a larger answer is not stored
    allow_temperature: bool = False  # cache sampled answers too (temperature > 0 or unset)
    allow_tools: bool = False  # cache requests that offer tools (agents: stale answers break them)
    semantic: SemanticCacheConfig | None = None  # also answer near-identical last user messages
    # Identical misses in flight at once (in one process) wait up to this long for the first one's
    # answer instead of all going upstream; 0: they all go upstream.
    coalesce_seconds: NonNegative = 30.0


class ModelConfig(_Base):
    name: str
    deployments: list[DeploymentConfig]  # (an `adapter` model's are its base's: config/adapters.py)
    private: bool = False  # may receive sensitive data (guardrails: a parallel guard needs it)
    description: str | None = None
    embeddings: bool = False
    # Tokens the model can take in (prompt + output), shown in GET /v1/models for clients that
    # size their context by it (Codex: `gatehouse client-env codex`).
    context_window: Annotated[int, Meta(gt=0)] | None = None
    guardrails: list[str] = field(default_factory=list)  # guardrails.policies names (docs/guardrails.md)
    # routing (docs/routing.md)
    routing: RoutingConfig | None = None
    fallbacks: list[str] = field(default_factory=list)  # models tried when every deployment failed
    context_window_fallbacks: list[str] = field(default_factory=list)  # prompt > context_window, or upstream says so
    cold_start: ColdStartConfig | None = None
    cache: CacheConfig | None = None  # response cache (docs/cache.md)
    # The data classes it may receive (compliance routing, docs/policy-routing.md); None: the
    # classes without a policy (a `private: true` model receives every class).
    data_classes: list[str] | None = None
    # What it can do, for virtual models' `cheapest` (docs/policy-routing.md#virtual-models).
    capabilities: list[Literal["tools", "vision", "json_schema", "reasoning"]] = field(default_factory=list)
    # A LoRA adapter served by the base model's deployments (docs/routing.md#lora-adapters-as-models):
    # its deployments are the base's with `model` set to the adapter (config/adapters.py fills them).
    adapter: AdapterConfig | None = None


Unlimited = Literal["unlimited"]


class LimitSettings(_Base):
    """A group's allowance for each consumer (docs/access-control.md), or a consumer's own
    overrides of it. None: no limit in a group, inherit the group's in a consumer."""

    tokens_per_minute: int | Unlimited | None = None
    requests_per_minute: int | Unlimited | None = None
    max_concurrent: int | Unlimited | None = None
    max_tokens: int | Unlimited | None = None  # caps each request's max_tokens
    budget_usd_per_day: float | Unlimited | None = None  # UTC days
    budget_usd_per_month: float | Unlimited | None = None  # UTC calendar months


class GroupConfig(LimitSettings):
    models: list[str] = field(default_factory=lambda: ["*"])
    description: str | None = None
    # consumer: every member gets the allowance; group: the members share one allowance.
    limit_scope: Literal["consumer", "group"] = "consumer"
    guardrails: list[str] = field(default_factory=list)  # guardrails.policies names (docs/guardrails.md)
    cache: CacheConfig | None = None  # response cache for the group's requests (docs/cache.md)
    # ---- policy routing (docs/policy-routing.md) ----
    # The model a request without one (or with `model: default`) uses.
    default_model: str | None = None
    # Every request of the group is at least this data class (compliance routing).
    data_class: str | None = None


class ConsumerConfig(LimitSettings):
    keys: list[str] = field(default_factory=list)  # plaintext (via ${VAR}) or sha256:<hex>
    group: str | None = None
    models: list[str] | None = None  # narrows the group's list
    description: str | None = None


class LoggingConfig(_Base):
    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    # Where the JSON access log goes: stderr (with the gateway's own log) or stdout (a stream
    # of access lines only, for Fluent Bit / CloudWatch / Datadog agents; docs/observability.md).
    access_log_stream: Literal["stderr", "stdout"] = "stderr"


class PricingConfig(_Base):
    # Traffic to a deployment without a price: allow (cost 0), warn (cost 0, logged once per
    # deployment) or deny (403 before the upstream is called). Always counted in a metric.
    unpriced: Literal["allow", "warn", "deny"] = "warn"


class MeteringConfig(_Base):
    journal_dir: str | None = None  # None: <data dir>/journal
    # fsync the journal this often (seconds); 0 = after every record (slow, power-loss safe).
    journal_fsync_seconds: NonNegative = 1.0
    batch_size: PositiveInt = 500  # ledger rows per store transaction
    flush_seconds: float = 0.25  # longest a record waits in the journal when the store is up
    shutdown_flush_seconds: float = 10.0  # on SIGTERM, how long to keep draining into the store
    # The journal's disk refuses writes (full): records held in memory, at most this many; then
    # metered requests get 503 ledger_unavailable (docs/operations.md#disk-full).
    journal_memory_records: PositiveInt = 10_000


class MetricsConfig(_Base):
    enabled: bool = True
    # GET /metrics accepts this bearer token or the admin key; with neither set it is denied.
    token: str | None = None
    # Label usage, request and rate-limit metrics with the consumer too (gatehouse_consumer_*,
    # gatehouse_limit_rejections{consumer}). Off by default: one series per consumer and model
    # (capped at 1000 consumers, the rest as "_other"); docs/observability.md.
    consumer_label: bool = False


class TracingConfig(_Base):
    """OpenTelemetry traces (docs/observability.md#tracing); needs the `[otel]` extra."""

    enabled: bool = False
    # None: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL, then http/protobuf.
    protocol: Literal["http/protobuf", "http/json", "grpc"] | None = None
    # None: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces
    # over HTTP), then http://localhost:4318/v1/traces (HTTP) or http://localhost:4317 (gRPC).
    endpoint: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # e.g. an API key of the collector
    # Share of new traces kept (parent-based: a client's sampled trace is always kept).
    # None: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else every trace.
    sample_ratio: Annotated[float, Meta(ge=0, le=1)] | None = None
    service_name: str = "gatehouse"  # OTEL_SERVICE_NAME wins when set


class LimitsConfig(_Base):
    """How limits are kept (docs/access-control.md#redis)."""

    # Redis unreachable: open = keep limiting per replica (each limit divided by the replica
    # count last seen in Redis, or `replicas` before any was seen); closed = answer 503.
    on_store_error: Literal["open", "closed"] = "open"
    store_timeout_seconds: Positive = 0.25
    breaker_failures: PositiveInt = 3  # consecutive Redis failures that open the circuit
    breaker_reset_seconds: Positive = 2.0  # then one probe after this long
    replicas: PositiveInt = 1
    # Output tokens reserved when neither the request nor the group sets max_tokens.
    default_reserve_tokens: PositiveInt = 1024
    # A concurrency slot kept in Redis is a lease of this long, renewed every third of it
    # while its request runs: the slot of a replica that died or hung frees after this long.
    lease_seconds: Positive = 30.0


class JwtConfig(_Base):
    """Bearer JWTs from an OIDC provider for inference traffic (docs/access-control.md#jwt)."""

    jwks_url: str
    issuer: str
    audience: str | list[str]
    algorithms: list[str] = field(default_factory=lambda: ["RS256"])
    group_claim: str = "groups"  # a string or a list of strings in the token
    groups: dict[str, str] = field(default_factory=dict)  # claim value -> group (first match wins)
    default_group: str | None = None  # None: tokens with no mapped group are refused
    consumer_claim: str = "sub"
    # A token's consumer is this prefix + its subject, so JWT users and key consumers are
    # distinct identities (own limits, own usage) even when the names are equal. "" maps a
    # subject onto the key consumer of the same name on purpose (shared limits and usage).
    consumer_prefix: str = "jwt:"
    leeway_seconds: float = 30.0
    jwks_refresh_seconds: float = 300.0
    jwks_cooldown_seconds: float = 5.0  # least time between refetches for an unknown `kid`
    jwks_timeout_seconds: float = 5.0


class AuthConfig(_Base):
    jwt: JwtConfig | None = None


class AccessConfig(_Base):
    """Who gets what when a consumer names no group, or a key's consumer is defined nowhere
    (docs/access-control.md#identity-and-offboarding)."""

    # A consumer (config file or store) that names no group is in this group. None: every
    # consumer must name one (`gatehouse check` refuses the file otherwise).
    default_group: str | None = None
    # A key whose consumer is defined neither in the config file nor in the store (a consumer
    # removed from the file, say): deny = refused (401); default_group = served in
    # `default_group`, only where the operator opts in.
    unknown_consumers: Literal["deny", "default_group"] = "deny"


class Config(_Base):
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    models: list[ModelConfig] = field(default_factory=list)
    # Requested model name pattern -> configured model (Claude Code asks for its own ids).
    model_aliases: dict[str, str] = field(default_factory=dict)
    groups: dict[str, GroupConfig] = field(default_factory=dict)
    consumers: dict[str, ConsumerConfig] = field(default_factory=dict)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    metering: MeteringConfig = field(default_factory=MeteringConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    guardrails: GuardrailsConfig = field(default_factory=GuardrailsConfig)
    compliance: ComplianceConfig | None = None  # compliance routing (docs/policy-routing.md)
    routers: dict[str, VirtualModelConfig] = field(default_factory=dict)  # virtual models (routing/virtual.py)
