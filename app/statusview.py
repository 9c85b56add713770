"""Read what the health and statistics panel shows out of whatever core returns.

``Services.health()`` and ``Services.stats()`` grow over time (the cache, the
audit log); these pure functions look for the keys they know anywhere in the
data and return ``None``/empty when a key is missing, so the panel degrades
gracefully instead of breaking. No Qt here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.types import ComponentHealth

STATE_WORDS = {
    "closed": "closed — healthy",
    "half_open": "half-open — probing",
    "open": "open — failing, calls skipped",
}
STATE_COLOURS = {"closed": "#2e9d44", "half_open": "#d08a00", "open": "#e0453a"}
STATUS_COLOURS = {"ok": "#2e9d44", "degraded": "#d08a00", "down": "#e0453a", "disabled": "gray"}


def _walk(data: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(data, Mapping):
        for k, v in data.items():
            yield str(k), v
            yield from _walk(v)


def find(data: Any, *keys: str) -> Any:
    """The first value under any of ``keys`` anywhere in nested mappings, else None."""
    for k, v in _walk(data):
        if k in keys:
            return v
    return None


def latency(stats: Mapping[str, Any]) -> tuple[float | None, float | None]:
    found = find(stats, "ask_latency_ms", "latency_ms", "latency")
    if isinstance(found, Mapping):
        p50, p95 = found.get("p50"), found.get("p95")
        return (
            float(p50) if isinstance(p50, int | float) else None,
            float(p95) if isinstance(p95, int | float) else None,
        )
    return None, None


def counts(stats: Mapping[str, Any], key: str) -> dict[str, int]:
    found = find(stats, key)
    if not isinstance(found, Mapping):
        return {}
    return {str(k): int(v) for k, v in found.items() if isinstance(v, int | float)}


def recent_events(stats: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = find(stats, "last_events", "recent_events", "events")
    if isinstance(found, Sequence) and not isinstance(found, str):
        return [e for e in found if isinstance(e, Mapping)]
    return []


def event_line(e: Mapping[str, Any]) -> str:
    ts = e.get("ts")
    when = time.strftime("%H:%M:%S", time.localtime(float(ts))) if ts else "—"
    parts = [when, str(e.get("action", "?")), str(e.get("outcome", "?"))]
    if e.get("provider"):
        parts.append(f"via {e['provider']}")
    if e.get("cache_layer") and e.get("cache_layer") != "miss":
        parts.append(f"cache {e['cache_layer']}")
    if isinstance(e.get("latency_ms"), int | float):
        parts.append(f"{e['latency_ms']:.0f} ms")
    return "  ".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def component_details(c: ComponentHealth, skip: Sequence[str] = ()) -> str:
    items = [f"{k}: {_fmt(v)}" for k, v in c.data.items() if k not in skip and v is not None]
    return "; ".join([c.detail, *items] if c.detail else items)


def cache_lines(components: Sequence[ComponentHealth], stats: Mapping[str, Any]) -> list[str]:
    """Backend, fallback and hit rates, from the cache component and the statistics."""
    lines = []
    cache = next((c for c in components if c.name == "cache"), None)
    if cache is not None:
        lines.append(f"Status: {cache.status} — {cache.detail}")
        if "backend" in cache.data:
            lines.append(f"Backend: {cache.data['backend']}")
        if "fallback" in cache.data:
            lines.append(
                "Fallback: "
                + ("active (embedded cache in use)" if cache.data["fallback"] else "not active")
            )
    source = find(stats, "cache")
    layers = find(source, "layers") if source is not None else None
    if layers is None and cache is not None:
        layers = find(cache.data, "layers")
    if isinstance(layers, Mapping):
        for name, m in layers.items():
            if isinstance(m, Mapping):
                hits, misses = m.get("hits"), m.get("misses")
                if isinstance(hits, int) and isinstance(misses, int):
                    total = hits + misses
                    rate = f"{hits / total:.0%}" if total else "—"
                    lines.append(f"{name} layer: hit rate {rate} ({hits} of {total})")
    for k, v in _walk(source if source is not None else (cache.data if cache else {})):
        if "hit_rate" in k and isinstance(v, int | float):
            lines.append(f"{k.replace('_', ' ')}: {v:.0%}")
    by_layer = counts(stats, "by_cache_layer")
    if by_layer:
        lines.append(
            "Answers by cache layer: " + ", ".join(f"{k} {v}" for k, v in by_layer.items())
        )
    return lines


@dataclass(frozen=True, slots=True)
class ChartData:
    labels: list[str]
    series: dict[str, list[float]]


class OutcomeHistory:
    """Requests per refresh interval, by outcome, from cumulative counts.

    The audit log gives totals by outcome; the panel feeds each refresh's totals
    here and charts the differences, so the chart shows activity over time.
    """

    def __init__(self, size: int = 40) -> None:
        self._last: dict[str, int] | None = None
        self._rows: deque[tuple[float, dict[str, int]]] = deque(maxlen=size)

    def add(self, totals: Mapping[str, int], at: float) -> None:
        if self._last is None:
            self._last = dict(totals)
            self._rows.append((at, {}))
            return
        delta = {k: max(0, v - self._last.get(k, 0)) for k, v in totals.items()}
        self._last = dict(totals)
        self._rows.append((at, {k: v for k, v in delta.items() if v}))

    def chart(self) -> ChartData:
        names: list[str] = []
        for _, row in self._rows:
            names += [k for k in row if k not in names]
        labels = [time.strftime("%H:%M:%S", time.localtime(at)) for at, _ in self._rows]
        series = {n: [float(row.get(n, 0)) for _, row in self._rows] for n in names}
        return ChartData(labels, series)


def per_day_chart(stats: Mapping[str, Any], days: int = 14) -> ChartData:
    per_day = counts(stats, "per_day")
    keys = sorted(per_day)[-days:]
    return ChartData([k[5:] for k in keys], {"requests": [float(per_day[k]) for k in keys]})


def provider_chart(stats: Mapping[str, Any]) -> ChartData:
    by_provider = counts(stats, "by_provider")
    labels = list(by_provider)
    return ChartData(labels, {"requests": [float(by_provider[k]) for k in labels]})
