"""What the health and statistics panel shows, from the typed snapshots of core.

Pure functions over ``HealthSnapshot`` and ``StatsSnapshot`` (``core.types``):
they read attributes, never look keys up, and return plain values
(``StatusLine``, ``ChartData``, strings) that the panel lays out. A part that
core did not report (no audit log, a component that is down) is simply left
out. No Qt here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from core.types import (
    CACHE,
    WATCHER,
    AuditEvent,
    AuditSummary,
    BreakerSnapshot,
    CacheHealth,
    ComponentHealth,
    ComponentInfo,
    DatabaseHealth,
    HealthSnapshot,
    IndexHealth,
    LayerMetrics,
    ModelHealth,
    RateLimitHealth,
    StatsSnapshot,
    WatcherHealth,
)

STATE_WORDS = {
    "closed": "closed — healthy",
    "half_open": "half-open — probing",
    "open": "open — failing, calls skipped",
}
STATE_COLOURS = {"closed": "#2e9d44", "half_open": "#d08a00", "open": "#e0453a"}
STATUS_COLOURS = {"ok": "#2e9d44", "degraded": "#d08a00", "down": "#e0453a", "disabled": "gray"}

# The audit summary's counts, by the attribute that holds them.
CountName = Literal["by_action", "by_outcome", "by_provider", "by_cache_layer"]
Health = HealthSnapshot | Sequence[ComponentHealth]


@dataclass(frozen=True, slots=True)
class StatusLine:
    """One line of a status box; ``status`` (a ``STATUS_COLOURS`` key or "") colours it."""

    text: str
    status: str = ""


@dataclass(frozen=True, slots=True)
class ChartData:
    labels: list[str]
    series: dict[str, list[float]]


def _snapshot(health: Health) -> HealthSnapshot:
    """Accept a snapshot or its components (the panel keeps the components)."""
    if isinstance(health, HealthSnapshot):
        return health
    return HealthSnapshot("ok", tuple(health), 0.0)


def _audit(stats: StatsSnapshot | None) -> AuditSummary | None:
    return None if stats is None else stats.audit


# --------------------------------------------------------------------------- statistics


def latency(stats: StatsSnapshot | None) -> tuple[float | None, float | None]:
    """Answer latency p50 and p95 in ms (None when unknown)."""
    audit = _audit(stats)
    if audit is None:
        return None, None
    return audit.ask_latency_ms.p50, audit.ask_latency_ms.p95


def latency_text(stats: StatsSnapshot | None) -> str:
    def ms(v: float | None) -> str:
        return "—" if v is None else f"{v:.0f} ms"

    p50, p95 = latency(stats)
    return f"Answer latency: p50 {ms(p50)} · p95 {ms(p95)}"


def counts(stats: StatsSnapshot | None, which: CountName) -> dict[str, int]:
    """Events per name, largest first; events without a name (an ingest has no
    provider) are left out."""
    audit = _audit(stats)
    if audit is None:
        return {}
    found = {
        "by_action": audit.by_action,
        "by_outcome": audit.by_outcome,
        "by_provider": audit.by_provider,
        "by_cache_layer": audit.by_cache_layer,
    }[which]
    return {k: v for k, v in found.items() if k is not None}


def totals_text(stats: StatsSnapshot | None) -> str:
    """Requests by outcome and by provider, or what this session did without an audit log."""
    parts = []
    by_outcome = counts(stats, "by_outcome")
    by_provider = counts(stats, "by_provider")
    if by_outcome:
        parts.append("By outcome: " + ", ".join(f"{k} {v}" for k, v in by_outcome.items()))
    if by_provider:
        parts.append("By provider: " + ", ".join(f"{k} {v}" for k, v in by_provider.items()))
    if parts:
        return "\n".join(parts)
    if stats is not None and stats.audit is None:
        return f"{stats.session.asks} question(s) this session; the audit log is not available."
    return "No request statistics available."


def recent_events(stats: StatsSnapshot | None) -> list[AuditEvent]:
    """The last audit events, newest first."""
    audit = _audit(stats)
    return [] if audit is None else list(audit.last_events)


def event_line(e: AuditEvent) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(e.ts)) if e.ts else "—"
    parts = [when, e.action, e.outcome]
    if e.provider:
        parts.append(f"via {e.provider}")
    if e.cache_layer and e.cache_layer != "miss":
        parts.append(f"cache {e.cache_layer}")
    if e.latency_ms is not None:
        parts.append(f"{e.latency_ms:.0f} ms")
    if e.setting_keys:
        parts.append(", ".join(e.setting_keys))
    return "  ".join(parts)


def per_day_chart(stats: StatsSnapshot | None, days: int = 14) -> ChartData:
    audit = _audit(stats)
    if audit is None:
        return ChartData([], {"requests": []})
    keys = sorted(audit.per_day)[-days:]
    return ChartData(
        [d.strftime("%m-%d") for d in keys], {"requests": [float(audit.per_day[d]) for d in keys]}
    )


def provider_chart(stats: StatsSnapshot | None) -> ChartData:
    by_provider = counts(stats, "by_provider")
    labels = list(by_provider)
    return ChartData(labels, {"requests": [float(by_provider[k]) for k in labels]})


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


# --------------------------------------------------------------------------- components


def _size(n: int) -> str:
    value, unit = float(n), "bytes"
    for bigger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


def _yes(v: bool) -> str:
    return "yes" if v else "no"


def facts(info: ComponentInfo | None) -> list[tuple[str, str]]:
    """A component's figures as (label, text) pairs, in display order."""
    match info:
        case DatabaseHealth(counts=c):
            return [
                ("url", info.url),
                ("schema", info.schema_revision or "none"),
                ("documents", str(c.documents)),
                ("passages", str(c.chunks)),
                ("quarantined", str(c.quarantined)),
                ("size", _size(c.size_bytes)),
                ("embeddings", str(c.embeddings)),
            ]
        case IndexHealth():
            return [("loaded from", info.loaded_from), ("load time", f"{info.load_s:.3g} s")]
        case ModelHealth():
            out = [("loaded", _yes(info.loaded))]
            if info.dim is not None:
                out.append(("dimensions", str(info.dim)))
            return out
        case BreakerSnapshot():
            rows = [("runs on", info.backend)] if info.backend else []
            return [
                *rows,
                ("state", STATE_WORDS.get(info.state.value, info.state.value)),
                ("failures in a row", str(info.consecutive_failures)),
                ("calls", f"{info.successes} ok, {info.failures} failed"),
            ]
        case CacheHealth():
            return [("backend", info.active_backend), ("fallback", _yes(info.fallback_active))]
        case WatcherHealth():
            return [("folders", ", ".join(info.folders)), ("re-scans", str(info.batches))]
        case RateLimitHealth():
            return [("kept in", info.backend), ("fallback", _yes(info.fallback_active))]
        case _:
            return []


def component_details(c: ComponentHealth, skip: Sequence[str] = ()) -> str:
    """``detail; label: value; ...`` for the component list (``skip`` names labels to omit)."""
    items = [f"{k}: {v}" for k, v in facts(c.info) if k not in skip]
    return "; ".join([c.detail, *items] if c.detail else items)


# --------------------------------------------------------------------------- cache


LAYER_NAMES = {"embedding": "Question embeddings", "result": "Answers"}


def _ms(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 1:
        return f"{v:.2f} ms"
    if v < 10:
        return f"{v:.1f} ms"
    return f"{v:.0f} ms"


def layer_line(name: str, m: LayerMetrics) -> str:
    """``Answers: hit rate 75% (3 of 4 lookups) · hit latency p50 1.2 ms, p95 3.4 ms``."""
    label = LAYER_NAMES.get(name, name)
    if not m.lookups:
        return f"{label}: no lookups yet"
    line = f"{label}: hit rate {m.hit_rate:.0%} ({m.hits} of {m.lookups} lookups)"
    if m.hit_p50_ms is not None or m.hit_p95_ms is not None:
        line += f" · hit latency p50 {_ms(m.hit_p50_ms)}, p95 {_ms(m.hit_p95_ms)}"
    return line


def _backend_lines(component: ComponentHealth, cache: CacheHealth) -> list[StatusLine]:
    lines: list[StatusLine] = []
    words = {"redis": "Redis", "embedded": "embedded (a file on this computer)"}
    lines.append(StatusLine(f"Backend: {words.get(cache.active_backend, cache.active_backend)}"))
    if cache.fallback_active:
        when = (
            f"; trying Redis again in {cache.retry_in_s:.0f} s"
            if cache.retry_in_s > 0
            else "; trying Redis again on the next request"
        )
        text = f"Fallback: active — Redis is unreachable, the embedded cache is in use{when}"
        lines.append(StatusLine(text, "degraded"))
    elif cache.active_backend == "redis":
        lines.append(StatusLine("Fallback: not needed — Redis is reachable", "ok"))
    else:
        lines.append(StatusLine("Fallback: not in use (no Redis configured)"))
    if component.status not in ("ok", "disabled") and not cache.fallback_active:
        lines.append(
            StatusLine(f"Status: {component.status} — {component.detail}", component.status)
        )
    return lines


def _metrics_lines(cache: CacheHealth) -> list[StatusLine]:
    m = cache.metrics
    if m is None:
        return []
    lines = [StatusLine(layer_line(name, layer)) for name, layer in m.layers.items()]
    entries = f"{m.entries} cached entr{'y' if m.entries == 1 else 'ies'}"
    lines.append(
        StatusLine(f"{entries} · {m.evictions} evicted (wrong, outdated or over the size limit)")
    )
    refused = {k: v for k, v in m.guard_refusals.items() if v}
    if refused:
        why = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in refused.items())
        lines.append(StatusLine(f"Not cached (guard): {why}"))
    return lines


def cache_view(health: Health, stats: StatsSnapshot | None = None) -> list[StatusLine]:
    """Backend, fallback (coloured and in words), per-layer hit rate and hit latency."""
    snap = _snapshot(health)
    lines: list[StatusLine] = []
    component = snap.component(CACHE)
    if component is not None and component.status == "disabled":
        lines.append(StatusLine("The answer cache is turned off (Settings → Cache).", "disabled"))
    cache = snap.cache
    if component is not None and cache is not None:
        lines += _backend_lines(component, cache)
        lines += _metrics_lines(cache)
    by_layer = counts(stats, "by_cache_layer")
    if by_layer:
        text = ", ".join(f"{k} {v}" for k, v in by_layer.items())
        lines.append(StatusLine(f"Answers by cache layer: {text}"))
    return lines


def cache_lines(health: Health, stats: StatsSnapshot | None = None) -> list[str]:
    """``cache_view`` as plain text."""
    return [line.text for line in cache_view(health, stats)]


# --------------------------------------------------------------------------- watcher


def watcher_view(health: Health) -> list[StatusLine]:
    """The watched folders and whether they are followed."""
    snap = _snapshot(health)
    component = snap.component(WATCHER)
    if component is None:
        return []
    w = snap.watcher
    if component.status == "disabled" or w is None or not w.folders:
        return [StatusLine("No folder is watched. Add one in Settings → Watched folders.")]
    lines = []
    if component.status == "ok":
        lines.append(StatusLine("Following changes in:", "ok"))
    else:
        error = w.last_error or component.detail
        lines.append(StatusLine(f"Not following changes: {error}", component.status))
    lines += [StatusLine(f"  {f}") for f in w.folders]
    lines.append(StatusLine(f"{w.batches} re-scan{'s' if w.batches != 1 else ''} so far"))
    return lines


# --------------------------------------------------------------------------- status bar


def status_summary(snap: HealthSnapshot) -> str:
    """``ok · 4 documents · 12 passages`` for the window's status bar."""
    db = snap.database
    index = snap.search_index
    documents = db.counts.documents if db is not None else 0
    passages = index.chunks if index is not None else 0
    return f"{snap.status} · {documents} documents · {passages} passages"


APP_TITLE = "Archivist"


def ingest_fraction(done: int, total: int, bytes_done: int = 0, bytes_total: int = 0) -> float:
    """How far an ingestion is, 0..1: by bytes when known (files differ in size), else files."""
    if bytes_total > 0:
        return min(1.0, max(0.0, bytes_done / bytes_total))
    return min(1.0, done / total) if total > 0 else 0.0


def progress_title(fraction: float | None, phase: str = "ingesting") -> str:
    """The window title, with the ingestion's progress while one runs.

    Qt has no taskbar progress on Linux/X11, so the title carries it (a taskbar
    shows the title): "Archivist — ingesting 45%", then "Archivist — embedding
    45%" while vectors are filled in behind keyword search.
    """
    if fraction is None:
        return APP_TITLE
    return f"{APP_TITLE} — {phase} {round(fraction * 100)}%"


def fill_text(done: int, total: int, eta: str) -> str:
    """The library panel's line while vectors are filled in behind keyword search."""
    return (
        f"Every file is searchable by its words. Search by meaning: {done} of {total} "
        f"passages, {eta}. Answers until then say the search is partial."
    )


def ingest_done_message(summary: Mapping[str, int], elapsed_s: float) -> str:
    """One sentence for the "ingestion finished" notification."""
    counts = ", ".join(f"{n} {k}" for k, n in summary.items() if n)
    minutes, seconds = divmod(round(elapsed_s), 60)
    took = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    return f"Finished adding documents in {took}: {counts or 'nothing to add'}."
