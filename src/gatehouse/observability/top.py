"""`gatehouse top`: live traffic per model, group and consumer, read from a gateway's /metrics.

What an operator wants over SSH: polls GET /metrics (the metrics token or the admin key) every
`--interval` seconds and shows rates over the last interval — requests, errors, 429s, tokens,
cost, latency and time-to-first-token percentiles — as a live table on a terminal, or as plain
text snapshots when stdout is not a TTY (`--count N` stops after N). Per-consumer rows need
`metrics.consumer_label: true` on the gateway. Nothing here imports the gateway's runtime.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from rich.table import Table

    from gatehouse.cli.common import Subparsers

Key = tuple[str, tuple[tuple[str, str], ...]]
DIMENSIONS = ("model", "group", "consumer")


class TopError(Exception):
    """The gateway could not be read (printed without a traceback)."""


def scrape(url: str, token: str | None, timeout: float = 5.0) -> dict[Key, float]:
    req = urllib.request.Request(url.rstrip("/") + "/metrics",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        hint = " (give --token: the metrics token or the admin key)" if e.code in (401, 403) else ""
        raise TopError(f"{url}/metrics answered {e.code}{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        raise TopError(f"cannot reach {url}/metrics: {getattr(e, 'reason', e)}") from None
    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@dataclass
class Row:
    requests: float = 0.0
    errors: float = 0.0  # 5xx
    limited: float = 0.0  # 429
    tokens_in: float = 0.0
    tokens_out: float = 0.0
    cost: float = 0.0
    latency: dict[float, float] = field(default_factory=dict)  # le -> count in the interval
    ttft: dict[float, float] = field(default_factory=dict)


@dataclass
class Snapshot:
    seconds: float
    rows: dict[str, dict[str, Row]]  # dimension -> name -> row
    inflight: float
    backlog: float
    cpu: float | None  # cores used over the interval
    rss: float | None

    def per_second(self, v: float) -> float:
        return v / self.seconds if self.seconds > 0 else 0.0


def _delta(now: dict[Key, float], before: dict[Key, float], key: Key) -> float:
    d = now[key] - before.get(key, 0.0)
    return now[key] if d < 0 else d  # a restarted gateway starts its counters again


def compare(before: dict[Key, float], now: dict[Key, float], seconds: float) -> Snapshot:
    rows: dict[str, dict[str, Row]] = {d: defaultdict(Row) for d in DIMENSIONS}
    consumers = any(name.startswith("gatehouse_consumer_") for name, _ in now)
    for key in now:
        name, labels = key
        lab = dict(labels)
        if name == "gatehouse_requests_total":
            targets = [rows["model"][lab["model"]], rows["group"][lab["group"]]]
        elif name == "gatehouse_consumer_requests_total":
            targets = [rows["consumer"][lab["consumer"]]]
        elif name in ("gatehouse_tokens_input_total", "gatehouse_tokens_output_total", "gatehouse_cost_usd_total"):
            targets = [rows["model"][lab["model"]], rows["group"][lab["group"]]]
        elif consumers and name in ("gatehouse_consumer_tokens_input_total", "gatehouse_consumer_tokens_output_total",
                                    "gatehouse_consumer_cost_usd_total"):
            targets = [rows["consumer"][lab["consumer"]]]
        elif name in ("gatehouse_request_duration_seconds_bucket", "gatehouse_time_to_first_token_seconds_bucket"):
            hist = "latency" if name.startswith("gatehouse_request") else "ttft"
            buckets = getattr(rows["model"][lab["model"]], hist)
            le = float(lab["le"])
            buckets[le] = buckets.get(le, 0.0) + _delta(now, before, key)
            continue
        else:
            continue
        d = _delta(now, before, key)
        for row in targets:
            if name.endswith("requests_total"):
                row.requests += d
                status = lab.get("status", "")
                row.errors += d if status.startswith("5") else 0.0
                row.limited += d if status == "429" else 0.0
            elif "tokens_input" in name:
                row.tokens_in += d
            elif "tokens_output" in name:
                row.tokens_out += d
            else:
                row.cost += d
    # (summed: under `serve --workers N` every worker's process series is there, labelled)
    cpu_keys = [k for k in now if k[0] == "process_cpu_seconds_total"]
    cpu = sum(_delta(now, before, k) for k in cpu_keys) / seconds if cpu_keys and seconds > 0 else None
    rss = [v for (n, _), v in now.items() if n == "process_resident_memory_bytes"]
    return Snapshot(seconds, {d: dict(r) for d, r in rows.items()},
                    sum(v for (n, _), v in now.items() if n == "gatehouse_inflight_requests"),
                    sum(v for (n, _), v in now.items() if n == "gatehouse_ledger_backlog"),
                    cpu, sum(rss) if rss else None)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over one interval's cumulative bucket counts (Prometheus' rule)."""
    les = sorted(buckets)
    if not les or buckets[les[-1]] <= 0:
        return None
    total = buckets[les[-1]]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le in les:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return prev_le
            width = count - prev_count
            return prev_le + (le - prev_le) * ((rank - prev_count) / width if width > 0 else 1.0)
        prev_le, prev_count = le, count
    return prev_le


COLUMNS = ("req/s", "5xx/s", "429/s", "tok in/s", "tok out/s", "$/h", "p50", "p95", "ttft p95")


def _seconds(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f}ms" if v < 1 else f"{v:.2f}s"


def table_rows(snap: Snapshot, dimension: str, limit: int) -> list[list[str]]:
    rows = sorted(snap.rows.get(dimension, {}).items(), key=lambda kv: (-kv[1].requests, -kv[1].tokens_out, kv[0]))
    out = []
    for name, r in rows[:limit]:
        if not (r.requests or r.tokens_in or r.tokens_out):
            continue
        ps = snap.per_second
        timing = [_seconds(quantile(0.5, r.latency)), _seconds(quantile(0.95, r.latency)),
                  _seconds(quantile(0.95, r.ttft))] if dimension == "model" else ["", "", ""]
        out.append([name or "(other)", f"{ps(r.requests):.2f}", f"{ps(r.errors):.2f}", f"{ps(r.limited):.2f}",
                    f"{ps(r.tokens_in):.1f}", f"{ps(r.tokens_out):.1f}", f"{ps(r.cost) * 3600:.4f}", *timing])
    return out


def header(url: str, snap: Snapshot) -> str:
    parts = [f"gatehouse top  {url}", f"in flight {snap.inflight:.0f}", f"ledger backlog {snap.backlog:.0f}"]
    if snap.cpu is not None:
        parts.append(f"cpu {snap.cpu:.2f} cores")
    if snap.rss is not None:
        parts.append(f"rss {snap.rss / 2**20:.0f} MiB")
    parts.append(f"over {snap.seconds:.1f}s")
    return "  ·  ".join(parts)


def plain(url: str, snap: Snapshot, dimensions: Sequence[str], limit: int) -> str:
    lines = [header(url, snap)]
    for d in dimensions:
        rows = table_rows(snap, d, limit)
        cols = (d, *COLUMNS) if d == "model" else (d, *COLUMNS[:6])
        body = [r[:len(cols)] for r in rows] or [["(no traffic)"] + [""] * (len(cols) - 1)]
        widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(cols)]
        lines.append("")
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths))))
        for r in body:
            lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    return "\n".join(lines) + "\n"


def rich_view(url: str, snap: Snapshot, dimensions: Sequence[str], limit: int) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    tables: list[Text | Table] = [Text(header(url, snap), style="bold")]
    for d in dimensions:
        cols = (d, *COLUMNS) if d == "model" else (d, *COLUMNS[:6])
        t = Table(expand=True, header_style="bold cyan")
        for i, c in enumerate(cols):
            t.add_column(c, justify="left" if i == 0 else "right")
        for r in table_rows(snap, d, limit):
            t.add_row(*r[:len(cols)], style="red" if r[2] != "0.00" else None)
        tables.append(t)
    return Group(*tables)


def run(url: str, token: str | None, interval: float, count: int | None, dimensions: Sequence[str], limit: int,
        tty: bool, out: Any = None) -> int:
    out = out or sys.stdout
    before = scrape(url, token)
    t0 = time.monotonic()
    shown = 0
    live: Any = None
    if tty:
        from rich.console import Console
        from rich.live import Live

        live = Live(console=Console(file=out), auto_refresh=False, screen=False)
        live.start()
    try:
        while count is None or shown < count:
            time.sleep(interval)
            now, t1 = scrape(url, token), time.monotonic()
            snap = compare(before, now, t1 - t0)
            dims = [d for d in dimensions if d != "consumer" or snap.rows["consumer"]]
            if live is not None:
                live.update(rich_view(url, snap, dims, limit), refresh=True)
            else:
                out.write(plain(url, snap, dims, limit))
                out.flush()
            before, t0 = now, t1
            shown += 1
    finally:
        if live is not None:
            live.stop()
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("GATEHOUSE_METRICS_TOKEN") or os.environ.get("GATEHOUSE_ADMIN_KEY")
    dims: Iterable[str] = args.by.split(",") if args.by else DIMENSIONS
    dimensions = [d for d in dims if d in DIMENSIONS]
    if not dimensions or args.interval <= 0:
        print("top: --by takes model,group,consumer; --interval must be > 0", file=sys.stderr)
        return 2
    try:
        return run(args.url, token, args.interval, args.count, dimensions, args.limit, sys.stdout.isatty())
    except TopError as e:
        print(f"top: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def add_top_command(sub: Subparsers) -> None:
    t = sub.add_parser("top", help="live traffic per model, group and consumer from a gateway's /metrics",
                       description="Polls GET /metrics and shows rates over each interval.")
    t.add_argument("--url", default=os.environ.get("GATEHOUSE_URL", "http://127.0.0.1:8080"),
                   help="the gateway's base URL (default $GATEHOUSE_URL, else http://127.0.0.1:8080)")
    t.add_argument("--token", help="metrics token or admin key (default $GATEHOUSE_METRICS_TOKEN, "
                                   "then $GATEHOUSE_ADMIN_KEY)")
    t.add_argument("--interval", "-n", type=float, default=2.0, help="seconds between polls (default 2)")
    t.add_argument("--count", type=int, help="stop after this many updates (default: until Ctrl-C)")
    t.add_argument("--by", help="tables to show: model,group,consumer (default all; consumer rows need "
                                "metrics.consumer_label)")
    t.add_argument("--limit", type=int, default=20, help="rows per table (default 20)")
    t.set_defaults(func=cmd_top)
