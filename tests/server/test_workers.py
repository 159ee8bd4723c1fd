"""`gatehouse serve --workers N`: real worker processes on one port, under load, killed and
reloaded; the ledger stays exact (compared by request id with what the upstream received)."""
from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from gatehouse.config import ConfigError
from gatehouse.observability.worker_metrics import merge
from gatehouse.supervisor import adopt_orphan_journals, parse_workers, usable_cpus, worker_cpus
from tests.conftest import ADMIN_KEY, ALICE_KEY, base_config
from tests.e2e.test_ledger_durability import Load, check_exactly_once, durable_config, sqlite_rows, upstream_ids
from tests.support import GatehouseProcess as Gatehouse

pytestmark = pytest.mark.process  # the process boundary is the subject


def workers_of(gh: Gatehouse) -> list[int]:
    assert gh.proc is not None
    path = Path(f"/proc/{gh.proc.pid}/task/{gh.proc.pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_for(pred, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def worker_pid(gh: Gatehouse, index: int) -> int:
    return int((gh.home / "run" / f"worker-{index}.pid").read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def metric_lines(gh: Gatehouse, name: str) -> list[str]:
    r = httpx.get(gh.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5)
    assert r.status_code == 200
    return [ln for ln in r.text.splitlines() if ln.startswith(name)]


def start_workers(start_gatehouse_process, cfg: dict, n: int, home: Path | None = None) -> Gatehouse:
    return start_gatehouse_process(cfg, env={"GATEHOUSE_WORKERS": str(n)}, home=home)


def test_two_workers_serve_one_port_and_every_scrape_shows_both(start_gatehouse_process, openai_upstream):
    gh = start_workers(start_gatehouse_process, base_config(openai_upstream.url), 2)
    wait_for(lambda: len(workers_of(gh)) == 2, what="two workers")
    assert "2 workers" in gh.logs()
    for _ in range(40):  # a new connection each: the kernel spreads them over the workers
        r = httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {ALICE_KEY}"},
                       json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert r.status_code == 200
    for _ in range(3):  # whichever worker takes the scrape, both workers' series are in it
        lines = [ln for ln in metric_lines(gh, "gatehouse_requests_total") if 'status="200"' in ln]
        per_worker = {ln.split('worker="')[1].split('"')[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines}
        assert set(per_worker) == {"0", "1"}, lines
        assert sum(per_worker.values()) == 40
        assert min(per_worker.values()) > 0, "both workers took connections"
    assert len(metric_lines(gh, "gatehouse_config_generation")) == 2
    mask = sorted(os.sched_getaffinity(0))  # what the parent inherits from this test
    allowed = [cpus_allowed(worker_pid(gh, i)) for i in range(2)]
    if len(mask) == 2:  # one CPU per worker: each worker keeps its own
        assert allowed == [[mask[0]], [mask[1]]]
    else:  # more CPUs than workers (or fewer): the scheduler places them
        assert allowed == [mask, mask]
    assert gh.stop() == 0
    assert not any(alive(p) for p in workers_of(gh))


def cpus_allowed(pid: int) -> list[int]:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                if ln.startswith("Cpus_allowed_list:"))
    cpus: list[int] = []
    for part in line.split(":", 1)[1].strip().split(","):
        lo, _, hi = part.partition("-")
        cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


def test_a_killed_worker_is_replaced_and_a_killed_parent_takes_its_workers_along(
        start_gatehouse_process, openai_upstream, recorder):
    """SIGKILL of one worker, then of the parent, under load; then a restart with ONE worker,
    which adopts the other worker's journal: every answered request is in the ledger once."""
    cfg = durable_config(openai_upstream.url)
    gh = start_workers(start_gatehouse_process, cfg, 2)
    wait_for(lambda: len(workers_of(gh)) == 2, what="two workers")
    prefix = f"workers-{uuid.uuid4().hex[:6]}"
    load = Load(gh.url, prefix)
    with load:
        time.sleep(1.0)
        victim = workers_of(gh)[1]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in workers_of(gh) and len(workers_of(gh)) == 2, what="a replacement worker")
        time.sleep(1.0)
        children = workers_of(gh)
        gh.kill()  # the parent: the kernel sends each worker SIGTERM (PR_SET_PDEATHSIG)...
        os.kill(worker_pid(gh, 1), signal.SIGKILL)  # ...and worker 1 dies hard
        wait_for(lambda: not any(alive(p) for p in children), timeout=30, what="the workers to exit")
        assert list((gh.home / "journal" / "worker-1").glob("seg-*")), "worker 1 left its journal"
        gh.env["GATEHOUSE_WORKERS"] = "1"
        gh.start()
        time.sleep(1.0)
    assert gh.stop() == 0
    upstream = upstream_ids(recorder, prefix)
    assert len(upstream) > 30
    check_exactly_once(sqlite_rows(gh, prefix), upstream, load)
    assert "adopted" in gh.logs()
    assert not (gh.home / "journal" / "worker-1").exists()


def test_sighup_to_the_parent_and_admin_reload_reach_every_worker(start_gatehouse_process, openai_upstream):
    gh = start_workers(start_gatehouse_process, base_config(openai_upstream.url), 2)
    wait_for(lambda: len(workers_of(gh)) == 2, what="two workers")

    def generations() -> set[str]:
        return {ln.rsplit(" ", 1)[1] for ln in metric_lines(gh, "gatehouse_config_generation")}

    assert generations() == {"1.0"}
    assert gh.proc is not None and gh.config_path is not None
    gh.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: generations() == {"2.0"}, what="both workers at generation 2")
    cfg = yaml.safe_load(gh.config_path.read_text())
    cfg["models"].append({"name": "chat2", "deployments": [{"provider": "up", "model": "up-chat"}]})
    gh.config_path.write_text(yaml.safe_dump(cfg))
    r = httpx.post(gh.url + "/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    assert r.status_code == 200
    wait_for(lambda: generations() == {"3.0"}, what="both workers at generation 3")
    for _ in range(10):  # every worker serves the new model
        r = httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                       json={"model": "chat2", "messages": [{"role": "user", "content": "x"}]}, timeout=10)
        assert r.status_code != 404, r.text


def test_without_redis_each_worker_enforces_its_share_so_the_total_never_exceeds_the_limit(
        start_gatehouse_process, openai_upstream):
    cfg = base_config(openai_upstream.url)
    cfg["groups"]["dev"]["requests_per_minute"] = 4
    gh = start_workers(start_gatehouse_process, cfg, 2)
    wait_for(lambda: len(workers_of(gh)) == 2, what="two workers")
    statuses = [httpx.post(gh.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {ALICE_KEY}"},
                           json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}, timeout=10
                           ).status_code for _ in range(16)]
    assert set(statuses) == {200, 429}
    assert 2 <= statuses.count(200) <= 4, statuses  # 2 a worker (4 / 2); both workers: 4


def test_a_port_in_use_fails_fast_with_a_clear_message(tmp_path, openai_upstream):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    gh = Gatehouse(base_config(openai_upstream.url), tmp_path, {"GATEHOUSE_WORKERS": "2"},
                   port=taken.getsockname()[1])
    try:
        with pytest.raises(RuntimeError):
            gh.start(timeout=10)
        assert "cannot listen on 127.0.0.1" in gh.logs()
    finally:
        taken.close()
        gh.stop()


# ---- the pieces, in-process -------------------------------------------------------------------

def test_workers_are_pinned_only_when_each_has_a_cpu_of_its_own():
    mask = sorted(os.sched_getaffinity(0))
    assert worker_cpus(1) is None
    assert worker_cpus(len(mask) + 1) is None  # more workers than CPUs: the scheduler shares them
    if len(mask) >= 2:
        assert worker_cpus(len(mask)) == mask
    if len(mask) >= 3:
        assert worker_cpus(len(mask) - 1) is None  # fewer workers than CPUs (a quota): unpinned


def test_workers_flag_values():
    assert parse_workers(None) == 1
    assert parse_workers("3") == 3
    assert parse_workers("auto") == usable_cpus() >= 1
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ConfigError, match="--workers"):
            parse_workers(bad)


def test_merge_labels_each_workers_samples_and_exports_shared_families_once():
    w0 = (b'# HELP gatehouse_requests_total Requests.\n# TYPE gatehouse_requests_total counter\n'
          b'gatehouse_requests_total{model="m",status="200"} 3.0\n'
          b'# HELP gatehouse_ledger_backlog Backlog.\n# TYPE gatehouse_ledger_backlog gauge\ngatehouse_ledger_backlog 0.0\n'
          b'# HELP gatehouse_eval_pass_ratio Evals.\n# TYPE gatehouse_eval_pass_ratio gauge\n'
          b'gatehouse_eval_pass_ratio{suite="s"} 0.9\n')
    w1 = w0.replace(b"} 3.0", b"} 4.0").replace(b"backlog 0.0", b"backlog 2.0")
    out = merge([(0, w0), (1, w1)]).decode().splitlines()
    assert out.count("# TYPE gatehouse_requests_total counter") == 1
    assert 'gatehouse_requests_total{worker="0",model="m",status="200"} 3.0' in out
    assert 'gatehouse_requests_total{worker="1",model="m",status="200"} 4.0' in out
    assert 'gatehouse_ledger_backlog{worker="1"} 2.0' in out
    assert [ln for ln in out if ln.startswith("gatehouse_eval_pass_ratio")] == ['gatehouse_eval_pass_ratio{suite="s"} 0.9']


def test_orphaned_worker_journals_move_into_worker_zeros(tmp_path):
    base = tmp_path / "journal"
    (base / "worker-1").mkdir(parents=True)
    (base / "worker-3").mkdir()
    (base / "seg-000000000007.jsonl").write_text("own\n")
    (base / "worker-1" / "seg-000000000001.jsonl").write_text("kept\n")
    (base / "worker-3" / "seg-000000000001.jsonl").write_text("a\n")
    (base / "worker-3" / "seg-000000000002.jsonl").write_text("b\n")
    assert adopt_orphan_journals(base, 2) == 2
    assert not (base / "worker-3").exists()
    assert (base / "worker-1" / "seg-000000000001.jsonl").read_text() == "kept\n"
    assert (base / "seg-000000000008.jsonl").read_text() == "a\n"
    assert (base / "seg-000000000009.jsonl").read_text() == "b\n"
