"""Small statistics over rounds: median with min/max, paired differences, ratios."""
from __future__ import annotations

import statistics


def spread(values) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def paired(a: list, b: list) -> list:
    """Round-by-round a - b (a through a gateway, b direct in the same round)."""
    return [(x - y) if x is not None and y is not None else None for x, y in zip(a, b)]


def median(s: dict | None) -> float | None:
    return None if s is None else s["median"]


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0 or num < 0:
        return None
    return num / den


def growth(samples: list[tuple[float, int]], total_s: float) -> dict:
    """RSS growth over a soak: median of the samples 15-25% in vs median of the last 10%.

    The first part of a soak is skipped because caches, pools and allocator arenas fill there;
    what counts is whether memory keeps climbing after that.
    """
    early = [kb for t, kb in samples if 0.15 * total_s <= t <= 0.25 * total_s]
    late = [kb for t, kb in samples if t >= 0.9 * total_s]
    if not early or not late:
        return {"start_kb": None, "end_kb": None, "growth_kb": None, "slope_kb_per_min": None}
    start, end = statistics.median(early), statistics.median(late)
    tail = [(t, kb) for t, kb in samples if t >= 0.15 * total_s]
    slope = None
    if len(tail) >= 3:
        ts = [t for t, _ in tail]
        ks = [kb for _, kb in tail]
        mt, mk = statistics.fmean(ts), statistics.fmean(ks)
        var = sum((t - mt) ** 2 for t in ts)
        if var > 0:
            slope = sum((t - mt) * (k - mk) for t, k in zip(ts, ks)) / var * 60.0
    return {"start_kb": start, "end_kb": end, "growth_kb": end - start, "slope_kb_per_min": slope}
