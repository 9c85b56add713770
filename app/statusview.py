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
    # "(none)" counts events that have no such field (an ingest has no provider): not a name.
    return {
        str(k): int(v)
        for k, v in found.items()
        if isinstance(v, int | float) and k not in (None, "", "(none)")
    }


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
    detail = e.get("detail")
    keys = detail.get("keys") if isinstance(detail, Mapping) else None
    if isinstance(keys, Sequence) and not isinstance(keys, str) and keys:
        parts.append(", ".join(str(k) for k in keys))
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


@dataclass(frozen=True, slots=True)
class StatusLine:
    """One line of a status box; ``status`` (a ``STATUS_COLOURS`` key or "") colours it."""

    text: str
    status: str = ""


LAYER_NAMES = {"embedding": "Question embeddings", "result": "Answers"}


def _ms(v: Any) -> str:
    if not isinstance(v, int | float):
        return "—"
    if v < 1:
        return f"{v:.2f} ms"
    if v < 10:
        return f"{v:.1f} ms"
    return f"{v:.0f} ms"


def layer_line(name: str, m: Mapping[str, Any]) -> str | None:
    """``Answers: hit rate 75% (3 of 4 lookups) · hit latency p50 1.2 ms, p95 3.4 ms``."""
    hits, misses = m.get("hits"), m.get("misses")
    if not isinstance(hits, int) or not isinstance(misses, int):
        return None
    total = hits + misses
    label = LAYER_NAMES.get(name, name)
    if not total:
        return f"{label}: no lookups yet"
    line = f"{label}: hit rate {hits / total:.0%} ({hits} of {total} lookups)"
    p50, p95 = m.get("hit_p50_ms"), m.get("hit_p95_ms")
    if isinstance(p50, int | float) or isinstance(p95, int | float):
        line += f" · hit latency p50 {_ms(p50)}, p95 {_ms(p95)}"
    return line


def cache_view(components: Sequence[ComponentHealth], stats: Mapping[str, Any]) -> list[StatusLine]:
    """Backend, fallback (coloured and in words), per-layer hit rate and hit latency."""
    lines: list[StatusLine] = []
    cache = next((c for c in components if c.name == "cache"), None)
    data: Mapping[str, Any] = cache.data if cache is not None else {}
    if cache is not None:
        if cache.status == "disabled":
            lines.append(
                StatusLine("The answer cache is turned off (Settings → Cache).", "disabled")
            )
        backend = data.get("backend")
        fallback = data.get("fallback")
        if backend is not None:
            words = {
                "redis": "Redis",
                "embedded": "embedded (a file on this computer)",
            }.get(str(backend), str(backend))
            lines.append(StatusLine(f"Backend: {words}"))
        if fallback:
            retry = data.get("retry_in_s")
            when = (
                f"; trying Redis again in {retry:.0f} s"
                if isinstance(retry, int | float) and retry > 0
                else "; trying Redis again on the next request"
            )
            lines.append(
                StatusLine(
                    f"Fallback: active — Redis is unreachable, the embedded cache is in use{when}",
                    "degraded",
                )
            )
        elif backend == "redis":
            lines.append(StatusLine("Fallback: not needed — Redis is reachable", "ok"))
        elif fallback is not None:
            lines.append(StatusLine("Fallback: not in use (no Redis configured)"))
        if cache.status not in ("ok", "disabled") and not fallback and cache.detail:
            lines.append(StatusLine(f"Status: {cache.status} — {cache.detail}", cache.status))
    source = find(stats, "cache")
    layers = find(source, "layers") if source is not None else None
    if layers is None:
        layers = find(data, "layers")
    if isinstance(layers, Mapping):
        for name, m in layers.items():
            if isinstance(m, Mapping):
                line = layer_line(str(name), m)
                if line is not None:
                    lines.append(StatusLine(line))
    metrics = find(data, "metrics")
    if isinstance(metrics, Mapping):
        entries, evictions = metrics.get("entries"), metrics.get("evictions")
        parts = []
        if isinstance(entries, int):
            parts.append(f"{entries} cached entr{'y' if entries == 1 else 'ies'}")
        if isinstance(evictions, int):
            parts.append(f"{evictions} evicted (wrong, outdated or over the size limit)")
        if parts:
            lines.append(StatusLine(" · ".join(parts).capitalize()))
        refusals = metrics.get("guard_refusals")
        if isinstance(refusals, Mapping) and any(refusals.values()):
            why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in refusals.items() if v)
            lines.append(StatusLine(f"Not cached (guard): {why}"))
    for k, v in _walk(source if source is not None else data):
        if "hit_rate" in k and isinstance(v, int | float):
            lines.append(StatusLine(f"{k.replace('_', ' ')}: {v:.0%}"))
    by_layer = counts(stats, "by_cache_layer")
    if by_layer:
        lines.append(
            StatusLine(
                "Answers by cache layer: " + ", ".join(f"{k} {v}" for k, v in by_layer.items())
            )
        )
    return lines


def cache_lines(components: Sequence[ComponentHealth], stats: Mapping[str, Any]) -> list[str]:
    """``cache_view`` as plain text."""
    return [line.text for line in cache_view(components, stats)]


def watcher_view(components: Sequence[ComponentHealth]) -> list[StatusLine]:
    """The watched folders and whether they are followed."""
    w = next((c for c in components if c.name == "watcher"), None)
    if w is None:
        return []
    folders = w.data.get("folders")
    if w.status == "disabled" or not folders:
        return [StatusLine("No folder is watched. Add one in Settings → Watched folders.")]
    lines = []
    if w.status == "ok":
        lines.append(StatusLine("Following changes in:", "ok"))
    else:
        error = w.data.get("last_error") or w.detail
        lines.append(StatusLine(f"Not following changes: {error}", w.status))
    if isinstance(folders, Sequence) and not isinstance(folders, str):
        lines += [StatusLine(f"  {f}") for f in folders]
    batches = w.data.get("batches")
    if isinstance(batches, int):
        lines.append(StatusLine(f"{batches} re-scan{'s' if batches != 1 else ''} so far"))
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
