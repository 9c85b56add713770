"""The window's pure helpers: safe Markdown, the status view of typed snapshots, the TOML writer."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

from app import statusview as sv
from app.render import TurnActions, markdown_html, turn_html
from app.settings_file import (
    changed_keys,
    dump_toml,
    form_from_settings,
    merged_config,
    save_form,
)
from core.config import load_settings
from core.conversations import Explanation, Turn
from core.errors import ConfigError
from core.types import (
    AuditEvent,
    AuditSummary,
    CacheHealth,
    CacheMetrics,
    ComponentHealth,
    DatabaseHealth,
    HealthSnapshot,
    IndexHealth,
    KnowledgeBaseCounts,
    LatencyStats,
    LayerMetrics,
    SessionStats,
    StatsSnapshot,
    WatcherHealth,
)


def test_markdown_escapes_html_and_keeps_the_subset() -> None:
    out = markdown_html("**bold** <b>raw</b> *it* `x<y`\n\n- one\n- two [1]", turn=3, markers={1})
    assert "<b>bold</b>" in out and "&lt;b&gt;raw&lt;/b&gt;" in out
    assert "<i>it</i>" in out and "<code>x&lt;y</code>" in out
    assert '<ul><li>one</li><li>two <a href="cite:3:1">[1]</a></li></ul>' in out


def test_markdown_never_makes_images_or_unsafe_links() -> None:
    out = markdown_html("![logo](http://x/y.png) [click](javascript:alert(1)) [ok](https://a.b/c)")
    assert "<img" not in out and "[image: logo]" in out
    assert 'href="javascript' not in out
    assert '<a href="https://a.b/c">ok</a> <small>(https://a.b/c)</small>' in out


def test_unknown_citation_markers_stay_plain_text() -> None:
    assert "href" not in markdown_html("see [7]", turn=0, markers={1})


KB = KnowledgeBaseCounts(documents=4, chunks=12, quarantined=1, size_bytes=2048, embeddings=12)


def _stats(audit: AuditSummary | None = None, asks: int = 3) -> StatsSnapshot:
    return StatsSnapshot(KB, {"text": 4}, 7, SessionStats(asks=asks, uptime_s=9.0), audit)


def _audit() -> AuditSummary:
    return AuditSummary(
        since=None,
        until=None,
        total=6,
        by_action={"ask": 6},
        by_outcome={"ok": 5, "degraded": 1},
        by_provider={None: 2, "local": 4},
        by_cache_layer={"miss": 3, "result": 1, None: 2},
        ask_latency_ms=LatencyStats(6, 120.0, 900.0, 950.0),
        per_day={dt.date(2025, 1, 2): 6},
        last_events=(AuditEvent(ts=1.0, action="ask", outcome="ok", latency_ms=12.0),),
    )


def test_status_view_leaves_out_what_core_did_not_report() -> None:
    assert sv.latency(None) == (None, None)
    no_audit = _stats(audit=None)
    assert sv.latency(no_audit) == (None, None)
    assert sv.counts(no_audit, "by_outcome") == {}
    assert sv.recent_events(no_audit) == []
    assert sv.per_day_chart(no_audit).labels == []
    assert sv.cache_lines([], no_audit) == []
    assert sv.totals_text(no_audit) == "3 question(s) this session; the audit log is not available."
    assert sv.totals_text(None) == "No request statistics available."
    assert sv.latency_text(None) == "Answer latency: p50 — · p95 —"


def test_status_view_reads_the_audit_summary_by_attribute() -> None:
    stats = _stats(_audit())
    assert sv.latency(stats) == (120.0, 900.0)
    assert sv.latency_text(stats) == "Answer latency: p50 120 ms · p95 900 ms"
    assert sv.counts(stats, "by_outcome") == {"ok": 5, "degraded": 1}
    assert sv.counts(stats, "by_provider") == {"local": 4}  # events without a provider: no bar
    assert sv.totals_text(stats) == "By outcome: ok 5, degraded 1\nBy provider: local 4"
    assert "ask  ok  12 ms" in sv.event_line(sv.recent_events(stats)[0])
    assert sv.per_day_chart(stats) == sv.ChartData(["01-02"], {"requests": [6.0]})
    assert sv.provider_chart(stats) == sv.ChartData(["local"], {"requests": [4.0]})
    lines = sv.cache_lines([_cache_component(True, "embedded", layers=(3, 1))], stats)
    assert "Backend: embedded (a file on this computer)" in lines
    assert any("Fallback: active" in line for line in lines)
    assert "Answers: hit rate 75% (3 of 4 lookups) · hit latency p50 0.42 ms, p95 13 ms" in lines
    assert "Answers by cache layer: miss 3, result 1" in lines


def test_component_details_render_the_typed_figures() -> None:
    db = DatabaseHealth("sqlite", "sqlite:///x.db", "0002", KB)
    c = ComponentHealth("database", "ok", "sqlite", info=db)
    assert sv.component_details(c) == (
        "sqlite; url: sqlite:///x.db; schema: 0002; documents: 4; passages: 12; "
        "quarantined: 1; size: 2.0 kB; embeddings: 12"
    )
    assert "url" not in sv.component_details(c, skip=("url",))
    assert c.to_json()["documents"] == 4 and c.to_json()["bytes"] == 2048  # the --json shape
    index = ComponentHealth(
        "search_index", "ok", "12 chunks", info=IndexHealth(12, 0, "disk", 0.02)
    )
    assert sv.component_details(index) == "12 chunks; loaded from: disk; load time: 0.02 s"
    assert sv.component_details(ComponentHealth("reranker", "disabled", "off")) == "off"
    snap = HealthSnapshot("ok", (c, index), 0.0)
    assert snap.database == db and snap.search_index is not None and snap.cache is None
    assert sv.status_summary(snap) == "ok · 4 documents · 12 passages"


def test_outcome_history_charts_differences_between_refreshes() -> None:
    h = sv.OutcomeHistory()
    h.add({"ok": 2}, 0.0)
    h.add({"ok": 5, "failed": 1}, 3.0)
    chart = h.chart()
    assert chart.series == {"ok": [0.0, 3.0], "failed": [0.0, 1.0]}


def test_toml_writer_round_trips() -> None:
    data = {
        "redis_url": "redis://x",
        "watched_folders": ['/a "b"', "c\\d"],
        "cache": {"enabled": True, "similarity_threshold": 0.9},
        "providers": [{"name": "p", "kind": "openai", "breaker": {"failure_threshold": 2}}],
    }
    assert tomllib.loads(dump_toml(data)) == data


def test_saving_keeps_unknown_to_the_dialog_keys_and_reports_bad_ones(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / "archivist.toml").write_text('[ingest]\nembed = false\n[logging]\nlevel = "DEBUG"\n')
    settings = load_settings()
    form = form_from_settings(settings)
    bad = form.__class__(**{**form.__dict__, "similarity_threshold": 0.2})
    with pytest.raises(ConfigError) as info:
        save_form(settings, bad)
    assert "cache.similarity_threshold" in str(info.value)
    assert str(home / "archivist.toml") in str(info.value)
    assert sorted(p.name for p in home.iterdir()) == ["archivist.toml"]  # no temp file left
    good = form.__class__(**{**form.__dict__, "watched_folders": ("/srv/notes",)})
    result = save_form(settings, good)
    saved = tomllib.loads((home / "archivist.toml").read_text())
    assert saved["ingest"] == {"embed": False} and saved["logging"] == {"level": "DEBUG"}
    assert saved["watched_folders"] == ["/srv/notes"]
    assert result.changed == ("watched_folders",)
    assert result.notes == ()  # the bridge adds what watching did once it applied it
    assert merged_config({}, form)["retrieval"]["reranker"] == ""


def _cache_component(
    fallback: bool, backend: str, retry: float = 0.0, layers: tuple[int, int] = (1, 3)
) -> ComponentHealth:
    hits, misses = layers
    metrics = CacheMetrics(
        layers={
            "embedding": LayerMetrics(0, 0, None, None),
            "result": LayerMetrics(hits, misses, 0.42, 12.6),
        },
        entries=3,
        evictions=1,
        guard_refusals={"too_short": 2, "names_differ": 0},
    )
    health = CacheHealth(
        enabled=True,
        active_backend=backend,
        fallback_active=fallback,
        breaker_state="open" if fallback else "closed",
        last_error="connection refused" if fallback else None,
        retry_in_s=retry,
        metrics=metrics,
    )
    return health.to_component()


def test_cache_view_names_the_backend_and_colours_an_active_fallback() -> None:
    view = sv.cache_view([_cache_component(True, "embedded", retry=12.4)])
    fallback = [line for line in view if line.text.startswith("Fallback")]
    assert len(fallback) == 1 and fallback[0].status == "degraded"
    assert "Redis is unreachable" in fallback[0].text and "again in 12 s" in fallback[0].text
    view = sv.cache_view(HealthSnapshot("ok", (_cache_component(False, "redis"),), 0.0))
    assert sv.StatusLine("Backend: Redis") in view
    assert sv.StatusLine("Fallback: not needed — Redis is reachable", "ok") in view


def test_cache_view_gives_each_layer_its_hit_rate_and_hit_latency() -> None:
    lines = sv.cache_lines([_cache_component(False, "embedded")])
    assert "Question embeddings: no lookups yet" in lines
    assert "Answers: hit rate 25% (1 of 4 lookups) · hit latency p50 0.42 ms, p95 13 ms" in lines
    assert any(line.startswith("3 cached entries · 1 evicted") for line in lines)
    assert "Not cached (guard): too short 2" in lines


def test_watcher_view_lists_the_folders_or_says_none_is_watched() -> None:
    info = WatcherHealth(folders=("/srv/notes",), batches=2, running=True, last_error=None)
    on = ComponentHealth("watcher", "ok", "1 folder(s)", info=info)
    assert [line.text for line in sv.watcher_view([on])] == [
        "Following changes in:",
        "  /srv/notes",
        "2 re-scans so far",
    ]
    off = ComponentHealth("watcher", "disabled", "no watched folders")
    assert "No folder is watched" in sv.watcher_view([off])[0].text
    broken = WatcherHealth(("/srv/notes",), 0, running=False, last_error="inotify limit")
    down = ComponentHealth("watcher", "degraded", "1 folder(s)", info=broken)
    first = sv.watcher_view(HealthSnapshot("degraded", (down,), 0.0))[0]
    assert first == sv.StatusLine("Not following changes: inotify limit", "degraded")


def test_setting_events_show_the_changed_keys() -> None:
    line = sv.event_line(
        AuditEvent(ts=0.0, action="setting", outcome="changed", detail={"keys": ["a", "b"]})
    )
    assert line.endswith("setting  changed  a, b")


def test_changed_keys_name_only_what_changed(home: Path) -> None:
    form = form_from_settings(load_settings())
    same = form.__class__(**{**form.__dict__, "reranker_model": "other"})  # reranker is off
    assert changed_keys(form, same) == ()
    new = form.__class__(**{**form.__dict__, "top_k": form.top_k + 1, "redis_url": "redis://x"})
    assert changed_keys(form, new) == ("redis_url", "retrieval.top_k")


def test_a_cached_answer_says_which_question_it_matched_and_offers_its_actions() -> None:
    why = Explanation(
        provider="extractive",
        cache="result",
        degraded=False,
        cache_question="When was the lighthouse <built>?",
        cache_similarity=0.9712,
    )
    turn = Turn("when was it built", "In 1874.", 0.0, explanation=why)
    out = turn_html(2, turn, TurnActions(wrong=True, regenerate=True))
    assert "from the cache — matched “When was the lighthouse &lt;built&gt;?” at 0.97" in out
    assert '<a href="wrong:2">This answer is wrong</a>' in out
    assert '<a href="regen:2">Regenerate with another model</a>' in out
    plain = turn_html(2, turn, TurnActions(note="Removed from the cache."))
    assert "wrong:2" not in plain and "Removed from the cache." in plain
