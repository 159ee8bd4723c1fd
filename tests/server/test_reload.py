"""Config reload without a restart (gatehouse/reload.py) on a real `gatehouse serve`: SIGHUP and
POST /admin/reload make a changed file live while old keys keep working; a bad file is refused
(400 naming the field, or a log line for SIGHUP) and the old config serves on; reloads under
continuous load fail no request and the ledger holds every request exactly once."""
from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp
import httpx
import pytest
import yaml

from tests.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY, base_config
from tests.support import Gatehouse

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def chat(gh: Gatehouse, key: str, model: str, text: str = "hello there") -> httpx.Response:
    return httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": text}]}, timeout=10)


def write(gh: Gatehouse, cfg: dict[str, Any] | str) -> str:
    """Replace the served config file; its sha256."""
    assert gh.config_path is not None
    text = cfg if isinstance(cfg, str) else yaml.safe_dump(cfg)
    gh.config_path.write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def readyz_checks(gh: Gatehouse) -> dict[str, Any]:
    checks: dict[str, Any] = httpx.get(gh.url + "/readyz", timeout=5).json()["checks"]
    return checks


def wait_generation(gh: Gatehouse, generation: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while readyz_checks(gh)["config_generation"] != generation:
        assert time.monotonic() < deadline, f"generation {generation} never went live:\n{gh.logs()}"
        time.sleep(0.05)


def metric_lines(gh: Gatehouse, name: str) -> list[str]:
    text = httpx.get(gh.url + "/metrics", headers=ADMIN, timeout=5).text
    return [line for line in text.splitlines() if line.startswith(name)]


def with_new_model(cfg: dict[str, Any]) -> dict[str, Any]:
    """One more model, and alice's group allowed onto it."""
    new = copy.deepcopy(cfg)
    new["models"].append({"name": "chat-next", "deployments": [{"provider": "up", "model": "up-chat"}]})
    new["groups"]["dev"]["models"].append("chat-next")
    return new


@pytest.fixture
def served(openai_upstream, start_gatehouse, start_gatehouse_process):
    """process=True: a `gatehouse serve` process, for the tests that send it SIGHUP."""
    def start(process: bool = False, **overrides: Any) -> tuple[Gatehouse, dict[str, Any]]:
        cfg = base_config(openai_upstream.url, **overrides)
        return (start_gatehouse_process if process else start_gatehouse)(cfg), cfg
    return start


@pytest.mark.process
def test_sighup_makes_a_new_model_live_and_old_keys_keep_working(served):
    gh, cfg = served(process=True)
    assert chat(gh, ALICE_KEY, "chat-next").status_code == 404
    assert chat(gh, ALICE_KEY, "chat").status_code == 200
    assert readyz_checks(gh)["config_generation"] == 1
    assert metric_lines(gh, "gatehouse_config_generation ") == ["gatehouse_config_generation 1.0"]

    sha = write(gh, with_new_model(cfg))
    assert gh.proc is not None
    gh.proc.send_signal(signal.SIGHUP)
    wait_generation(gh, 2)

    assert chat(gh, ALICE_KEY, "chat-next").status_code == 200  # the new model, the changed group
    assert chat(gh, ALICE_KEY, "chat").status_code == 200  # old keys, old models
    assert chat(gh, BOB_KEY, "restricted").status_code == 200
    assert readyz_checks(gh)["config_sha256"] == sha[:12]
    assert metric_lines(gh, "gatehouse_config_generation ") == ["gatehouse_config_generation 2.0"]
    assert metric_lines(gh, "gatehouse_config_info") == [
        f'gatehouse_config_info{{generation="2",sha256="{sha[:12]}"}} 1.0']
    assert "config reloaded (SIGHUP): generation 2" in gh.logs()
    # the metrics name the new model (not ""), and the series from before the reload count on
    assert metric_lines(gh, 'gatehouse_requests_total{group="dev",model="chat-next",status="200"} 1.0')
    assert metric_lines(gh, 'gatehouse_requests_total{group="dev",model="chat",status="200"} 2.0')
    assert gh.proc.poll() is None


@pytest.mark.process
def test_admin_reload_refuses_a_bad_file_naming_the_field_and_the_old_config_serves(served):
    gh, cfg = served(process=True)
    assert httpx.post(gh.url + "/admin/reload", timeout=10).status_code == 401
    assert httpx.post(gh.url + "/admin/reload", headers={"Authorization": f"Bearer {ALICE_KEY}"},
                      timeout=10).status_code == 401

    broken = with_new_model(cfg)
    broken["models"][-1]["deployments"][0]["provider"] = "nowhere"
    write(gh, broken)
    r = httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "config_rejected"
    assert err["param"] == "models[4].deployments[0].provider"
    assert "models[4].deployments[0].provider" in err["message"] and "nowhere" in err["message"]
    assert "Traceback" not in r.text

    wrong_type = copy.deepcopy(cfg)
    wrong_type["groups"]["dev"]["tokens_per_minute"] = "lots"
    write(gh, wrong_type)
    r = httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "groups.dev.tokens_per_minute", r.text

    write(gh, "models: [\n  - name: x\n   bad-indent")
    r = httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10)
    assert r.status_code == 400 and "invalid YAML" in r.json()["error"]["message"]

    moved = with_new_model(cfg)
    moved["store"] = {"url": f"sqlite:///{gh.home / 'elsewhere.db'}"}
    write(gh, moved)
    r = httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "store", r.text
    assert "restart" in r.json()["error"]["message"]

    # SIGHUP with a bad file: a log line, and the process serves on.
    write(gh, broken)
    assert gh.proc is not None
    gh.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "config reload (SIGHUP) rejected: models[4].deployments[0].provider" not in gh.logs():
        assert time.monotonic() < deadline, gh.logs()
        time.sleep(0.05)

    assert gh.proc.poll() is None
    assert readyz_checks(gh)["config_generation"] == 1
    assert chat(gh, ALICE_KEY, "chat").status_code == 200
    assert chat(gh, ALICE_KEY, "chat-next").status_code == 404
    assert any('result="rejected"} 5.0' in line for line in metric_lines(gh, "gatehouse_config_reloads_total"))

    sha = write(gh, with_new_model(cfg))  # fixed: the admin route takes it
    r = httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "reloaded", "generation": 2, "sha256": sha, "models": 5}
    assert chat(gh, ALICE_KEY, "chat-next").status_code == 200
    audit = httpx.get(gh.url + "/admin/audit", headers=ADMIN, timeout=5).json()
    actions = [e["action"] for e in audit["data"]]
    assert "config.reload" in actions and "config.reload_rejected" in actions


def test_file_watch_picks_up_a_changed_file(served):
    gh, cfg = served(server={"max_body_bytes": 65536, "reload_watch": True, "reload_watch_seconds": 0.2})
    time.sleep(0.5)
    write(gh, with_new_model(cfg) | {"server": cfg["server"]})
    wait_generation(gh, 2)
    assert chat(gh, ALICE_KEY, "chat-next").status_code == 200
    assert "config reloaded (file watch)" in gh.logs()


class Load:
    """Clients sending continuously from a thread (unary, fast and slow streams), each request
    with its own id; every answer that is not a complete 200 is a failure."""

    def __init__(self, url: str, prefix: str, workers: int = 6):
        self.url, self.prefix, self.workers = url, prefix, workers
        self.ok: list[str] = []
        self.failed: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
            await asyncio.gather(*(self._worker(s, w) for w in range(self.workers)))

    async def _worker(self, s: aiohttp.ClientSession, w: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            rid = f"{self.prefix}-{w}-{n}-{uuid.uuid4().hex[:6]}"
            kind = n % 3
            text = {0: "alpha beta gamma", 1: "one two three", 2: "DRIP a b c d"}[kind]
            body = {"model": "chat", "messages": [{"role": "user", "content": text}], "stream": kind != 0}
            headers = {"Authorization": f"Bearer {ALICE_KEY}", "x-request-id": rid}
            try:
                async with s.post(self.url + "/v1/chat/completions", json=body, headers=headers) as r:
                    data = await r.read()
                    complete = r.status == 200 and (b"[DONE]" in data if kind else b'"usage"' in data)
                    (self.ok if complete else self.failed).append(f"{rid} {r.status} {data[:200]!r}")
            except (TimeoutError, aiohttp.ClientError) as e:
                self.failed.append(f"{rid} {type(e).__name__}")


@pytest.mark.process
def test_reloads_under_load_fail_nothing_and_the_ledger_holds_every_request_once(served):
    gh, cfg = served(process=True, metering={"flush_seconds": 0.05}, logging={"access_log": False})
    prefix = f"rl{uuid.uuid4().hex[:6]}"
    load = Load(gh.url, prefix)
    variants = [with_new_model(cfg), cfg, with_new_model(cfg)]
    load.thread.start()
    try:
        for i, variant in enumerate(variants):
            time.sleep(0.7)
            write(gh, variant)
            if i == 1:
                assert gh.proc is not None
                gh.proc.send_signal(signal.SIGHUP)
                wait_generation(gh, i + 2)
            else:
                r = httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10)
                assert r.status_code == 200, r.text
        time.sleep(0.7)
    finally:
        load.stop.set()
        load.thread.join(30)
    assert readyz_checks(gh)["config_generation"] == 4
    assert chat(gh, ALICE_KEY, "chat-next").status_code == 200
    assert gh.stop() == 0  # SIGTERM: the journal drains into the store

    assert not load.failed, f"{len(load.failed)} failed requests, e.g. {load.failed[:3]}"
    assert len(load.ok) > 30
    with sqlite3.connect(gh.home / "gatehouse.db") as conn:
        rows = conn.execute("SELECT client_request_id, status FROM usage_records WHERE client_request_id LIKE ?",
                            (prefix + "%",)).fetchall()
    per_request = Counter(rid for rid, _ in rows)
    sent = {line.split()[0] for line in load.ok}
    assert set(per_request) == sent, "every answered request has a ledger record, and only those"
    assert set(per_request.values()) == {1}, "no request recorded twice"
    assert {status for _, status in rows} == {200}
    assert "Traceback" not in gh.logs() and "JournalLocked" not in gh.logs()
    print(f"\n{len(sent)} requests during 3 reloads, {len(rows)} ledger records")


def test_a_restart_only_change_is_refused_but_the_rest_of_the_house_reloads(served):
    """Listener and journal settings need a restart; the reload names them and takes nothing."""
    gh, cfg = served()
    changed = with_new_model(cfg)
    changed["server"] = {**cfg["server"], "port": gh.port + 1}
    changed["metering"] = {"journal_fsync_seconds": 0.5}
    write(gh, changed)
    r = httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("server.port, metering: cannot change on a reload")
    assert chat(gh, ALICE_KEY, "chat-next").status_code == 404


@pytest.mark.process
def test_started_without_a_config_file_has_nothing_to_reload(start_gatehouse_process):
    gh = start_gatehouse_process(None, env={"GATEHOUSE_ADMIN_KEY": ADMIN_KEY})
    r = httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10)
    assert r.status_code == 409 and json.loads(r.text)["error"]["code"] == "no_config_file", r.text
    assert gh.proc is not None
    gh.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "SIGHUP: started without --config" not in gh.logs():
        assert time.monotonic() < deadline and gh.proc.poll() is None, gh.logs()  # SIGHUP no longer kills it
        time.sleep(0.05)
    assert httpx.get(gh.url + "/healthz", timeout=5).status_code == 200


def test_a_stream_in_flight_finishes_on_the_old_config_which_closes_after_it(served):
    """The old runtime serves its open stream to the end (the model it streams from is gone
    from the new config), and is closed only then; its ledger record is written once."""
    gh, cfg = served(metering={"flush_seconds": 0.05})
    words = " ".join(f"w{i}" for i in range(30))  # DRIP: one chunk per 50 ms, ~1.5 s in all
    body = {"model": "restricted", "stream": True, "messages": [{"role": "user", "content": f"DRIP {words}"}]}
    headers = {"Authorization": f"Bearer {BOB_KEY}", "x-request-id": f"inflight-{uuid.uuid4().hex[:8]}"}
    without = copy.deepcopy(cfg)
    without["models"] = [m for m in cfg["models"] if m["name"] != "restricted"]
    with httpx.stream("POST", gh.url + "/v1/chat/completions", json=body, headers=headers, timeout=20) as r:
        chunks = r.iter_bytes()
        first = next(chunks)
        assert r.status_code == 200 and first
        write(gh, without)
        reloaded = httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10)
        assert reloaded.status_code == 200, reloaded.text
        assert chat(gh, BOB_KEY, "restricted").status_code == 404  # new requests see the new config
        time.sleep(0.3)
        assert "config generation 1 closed" not in gh.logs()  # still streaming on it
        rest = b"".join(chunks)
    assert b"[DONE]" in rest and b"w29" in first + rest
    deadline = time.monotonic() + 5
    while "config generation 1 closed after its last request" not in gh.logs():
        assert time.monotonic() < deadline, gh.logs()
        time.sleep(0.05)
    assert gh.stop() == 0
    with sqlite3.connect(gh.home / "gatehouse.db") as conn:
        rows = conn.execute("SELECT status, model, output_tokens FROM usage_records WHERE client_request_id = ?",
                            (headers["x-request-id"],)).fetchall()
    assert len(rows) == 1 and rows[0][:2] == (200, "restricted") and rows[0][2] > 0


def test_a_reload_does_not_reset_the_limits_a_consumer_has_used(served):
    """In-process limits (no Redis) carry over a reload that leaves `limits` alone: a consumer
    at its requests_per_minute stays refused; a group limit raised in the file applies."""
    gh, cfg = served()
    limited = copy.deepcopy(cfg)
    limited["groups"]["dev"]["requests_per_minute"] = 2
    write(gh, limited)
    assert httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10).status_code == 200
    assert [chat(gh, ALICE_KEY, "echo").status_code for _ in range(3)] == [200, 200, 429]

    write(gh, with_new_model(limited))  # a reload for something else
    assert httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10).status_code == 200
    assert chat(gh, ALICE_KEY, "echo").status_code == 429
    assert chat(gh, ALICE_KEY, "chat-next").status_code == 429

    # A raised limit applies at once: the bucket refills at 100/min from where it stands
    # (one request's worth in 0.6 s), not at 2/min.
    raised = with_new_model(limited)
    raised["groups"]["dev"]["requests_per_minute"] = 100
    write(gh, raised)
    assert httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10).status_code == 200
    time.sleep(1.0)
    assert chat(gh, ALICE_KEY, "chat-next").status_code == 200


def test_a_reload_with_guardrails_and_a_changed_limits_section_rebinds_their_metrics(served):
    """A new limiter and the guardrail step are built again on a reload: their series are
    registered once per process and keep counting, and guardrails of the new file apply."""
    policy = {"policies": {"cards": {"checks": [{"type": "payment_card", "action": "block"}]}}}
    gh, cfg = served(guardrails=policy)
    cfg["groups"]["dev"]["guardrails"] = ["cards"]
    write(gh, cfg)
    assert httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10).status_code == 200
    assert chat(gh, ALICE_KEY, "echo", "pay with 4111 1111 1111 1111").status_code == 400
    changed = copy.deepcopy(cfg)
    changed["limits"] = {"lease_seconds": 20}  # a new limiter: its store series are bound again
    write(gh, changed)
    r = httpx.post(gh.url + "/admin/reload", headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    assert chat(gh, ALICE_KEY, "echo", "pay with 4111 1111 1111 1111").status_code == 400
    assert chat(gh, ALICE_KEY, "echo").status_code == 200
    assert metric_lines(gh, "gatehouse_limits_store_up ") == ["gatehouse_limits_store_up 1.0"]
    blocked = [ln for ln in metric_lines(gh, "gatehouse_guardrail_verdicts_total") if 'verdict="match"' in ln]
    assert blocked and blocked[0].endswith(" 2.0")
