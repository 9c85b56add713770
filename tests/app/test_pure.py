"""The window's pure helpers: safe Markdown, tolerant status reading, the TOML writer."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from app import statusview as sv
from app.render import markdown_html
from app.settings_file import dump_toml, form_from_settings, merged_config, save_form
from core.config import load_settings
from core.errors import ConfigError
from core.types import ComponentHealth


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


def test_status_reading_degrades_when_keys_are_missing() -> None:
    assert sv.latency({}) == (None, None)
    assert sv.counts({"session": {"asks": 3}}, "by_outcome") == {}
    assert sv.recent_events({}) == []
    assert sv.cache_lines([], {}) == []


def test_status_reading_finds_audit_and_cache_keys_anywhere() -> None:
    stats = {
        "audit": {
            "ask_latency_ms": {"p50": 120.0, "p95": 900.0},
            "by_outcome": {"ok": 5, "degraded": 1},
            "per_day": {"2025-01-02": 6},
            "last_events": [{"ts": 1.0, "action": "ask", "outcome": "ok", "latency_ms": 12.0}],
        },
        "cache": {"layers": {"result": {"hits": 3, "misses": 1}}},
    }
    cache = ComponentHealth(
        "cache", "degraded", "Redis down", {"backend": "embedded", "fallback": True}
    )
    assert sv.latency(stats) == (120.0, 900.0)
    assert sv.counts(stats, "by_outcome") == {"ok": 5, "degraded": 1}
    assert "ask  ok  12 ms" in sv.event_line(sv.recent_events(stats)[0])
    lines = sv.cache_lines([cache], stats)
    assert "Backend: embedded" in lines
    assert any("Fallback: active" in line for line in lines)
    assert "result layer: hit rate 75% (3 of 4)" in lines
    assert sv.per_day_chart(stats).labels == ["01-02"]


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
    assert result.notes and "not active" in result.notes[0]
    assert merged_config({}, form)["retrieval"]["reranker"] == ""


def test_signal_emit_does_not_leak_references_to_true(qapp: object) -> None:
    from PySide6.QtCore import QObject, Signal

    import app.bridge  # installs the fix

    assert app.bridge.install_emit_refcount_fix() in (True, False)

    class Emitter(QObject):
        fired = Signal(object)

    e = Emitter()
    got: list[object] = []
    e.fired.connect(got.append)
    before = sys.getrefcount(True)
    for i in range(3000):
        e.fired.emit(i)
    assert len(got) == 3000
    assert before - sys.getrefcount(True) < 10
