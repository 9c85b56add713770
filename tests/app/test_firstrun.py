"""app/firstrun.py and the progress title: the first run's decisions, without Qt."""

from __future__ import annotations

from pathlib import Path

from app import statusview as sv
from app.firstrun import (
    LocalModelInfo,
    ServerChoice,
    form_for_choice,
    form_with_watched,
    ingested_paths,
    local_model_info,
    mark_done,
    models_url,
    needs_welcome,
    question_from_headings,
    question_from_name,
)
from app.settings_file import ProviderRow, SettingsForm
from core.types import AuditEvent, FileOutcome, FileStatus, IngestReport

FORM = SettingsForm(
    providers=(ProviderRow("old", "openai", "http://old/v1"),),
    redis_url="",
    cache_enabled=True,
    embedding_ttl_s=1.0,
    result_ttl_s=1.0,
    similarity_threshold=0.9,
    top_k=5,
    reranker_on=False,
    reranker_model="",
    watched_folders=("/a",),
)


def test_welcome_only_on_an_empty_knowledge_base_before_the_mark(tmp_path: Path) -> None:
    assert needs_welcome(tmp_path, 0)
    assert not needs_welcome(tmp_path, 3)
    mark_done(tmp_path / "new-home")
    assert not needs_welcome(tmp_path / "new-home", 0)


def test_each_choice_replaces_only_the_providers() -> None:
    assert form_for_choice(FORM, "local", None).providers == ()
    quotes = form_for_choice(FORM, "quotes", None)
    assert [(p.name, p.kind) for p in quotes.providers] == [("quotes", "extractive")]
    server = form_for_choice(FORM, "server", ServerChoice(" http://h:1/v1 ", "m", "KEY"))
    assert server.providers == (ProviderRow("server", "openai", "http://h:1/v1", "m", "KEY"),)
    assert server.watched_folders == FORM.watched_folders and server.top_k == FORM.top_k


def test_a_server_without_an_address_is_refused() -> None:
    try:
        form_for_choice(FORM, "server", ServerChoice("  "))
    except ValueError as exc:
        assert "URL" in str(exc)
    else:
        raise AssertionError("an empty server address was accepted")


def test_watched_folders_are_added_once_in_order() -> None:
    assert form_with_watched(FORM, ["/b", "/a", "/b"]).watched_folders == ("/a", "/b")


def test_models_url_adds_v1_when_missing() -> None:
    assert models_url("http://h:8080") == "http://h:8080/v1/models"
    assert models_url("http://h:8080/v1/") == "http://h:8080/v1/models"


def test_a_sub_heading_makes_the_question_else_the_title_else_the_file_name() -> None:
    paths = [("Guide",), ("Guide", "Setting up"), ("Guide", "Backups")]
    assert question_from_headings(paths) == "What do my documents say about “Setting up”?"
    assert question_from_headings([("Guide",), ()]) == "What do my documents say about “Guide”?"
    # Too short, too long or without letters: not a topic.
    assert question_from_headings([("1.2",), ("x" * 80,), ()]) is None
    assert question_from_name("/docs/minutes.pdf") == "What is minutes.pdf about?"


def test_ingested_paths_keep_documents_with_passages_in_order() -> None:
    report = IngestReport(
        (
            FileOutcome("/d/b.md", FileStatus.ADDED, 3),
            FileOutcome("/d/bad.pdf", FileStatus.FAILED, 0, "broken"),
            FileOutcome("/d/a.txt", FileStatus.UNCHANGED, 1),
            FileOutcome("/d/empty.txt", FileStatus.ADDED, 0),
        ),
        1.0,
    )
    assert ingested_paths([report, report]) == ["/d/b.md", "/d/a.txt"]


def test_local_model_figures_come_from_its_file_and_its_answers_here(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"\0" * 2_000_000)
    events = [
        AuditEvent(1.0, "ask", "ok", provider="local", latency_ms=4000.0),
        AuditEvent(2.0, "ask", "ok", provider="local", latency_ms=8000.0),
        AuditEvent(3.0, "ask", "ok", provider="extractive", latency_ms=5.0),
        AuditEvent(4.0, "ingest", "ok", latency_ms=90000.0),
    ]
    info = local_model_info(True, tmp_path, events)
    assert info == LocalModelInfo(True, "model.gguf", 2_000_000, 6.0)
    assert info.describe() == "model.gguf · 2 MB · about 6 s per answer here"
    unmeasured = local_model_info(True, tmp_path, [])
    assert unmeasured.describe().endswith("speed on this computer not measured yet")
    unused = local_model_info(False, tmp_path, events)  # a server answers instead
    assert unused.choosable and "not in use" in unused.describe()
    missing = local_model_info(False, tmp_path / "none", events)
    assert not missing.choosable and "Not installed" in missing.describe()


def test_progress_in_the_title_by_bytes_when_known() -> None:
    assert sv.progress_title(None) == "Archivist"
    assert sv.progress_title(sv.ingest_fraction(1, 4)) == "Archivist — ingesting 25%"
    assert sv.ingest_fraction(1, 4, 900, 1000) == 0.9
    assert sv.ingest_fraction(0, 0) == 0.0


def test_the_notification_sentence_names_the_counts_and_the_time() -> None:
    message = sv.ingest_done_message({"added": 3, "failed": 1, "unchanged": 0}, 125.2)
    assert message == "Finished adding documents in 2 min 5 s: 3 added, 1 failed."
