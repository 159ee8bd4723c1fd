"""`gatehouse top` over a real gateway: plain text when stdout is not a terminal, a rich live
table on one; rates per model, group and consumer from the traffic sent meanwhile."""
from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading

import pytest

from gatehouse.observability.top import quantile
from tests.observability.traffic import METRICS_TOKEN, observed_config, send_traffic
from tests.support import Gatehouse, run_cli


@pytest.fixture(scope="module")
def gh(openai_upstream, tmp_path_factory):
    g = Gatehouse(observed_config(openai_upstream.url), tmp_path_factory.mktemp("obs-top")).start()
    yield g
    g.stop()


def top(gh: Gatehouse, *args: str, token: str = METRICS_TOKEN) -> list[str]:
    return [sys.executable, "-m", "gatehouse.cli", *top_args(gh, *args, token=token)]


def top_args(gh: Gatehouse, *args: str, token: str = METRICS_TOKEN) -> list[str]:
    return ["top", "--url", gh.url, "--token", token, *args]


def columns(text: str, first: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.split()[:1] == [first])


def test_plain_text_rates_per_model_group_and_consumer(gh):
    traffic = threading.Timer(1.0, send_traffic, (gh.url,))  # top has read its first sample by then
    traffic.start()
    done = run_cli(*top_args(gh, "--interval", "4", "--count", "1"))
    traffic.join(30)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, err
    assert out.startswith(f"gatehouse top  {gh.url}") and "in flight" in out and "ledger backlog" in out
    header = columns(out, "model")
    assert header[:4] == ["model", "req/s", "5xx/s", "429/s"]
    chat = columns(out, "chat")
    assert float(chat[1]) > 0 and float(chat[2]) > 0 and float(chat[3]) > 0  # FAIL500 -> 502, carol's 429s
    assert float(chat[5]) > 0 and float(chat[6]) > 0  # output tokens and cost
    assert chat[7].endswith("s") and chat[9].endswith("s")  # p50 and TTFT p95 from the histograms
    assert float(columns(out, "dev")[1]) > 0 and float(columns(out, "tight")[3]) > 0
    assert float(columns(out, "alice")[1]) > 0 and float(columns(out, "carol")[3]) > 0


@pytest.mark.process  # stdout a terminal
def test_a_terminal_gets_a_live_table(gh):
    leader, follower = pty.openpty()
    proc = subprocess.Popen(top(gh, "--interval", "1", "--count", "2", "--by", "model"), stdout=follower,
                            stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "160"})
    os.close(follower)
    done = threading.Event()
    threading.Thread(target=lambda: (send_traffic(gh.url), done.set()), daemon=True).start()
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(30)
    done.wait(30)
    os.close(leader)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0
    assert "━" in text and "req/s" in text and "gatehouse top" in text


def test_a_wrong_token_is_a_clear_error_without_a_traceback(gh):
    out = run_cli(*top_args(gh, "--count", "1", token="wrong"))
    assert out.returncode == 1
    assert "answered 401" in out.stderr and "--token" in out.stderr and "Traceback" not in out.stderr
    gone = run_cli("top", "--url", "http://127.0.0.1:9", "--count", "1")
    assert gone.returncode == 1 and "cannot reach" in gone.stderr and "Traceback" not in gone.stderr


def test_quantile_follows_prometheus_interpolation():
    assert quantile(0.5, {0.1: 0, 0.5: 10, float("inf"): 10}) == pytest.approx(0.3)
    assert quantile(0.99, {1.0: 0, 2.0: 0, float("inf"): 5}) == 2.0  # in the +Inf bucket: its lower bound
    assert quantile(0.5, {1.0: 0, float("inf"): 0}) is None
