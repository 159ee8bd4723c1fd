"""Metering end to end: ledger records, usage headers, cut streams, failover attempts,
usage reports and their isolation, /metrics against the ledger, access logs."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid

import aiohttp
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY, base_config
from tests.support import Gatehouse, run_cli
from tests.upstreams.harness import free_port

METRICS_TOKEN = "metrics-token-123"
CHAT_PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cached_input_per_mtok": 0.5}
GPU_PRICE = {"gpu_cost_per_hour": 3.6, "gpu_output_tokens_per_second": 1000, "gpu_input_tokens_per_second": 10000}


REUSER_KEY = "reuser-key-0123456789"


def metering_config(upstream_url: str) -> dict:
    cfg = base_config(upstream_url, metrics={"token": METRICS_TOKEN}, metering={"flush_seconds": 0.05})
    cfg["providers"]["dead"] = {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                                "connect_timeout": 2}
    cfg["models"] = [
        {"name": "chat", "deployments": [{"provider": "up", "model": "up-chat", **CHAT_PRICE}]},
        {"name": "embed", "deployments": [{"provider": "up", "model": "up-embed", "input_per_mtok": 0.1}]},
        {"name": "gpu", "deployments": [{"provider": "up", "model": "up-chat", **GPU_PRICE}]},
        {"name": "failover", "deployments": [{"provider": "dead", "model": "gone", **CHAT_PRICE},
                                             {"provider": "up", "model": "up-chat", **CHAT_PRICE}]},
        {"name": "echo", "deployments": [{"provider": "echo", "model": "echo"}]},
    ]
    cfg["groups"] = {"dev": {"models": ["*"]}}
    cfg["consumers"]["bob"]["group"] = "dev"
    cfg["consumers"]["reuser"] = {"group": "dev", "keys": [REUSER_KEY]}
    return cfg


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    g = Gatehouse(metering_config(openai_upstream.url), tmp_path_factory.mktemp("metering")).start()
    yield g
    g.stop()


@pytest.fixture
def alice(gh):
    return openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)


def rid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def records(gh: Gatehouse, request_id: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
    """The ledger rows of the requests a client sent with this x-request-id, once the writer
    has stored `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(gh.home / "gatehouse.db") as conn:
            conn.row_factory = sqlite3.Row
            got = [dict(r) for r in conn.execute(
                "SELECT * FROM usage_records WHERE client_request_id = ? ORDER BY ts, attempt", (request_id,))]
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def get(gh: Gatehouse, path: str, key: str) -> tuple[int, dict | str, dict]:
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.get(gh.url + path, headers={"Authorization": f"Bearer {key}"}) as r:
                text = await r.text()
                return r.status, (json.loads(text) if r.content_type == "application/json" else text), dict(r.headers)
    return asyncio.run(go())


def test_unary_response_headers_and_record_carry_exact_usage_and_cost(gh, alice):
    request_id = rid("unary")
    raw = alice.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "one two three"}], extra_headers={"x-request-id": request_id})
    usage = raw.parse().usage  # the upstream counts words: 3 in, 4 out ("echo: one two three")
    assert (usage.prompt_tokens, usage.completion_tokens) == (3, 4)
    assert raw.headers["x-gatehouse-tokens-input"] == "3"
    assert raw.headers["x-gatehouse-tokens-output"] == "4"
    assert float(raw.headers["x-gatehouse-cost-usd"]) == pytest.approx((3 * 1.0 + 4 * 2.0) / 1e6)
    [rec] = records(gh, request_id)
    assert rec["consumer"] == "alice" and rec["group_name"] == "dev" and rec["key_id"].startswith("config:")
    assert (rec["model"], rec["deployment"], rec["provider"], rec["surface"]) == ("chat", "up-chat", "up", "chat")
    assert (rec["status"], rec["input_tokens"], rec["output_tokens"], rec["attempt"]) == (200, 3, 4, 1)
    assert rec["cost_usd"] == pytest.approx(11e-6)
    assert not rec["streamed"] and not rec["estimated"] and not rec["cache_hit"] and rec["priced"]
    assert rec["latency_ms"] > 0 and rec["ttft_ms"] is None
    assert ALICE_KEY not in json.dumps(rec) and "one two three" not in json.dumps(rec)


def test_gpu_priced_model_is_not_free(gh, alice):
    raw = alice.chat.completions.with_raw_response.create(model="gpu", messages=[{"role": "user", "content": "a b"}])
    # $3.60/h over 10,000 input tok/s and 1,000 output tok/s: $0.10 and $1.00 per million
    assert float(raw.headers["x-gatehouse-cost-usd"]) == pytest.approx((2 * 0.1 + 3 * 1.0) / 1e6)


def test_streams_are_recorded_with_usage_and_time_to_first_token(gh, alice):
    request_id = rid("stream")
    stream = alice.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x y"}], stream=True,
                                           extra_headers={"x-request-id": request_id})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: x y"
    [rec] = records(gh, request_id)
    assert (rec["status"], rec["input_tokens"], rec["output_tokens"]) == (200, 2, 3)
    assert rec["streamed"] and not rec["estimated"] and rec["ttft_ms"] is not None


def test_upstream_without_usage_gets_an_estimate_marked_estimated(gh, alice):
    request_id = rid("nousage")
    raw = alice.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "NOUSAGE please count me"}],
        extra_headers={"x-request-id": request_id})
    assert int(raw.headers["x-gatehouse-tokens-input"]) > 0
    assert int(raw.headers["x-gatehouse-tokens-output"]) > 0
    [rec] = records(gh, request_id)
    assert rec["estimated"] and rec["output_tokens"] > 0


def test_stream_cut_by_the_upstream_is_billed_for_what_was_generated(gh, alice):
    request_id = rid("upcut")
    with pytest.raises(openai.APIError):
        stream = alice.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "CUTSTREAM a b c d e f g h"}], stream=True,
            extra_headers={"x-request-id": request_id})
        list(stream)
    [rec] = records(gh, request_id)
    assert (rec["status"], rec["error_type"]) == (502, "upstream_disconnected")
    assert rec["estimated"] and rec["streamed"]
    assert 2 <= rec["output_tokens"] < 10  # two content chunks were generated before the cut
    assert rec["input_tokens"] > 0 and rec["cost_usd"] > 0


async def test_stream_cut_by_the_client_is_billed_for_what_was_generated(gh):
    request_id = rid("clientcut")
    words = " ".join(f"w{i}" for i in range(40))
    body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": f"DRIP {words}"}]}
    headers = {"Authorization": f"Bearer {ALICE_KEY}", "x-request-id": request_id}
    async with aiohttp.ClientSession() as s:
        async with s.post(gh.url + "/v1/chat/completions", json=body, headers=headers) as r:
            got = b""
            while got.count(b"data:") < 3:
                got += await r.content.readany()
            r.close()  # hang up mid-stream
    rec = (await asyncio.to_thread(records, gh, request_id))[0]
    assert (rec["status"], rec["error_type"]) == (499, "client_closed")
    assert rec["estimated"] and rec["streamed"]
    assert 1 <= rec["output_tokens"] < 40
    assert rec["cost_usd"] > 0


def test_failover_records_one_row_per_upstream_attempt(gh, alice):
    request_id = rid("failover")
    raw = alice.chat.completions.with_raw_response.create(
        model="failover", messages=[{"role": "user", "content": "hi there"}], extra_headers={"x-request-id": request_id})
    assert raw.parse().choices[0].message.content == "echo: hi there"
    first, second = records(gh, request_id, 2)
    assert (first["attempt"], first["provider"], first["status"]) == (1, "dead", 502)
    assert first["error_type"] == "upstream_unreachable"
    assert (first["input_tokens"], first["output_tokens"], first["cost_usd"]) == (0, 0, 0)
    assert (second["attempt"], second["provider"], second["status"]) == (2, "up", 200)
    assert (second["input_tokens"], second["output_tokens"]) == (2, 3)
    assert first["id"] != second["id"]


def test_embeddings_and_completions_are_metered(gh, alice):
    e_id, c_id = rid("embed"), rid("complete")
    alice.embeddings.create(model="embed", input=["alpha beta", "gamma"], extra_headers={"x-request-id": e_id})
    alice.completions.create(model="chat", prompt="say this", extra_headers={"x-request-id": c_id})
    [e] = records(gh, e_id)
    assert (e["surface"], e["input_tokens"], e["output_tokens"]) == ("embeddings", 3, 0)
    assert e["cost_usd"] == pytest.approx(3 * 0.1 / 1e6)
    [c] = records(gh, c_id)
    assert (c["surface"], c["input_tokens"], c["output_tokens"]) == ("completions", 2, 3)


def test_unpriced_traffic_is_allowed_with_warn_and_counted(gh, alice):
    request_id = rid("echo")
    raw = alice.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": request_id})
    assert raw.headers["x-gatehouse-cost-usd"] == "0"
    [rec] = records(gh, request_id)
    assert not rec["priced"] and rec["cost_usd"] == 0
    assert "has no price" in gh.logs()


def test_usage_reports_never_show_another_consumers_rows(gh, alice):
    bob = openai.OpenAI(base_url=gh.url + "/v1", api_key=BOB_KEY, max_retries=0)
    bob_id, alice_id = rid("bob"), rid("alice")
    bob.chat.completions.create(model="chat", messages=[{"role": "user", "content": "bob here"}],
                                extra_headers={"x-request-id": bob_id})
    alice.chat.completions.create(model="chat", messages=[{"role": "user", "content": "alice here"}],
                                  extra_headers={"x-request-id": alice_id})
    records(gh, bob_id), records(gh, alice_id)
    status, mine, _ = get(gh, "/v1/usage/me?by=model&since=1h", ALICE_KEY)
    assert status == 200 and {r["model"] for r in mine["data"]} >= {"chat"}
    status, bobs, _ = get(gh, "/v1/usage/me?since=1h", BOB_KEY)
    assert status == 200 and [(r["model"], r["requests"]) for r in bobs["data"]] == [("chat", 1)]
    status, everyone, _ = get(gh, "/admin/usage?by=consumer&since=1h", ADMIN_KEY)
    assert status == 200 and {r["consumer"] for r in everyone["data"]} == {"alice", "bob"}
    by_consumer = {r["consumer"]: r for r in everyone["data"]}
    assert by_consumer["bob"]["requests"] == 1
    assert sum(r["input_tokens"] for r in mine["data"]) == by_consumer["alice"]["input_tokens"]
    # asking for someone else's rows is refused, not silently answered
    status, err, _ = get(gh, "/v1/usage/me?consumer=bob", ALICE_KEY)
    assert status == 403 and err["error"]["code"] == "usage_not_allowed"
    assert get(gh, "/v1/usage/me?by=consumer", ALICE_KEY)[0] == 400
    assert get(gh, "/v1/usage/me", "wrong-key")[0] == 401
    assert get(gh, "/admin/usage", ALICE_KEY)[0] == 401
    status, err, _ = get(gh, "/admin/usage?since=yesterday", ADMIN_KEY)
    assert status == 400 and "since" in err["error"]["message"]
    status, text, headers = get(gh, "/admin/usage?by=model&since=1h&format=csv&consumer=bob", ADMIN_KEY)
    assert headers["Content-Type"].startswith("text/csv")
    assert text.splitlines()[0].startswith("model,requests,") and text.splitlines()[1].startswith("chat,1,")


def test_usage_cli_prints_a_table_and_csv(gh, alice):
    request_id = rid("cli")
    alice.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}],
                                  extra_headers={"x-request-id": request_id})
    records(gh, request_id)
    env = {**gh.env}
    cmd = ["usage", "--config", str(gh.config_path), "--since", "1d"]
    table = run_cli(*cmd, "--by", "consumer", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["consumer", "requests", "input"]
    assert any(line.startswith("alice") for line in lines) and lines[-1].startswith("total")
    csv = run_cli(*cmd, "--by", "group", "--csv", env=env)
    assert csv.returncode == 0 and csv.stdout.splitlines()[1].startswith("dev,")
    bad = run_cli(*cmd, "--until", "soon", env=env)
    assert bad.returncode == 2 and "until" in bad.stderr


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def test_metrics_parse_and_match_the_ledger(gh, alice):
    assert get(gh, "/metrics", "nope")[0] == 401
    for model in ("chat", "failover", "echo"):  # traffic of its own, besides the tests above
        alice.chat.completions.create(model=model, messages=[{"role": "user", "content": "m e t"}])
        list(alice.chat.completions.create(model=model, messages=[{"role": "user", "content": "s"}], stream=True))
    deadline = time.monotonic() + 10
    while True:  # wait until the writer has stored everything
        status, text, headers = get(gh, "/metrics", METRICS_TOKEN)
        samples = _samples(text)
        if samples[("gatehouse_ledger_backlog", ())] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert get(gh, "/metrics", ADMIN_KEY)[0] == 200
    with sqlite3.connect(gh.home / "gatehouse.db") as conn:
        n, tin, tout, cost, requests = conn.execute(
            "SELECT count(*), sum(input_tokens), sum(output_tokens), sum(cost_usd), count(DISTINCT request_id) "
            "FROM usage_records").fetchone()
        per_model = dict(conn.execute("SELECT model, sum(output_tokens) FROM usage_records GROUP BY model"))
        final_status = conn.execute(  # each request's last attempt decides its status
            "SELECT model, status, count(*) FROM usage_records r WHERE attempt = "
            "(SELECT max(attempt) FROM usage_records WHERE request_id = r.request_id) GROUP BY model, status").fetchall()
        client_closed = conn.execute("SELECT count(*) FROM usage_records WHERE error_type = 'client_closed'").fetchone()
    assert n >= 8
    assert _sum(samples, "gatehouse_upstream_attempts_total") == n
    assert _sum(samples, "gatehouse_tokens_input_total") == tin
    assert _sum(samples, "gatehouse_tokens_output_total") == tout
    assert _sum(samples, "gatehouse_cost_usd_total") == pytest.approx(cost)
    for model, out in per_model.items():
        assert _sum(samples, "gatehouse_tokens_output_total", model=model) == out
    model_requests = sum(v for (name, ls), v in samples.items()
                         if name == "gatehouse_requests_total" and dict(ls)["model"])
    assert model_requests == requests
    for model, status, count in final_status:
        assert _sum(samples, "gatehouse_requests_total", model=model, status=str(status)) == count
    assert _sum(samples, "gatehouse_errors_total", type="client_closed") == client_closed[0]
    assert _sum(samples, "gatehouse_unpriced_requests_total", model="echo") >= 1
    assert _sum(samples, "gatehouse_request_duration_seconds_count") == model_requests
    assert _sum(samples, "gatehouse_time_to_first_token_seconds_count") >= 3
    assert _sum(samples, "gatehouse_upstream_duration_seconds_count", provider="dead") == \
        sum(count for model, status, count in final_status if model == "failover")
    assert ("gatehouse_inflight_requests", ()) in samples and ("gatehouse_rate_limited_total", ()) in samples
    # labels come from configured names only, whatever the client asked for
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="made-up-model", messages=[{"role": "user", "content": "x"}])
    models = {dict(ls).get("model") for (name, ls) in _samples(get(gh, "/metrics", METRICS_TOKEN)[1])}
    assert models <= {None, "", "chat", "embed", "gpu", "failover", "echo"}


def test_access_log_is_json_per_request_without_bodies(gh, alice):
    request_id = rid("log")
    alice.chat.completions.create(model="chat", messages=[{"role": "user", "content": "zebra-secret-word"}],
                                  extra_headers={"x-request-id": request_id})
    records(gh, request_id)
    deadline = time.monotonic() + 5
    while request_id not in gh.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(line) for line in gh.logs().splitlines() if line.startswith("{")]
    [entry] = [e for e in lines if e["client_request_id"] == request_id]
    assert len(entry["request_id"]) == 32 and entry["request_id"] != request_id, "the gateway's own id"
    assert entry["consumer"] == "alice" and entry["model"] == "chat" and entry["status"] == 200
    assert (entry["tokens_in"], entry["tokens_out"]) == (1, 2) and entry["latency_ms"] > 0
    assert entry["cost_usd"] == pytest.approx(5e-6)
    logs = gh.logs()
    assert "zebra-secret-word" not in logs and ALICE_KEY not in logs and "echo: " not in logs


def test_unpriced_deny_refuses_before_the_upstream(openai_upstream, start_gatehouse, recorder):
    cfg = metering_config(openai_upstream.url)
    cfg["pricing"] = {"unpriced": "deny"}
    cfg["models"].append({"name": "free", "deployments": [{"provider": "up", "model": "up-chat"}]})
    g = start_gatehouse(cfg)
    client = openai.OpenAI(base_url=g.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="free", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_unpriced"
    assert recorder.requests == []
    assert client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}]).usage


def test_migrate_command_and_no_migrate_on_start(tmp_path):
    cfg_path = tmp_path / "gatehouse.yaml"
    db = tmp_path / "g.db"
    cfg = {"store": {"url": f"sqlite:///{db}", "migrate_on_start": False},
           "providers": {"echo": {"type": "echo"}},
           "models": [{"name": "echo", "deployments": [{"provider": "echo", "model": "echo"}]}],
           "groups": {"all": {}}, "consumers": {"alice": {"group": "all", "keys": [ALICE_KEY]}}}
    cfg_path.write_text(yaml.safe_dump(cfg))
    g = Gatehouse(None, tmp_path / "home")
    g.config_path = cfg_path
    with pytest.raises(RuntimeError) as e:
        g.start(timeout=15)
    assert "gatehouse migrate" in str(e.value)
    cmd = ["migrate", "--config", str(cfg_path)]
    first = run_cli(*cmd, env=g.env)
    assert first.returncode == 0 and "migrated from empty to revision" in first.stdout, first.stderr
    again = run_cli(*cmd, env=g.env)
    assert "up to date" in again.stdout
    g.start()
    client = openai.OpenAI(base_url=g.url + "/v1", api_key=ALICE_KEY, max_retries=0)
    assert client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}]).usage
    g.stop()


def test_a_reused_client_request_id_still_counts_every_request(gh):
    shared = rid("reused")
    client = openai.OpenAI(base_url=gh.url + "/v1", api_key=REUSER_KEY, max_retries=0)
    for word in ("one", "two", "three"):
        raw = client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": word}], extra_headers={"x-request-id": shared})
        assert raw.headers["x-request-id"] == shared, "the client's id is kept for correlation"
        time.sleep(0.002)  # the next request's id starts in a later millisecond
    rows = records(gh, shared, 3)
    assert len(rows) == 3 and {r["client_request_id"] for r in rows} == {shared}
    assert len({r["request_id"] for r in rows}) == 3 and shared not in {r["request_id"] for r in rows}
    ours = [r["request_id"] for r in sorted(rows, key=lambda r: r["ts"])]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ours)
    assert ours == sorted(ours)  # time-ordered: the ledger's request_id index grows at its end
    status, report, _ = get(gh, "/admin/usage?by=consumer&since=1h&consumer=reuser", ADMIN_KEY)
    assert status == 200 and report["data"][0]["requests"] == 3 and report["data"][0]["attempts"] == 3
    status, mine, _ = get(gh, "/v1/usage/me?since=1h", REUSER_KEY)
    assert status == 200 and mine["data"][0]["requests"] == 3
    deadline = time.monotonic() + 5
    while gh.logs().count(f'"client_request_id":"{shared}"') < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [json.loads(line) for line in gh.logs().splitlines() if f'"client_request_id":"{shared}"' in line]
    assert len(lines) == 3 and len({line["request_id"] for line in lines}) == 3
