"""The three things load is sent to: the mock upstream itself ("direct"), Gatehouse, LiteLLM.

Each is a Target with a port and the headers its clients authenticate with. The gateway
configs are generated here; `gatehouse_config` is the one place that says how Gatehouse is
configured for the bench (extend it, not the callers, for new settings).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .procs import GATEWAY_CPU, LOAD_CPU, Proc

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent
GATEHOUSE_EXE = PROJECT_DIR / ".venv" / "bin" / "gatehouse"

BENCH_KEY = "bench-key"
LITELLM_KEY = "sk-bench-key"  # LiteLLM wants master keys to start with sk-
MODEL = "bench-model"
UPSTREAM_MODEL = "mock-model"


@dataclass
class MockSettings:
    latency_ms: float = 0.0
    size: int = 512          # characters of generated text per response
    chunks: int = 64         # content chunks per stream
    gap_ms: float = 5.0      # gap between stream chunks


@dataclass
class Target:
    name: str                # "direct", "gatehouse", "litellm", "gatehouse-distributed"
    port: int
    openai_headers: dict[str, str]
    anthropic_headers: dict[str, str]
    proc: Proc | None = None
    info: dict = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kb(self) -> int:
        return self.proc.rss_kb() if self.proc else 0


# ---- YAML (a tiny emitter: the configs are plain mappings, lists and scalars) ----------------

def to_yaml(node, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(node, dict):
        lines = []
        for k, v in node.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n{to_yaml(v, indent + 1)}")
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return "\n".join(lines)
    if isinstance(node, list):
        lines = []
        for v in node:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 1).lstrip()
                lines.append(f"{pad}- {inner}")
            else:
                lines.append(f"{pad}- {_scalar(v)}")
        return "\n".join(lines)
    return pad + _scalar(node)


def _scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (dict, list)):
        return "{}" if isinstance(v, dict) else "[]"
    return json.dumps(str(v))  # a JSON string is a valid double-quoted YAML scalar


# ---- the mock upstream -------------------------------------------------------------------

def start_mock(exe: Path, run_dir: Path, settings: MockSettings) -> Target:
    port = procs.free_port()
    proc = Proc("mock", [str(exe), "--port", str(port), "--latency-ms", str(settings.latency_ms),
                         "--size", str(settings.size), "--chunks", str(settings.chunks),
                         "--gap-ms", str(settings.gap_ms)],
                run_dir / "mock.log", cpu=LOAD_CPU).start()
    if not procs.wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=10):
        raise SystemExit(f"bench: the mock upstream did not start:\n{proc.log_tail()}")
    return Target("direct", port, {"Authorization": "Bearer x"}, {"x-api-key": "x"}, proc)


# ---- Gatehouse ---------------------------------------------------------------------------

GUARDRAILS_EXAMPLE = PROJECT_DIR / "examples" / "guardrails-ecommerce.yaml"


def ecommerce_guardrails() -> dict:
    """The `guardrails:` section of examples/guardrails-ecommerce.yaml, as is (scenario h)."""
    import yaml  # the project's own dependency; the bench runs in its venv

    return yaml.safe_load(GUARDRAILS_EXAMPLE.read_text())["guardrails"]


def gatehouse_config(run_dir: Path, mock_port: int, port: int, *, store_url: str | None = None,
                     redis_url: str | None = None, guardrails: str | None = None,
                     cache: dict | None = None, tracing: dict | None = None, routing: str | None = None,
                     auto: dict | None = None, engines: list[int] | None = None) -> dict:
    """The bench's Gatehouse config: the whole default pipeline, one key, one mock provider.

    Nothing is switched off: key auth, limits, metering, the ledger and metrics run as they do
    by default. `store_url`/`redis_url` select the distributed mode (Postgres + Redis).
    `guardrails` names a policy of examples/guardrails-ecommerce.yaml to attach to the bench
    group (scenario h); everything else stays the same, so the difference is the guardrails.
    `cache` is the bench model's `cache:` block (scenario j: response cache hits); `tracing` the
    `tracing:` section (scenario k). `routing` serves the model from three deployments (three
    providers on the same mock, as three replicas would be) under that routing strategy (scenario l).
    `auto` makes the bench model's name a virtual `rules` router (this router config) over the
    models its rules name, each served by the mock (scenario m); a `semantic` block in it adds its
    embeddings model, served by the mock's /v1/embeddings. `engines` serves the model from real
    llama-server replicas on these ports instead of the mock, under `routing` when set (scenario n).
    """
    store: dict = {"url": store_url or f"sqlite:///{run_dir / 'gatehouse.db'}"}
    if redis_url:
        store["redis_url"] = redis_url
    group: dict = {"models": ["*"]}  # every model, no limits: the whole default pipeline
    extra: dict = {}
    if guardrails:
        group["guardrails"] = [guardrails]
        extra["guardrails"] = ecommerce_guardrails()
    if tracing:
        extra["tracing"] = tracing
    providers = {"mock": {"type": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1", "api_key": "x"}}
    model: dict = {"name": MODEL, "deployments": [{"provider": "mock", "model": UPSTREAM_MODEL}]}
    if routing:
        for i in (1, 2):
            providers[f"mock{i}"] = dict(providers["mock"])
        model = {"name": MODEL, "routing": {"strategy": routing},
                 "deployments": [{"provider": p, "model": UPSTREAM_MODEL} for p in providers]}
    if engines:  # scenario (n): real llama-server replicas (bench/harness/scenario_engine.py)
        for i, engine_port in enumerate(engines):
            providers[f"engine{i}"] = {"type": "openai", "base_url": f"http://127.0.0.1:{engine_port}/v1"}
        model = {"name": MODEL, "deployments": [{"provider": f"engine{i}", "model": MODEL} for i in range(len(engines))],
                 **({"routing": {"strategy": routing}} if routing else {})}
    if cache is not None:
        model["cache"] = cache
    models = [model]
    if auto is not None:  # scenario (m): MODEL is the virtual model; the models it picks share the mock
        names = sorted({auto["default"], *(r["model"] for r in auto.get("rules", []))})
        models = [{"name": n, "deployments": [{"provider": "mock", "model": UPSTREAM_MODEL}]} for n in names]
        semantic = auto.get("semantic")
        if semantic is not None:  # its embeddings model: the mock's /v1/embeddings (a hashed bag of words)
            models.append({"name": semantic["model"], "embeddings": True,
                           "deployments": [{"provider": "mock", "model": UPSTREAM_MODEL}]})
        extra["routers"] = {MODEL: auto}
    return {
        "server": {"host": "127.0.0.1", "port": port},
        "store": store,
        "admin": {"key": "bench-admin"},
        "providers": providers,
        "models": models,
        "groups": {"bench": group},
        "consumers": {"bench": {"group": "bench", "keys": [BENCH_KEY]}},
        **extra,
    }


class StartError(Exception):
    """A gateway did not come up or did not answer a first request; carries its log tail."""


def _smoke(target: Target, upstream: Target | None = None) -> None:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"Content-Type": "application/json", **target.openai_headers}
    status, payload = procs.http("POST", f"{target.base}/v1/chat/completions", body, headers, timeout=30)
    if status != 200 or b"choices" not in payload:
        gone = ""
        if upstream is not None and upstream.proc is not None and not upstream.proc.alive():
            gone = f" (the mock upstream is gone, exit status {upstream.proc.popen.returncode})"
        raise StartError(f"{target.name}: first request answered {status}{gone}: {payload[:300]!r}")


def start_gatehouse(mock: Target, run_dir: Path, name: str = "gatehouse", workers: int = 1,
                    source: Path | None = None, **config_kw) -> Target:
    if not GATEHOUSE_EXE.exists():
        raise StartError(f"{GATEHOUSE_EXE} is missing (run `make dev-install`)")
    port = procs.free_port()
    cfg_dir = run_dir / name
    cfg_dir.mkdir(exist_ok=True)
    cfg_path = cfg_dir / "gatehouse.yaml"
    cfg_path.write_text(to_yaml(gatehouse_config(cfg_dir, mock.port, port, **config_kw)) + "\n")
    env = dict(os.environ, GATEHOUSE_HOME=str(cfg_dir))
    if source is not None:  # --baseline-src: another checkout's sources, same venv
        env["PYTHONPATH"] = str(source)
    argv = [str(GATEHOUSE_EXE), "serve", "--config", str(cfg_path), "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:  # scenario (i): the workers take both cores, shared with the load generator and mock
        argv += ["--workers", str(workers)]
    proc = Proc(name, argv, cfg_dir / "gatehouse.log", cpu=GATEWAY_CPU if workers == 1 else f"{GATEWAY_CPU},{LOAD_CPU}",
                env=env, cwd=cfg_dir).start()
    target = Target(name, port, {"Authorization": f"Bearer {BENCH_KEY}"}, {"x-api-key": BENCH_KEY},
                    proc, {"config": str(cfg_path)})
    if not procs.wait_http(f"{target.base}/healthz", proc, timeout=60):
        tail = proc.log_tail(30)
        proc.stop()
        raise StartError(f"{name} did not become healthy:\n{tail}")
    try:
        _smoke(target, mock)
    except (StartError, OSError) as e:
        tail = proc.log_tail(30)
        proc.stop()
        raise StartError(f"{e}\n{tail}") from None
    target.info["restart"] = lambda: start_gatehouse(mock, run_dir, name, workers=workers, source=source, **config_kw)
    return target


def start_otlp_sink(run_dir: Path) -> tuple[Proc, int, int]:
    """bench/otlp_sink.py on the load core: OTLP/HTTP and OTLP/gRPC that accept and discard."""
    http_port, grpc_port = procs.free_port(), procs.free_port()
    python = PROJECT_DIR / ".venv" / "bin" / "python"
    proc = Proc("otlp-sink", [str(python), str(PROJECT_DIR / "bench" / "otlp_sink.py"), "--http-port",
                              str(http_port), "--grpc-port", str(grpc_port)],
                run_dir / "otlp-sink.log", cpu=LOAD_CPU).start()
    if not procs.wait_http(f"http://127.0.0.1:{http_port}/stats", proc, timeout=30):
        proc.stop()
        raise StartError(f"the OTLP sink did not start:\n{proc.log_tail(20)}")
    return proc, http_port, grpc_port


# ---- LiteLLM -----------------------------------------------------------------------------

def litellm_config(mock_port: int) -> dict:
    """One worker, no database, logging off; key auth with a master key."""
    return {
        "model_list": [{
            "model_name": MODEL,
            "litellm_params": {"model": f"openai/{UPSTREAM_MODEL}",
                               "api_base": f"http://127.0.0.1:{mock_port}/v1", "api_key": "x"},
        }],
        "litellm_settings": {"set_verbose": False, "json_logs": False,
                             "turn_off_message_logging": True, "drop_params": True},
        "general_settings": {"master_key": LITELLM_KEY, "disable_spend_logs": True,
                             "disable_error_logs": True},
        # one deployment: a cooldown after a few errors would turn one slow moment into
        # seconds of "no deployments available"; Gatehouse has no such state either
        "router_settings": {"disable_cooldowns": True},
    }


def start_litellm(exe: Path, mock: Target, run_dir: Path) -> Target:
    port = procs.free_port()
    cfg_dir = run_dir / "litellm"
    cfg_dir.mkdir(exist_ok=True)
    cfg_path = cfg_dir / "litellm.yaml"
    cfg_path.write_text(to_yaml(litellm_config(mock.port)) + "\n")
    env = dict(os.environ, LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True",
               LITELLM_TELEMETRY="False", NO_DOCS="True", DISABLE_ADMIN_UI="True",
               # /v1/messages to an OpenAI-compatible upstream: use its chat/completions (what
               # vLLM, Ollama and the mock serve) rather than the OpenAI Responses API
               LITELLM_USE_CHAT_COMPLETIONS_URL_FOR_ANTHROPIC_MESSAGES="True")
    env.pop("DATABASE_URL", None)
    proc = Proc("litellm", [str(exe), "--config", str(cfg_path), "--host", "127.0.0.1",
                            "--port", str(port), "--num_workers", "1"],
                cfg_dir / "litellm.log", cpu=GATEWAY_CPU, env=env, cwd=cfg_dir).start()
    target = Target("litellm", port, {"Authorization": f"Bearer {LITELLM_KEY}"},
                    {"x-api-key": LITELLM_KEY}, proc, {"config": str(cfg_path)})
    if not procs.wait_http(f"{target.base}/health/liveliness", proc, timeout=180):
        tail = proc.log_tail(30)
        proc.stop()
        raise StartError(f"litellm did not become healthy:\n{tail}")
    try:
        _smoke(target, mock)
    except (StartError, OSError) as e:
        tail = proc.log_tail(30)
        proc.stop()
        raise StartError(f"{e}\n{tail}") from None
    target.info["restart"] = lambda: start_litellm(exe, mock, run_dir)
    return target


def litellm_version(exe: Path) -> str:
    py = exe.parent / "python"
    out = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


# ---- backing services for the distributed mode --------------------------------------------

def start_redis(exe: str, run_dir: Path) -> tuple[Proc, str]:
    port = procs.free_port()
    proc = Proc("redis", [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(run_dir)],
                run_dir / "redis.log", cpu=LOAD_CPU).start()
    if not procs.wait_port(port, proc):
        raise StartError(f"redis-server did not start:\n{proc.log_tail()}")
    return proc, f"redis://127.0.0.1:{port}/0"


def start_postgres(bin_dir: Path, run_dir: Path) -> tuple[Proc, str]:
    """A throwaway cluster on a loopback port (initdb refuses root, so run as 'postgres')."""
    as_user: list[str] = []
    data_parent = Path(run_dir) / "pg"
    data_parent.mkdir()
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise StartError("running as root without runuser: cannot start Postgres")
        as_user = [runuser, "-u", "postgres", "--"]
        # the run dir is private to root; give postgres its own directory outside it
        import tempfile
        data_parent = Path(tempfile.mkdtemp(prefix="gatehouse-bench-pg-"))
        shutil.chown(data_parent, "postgres", "postgres")
    data = data_parent / "data"
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = procs.free_port()
    proc = Proc("postgres", [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data_parent}",
                             "-c", "max_connections=200"],
                run_dir / "postgres.log", cpu=LOAD_CPU).start()
    proc.info_dir = data_parent  # type: ignore[attr-defined]
    if not procs.wait_port(port, proc):
        raise StartError(f"postgres did not start:\n{proc.log_tail()}")
    for _ in range(50):
        ok = subprocess.run([*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                             "-U", "postgres", "gatehouse"], capture_output=True)
        if ok.returncode == 0:
            break
        time.sleep(0.2)
    return proc, f"postgresql://postgres@127.0.0.1:{port}/gatehouse"
