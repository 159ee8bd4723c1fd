"""The config schema of routing across a model's deployments: strategies, health checks and
scale-from-zero (docs/routing.md). A leaf, like config/schema.py, which re-exports it."""
from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from gatehouse.config.schema_base import _Base

# ---- routing (issue 16; docs/routing.md; checked in routing/checks.py) ---------------------------


class RoutingConfig(_Base):
    """How a model's deployments share its requests, and how much failing over one request may do."""

    # unset: `ordered`, or `prefix-affinity` for a self-hosted pool (routing/strategies.model_strategy)
    strategy: Literal["ordered", "weighted", "least-busy", "latency", "prefix-affinity", "load-aware"] | None = None
    max_attempts: Annotated[int, Meta(ge=1)] | None = None  # deployments tried per request, fallbacks too
    deadline_seconds: Annotated[float, Meta(gt=0)] | None = None  # no new attempt after this long
    # Plans tried again after a retryable failure (not a 429), after a jittered backoff that
    # starts at retry_backoff_seconds and doubles (at most 5 s); the fallbacks come after them.
    retries: Annotated[int, Meta(ge=0, le=10)] = 0
    retry_backoff_seconds: Annotated[float, Meta(gt=0)] = 0.25
    # At most this share of the model's deployments is ejected at once (at least one always may be).
    max_ejected_percent: Annotated[int, Meta(ge=0, le=100)] = 100
    # load-aware only: how often each deployment's engine metrics are scraped (default 1 s), and
    # the queue (waiting requests) above which a deployment is saturated (default 16)
    scrape_interval_seconds: Annotated[float, Meta(ge=0.05)] | None = None
    queue_threshold: Annotated[int, Meta(ge=0)] | None = None
    # load-aware only: taken off the score of the deployment that served the request's prefix
    # last (routing/strategies.LoadAware; default 3, 0: no prefix term)
    prefix_weight: Annotated[float, Meta(ge=0)] | None = None


class KubernetesScaleConfig(_Base):
    """Scale a Deployment/StatefulSet up through the Kubernetes scale subresource (the pod's
    service account; RBAC in docs/routing.md)."""

    namespace: str
    name: str
    kind: Literal["deployment", "statefulset"] = "deployment"
    replicas: Annotated[int, Meta(ge=1)] = 1
    api_url: str = "https://kubernetes.default.svc"
    token_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ca_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


class HealthCheckConfig(_Base):
    """Active checks of a provider (routing/active.py): GET base_url's root + path."""

    path: str = "/health"
    interval_seconds: Annotated[float, Meta(ge=0.05)] = 10.0


class WakeConfig(_Base):
    """How a cold start wakes the backend: a webhook and/or the Kubernetes scale subresource."""

    url: str | None = None  # POSTed {"model": name} when a cold start begins
    kubernetes: KubernetesScaleConfig | None = None


class AdapterConfig(_Base):
    """A LoRA adapter served by another model's deployments (vLLM `--lora-modules name=path`)."""

    base: str  # the model whose deployments serve it
    name: str  # the adapter's name upstream: the `model` field sent


class ColdStartConfig(_Base):
    """Hold requests while a model's deployments (scaled to zero) come up, instead of failing them."""

    max_queue: Annotated[int, Meta(ge=0)] = 100
    timeout_seconds: Annotated[float, Meta(gt=0)] = 300.0
    poll_interval_seconds: Annotated[float, Meta(gt=0)] = 1.0
    ready_path: str = "/models"  # polled under each deployment's provider base_url; any answer < 500 = up
    keepalive_seconds: Annotated[float, Meta(gt=0)] = 5.0  # a held stream's keep-alive frames (routing/keepalive.py)
    wake: WakeConfig | None = None
