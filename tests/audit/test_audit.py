"""The audit log writer and its SQL statistics, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from core.audit import (
    AuditEvent,
    AuditLog,
    AuditStats,
    events_to_rows,
    nearest_rank,
    question_hash,
)
from core.db.schema import audit_events

DAY = 86400.0
T0 = 1_700_000_000.0  # a fixed epoch for deterministic data


def count_rows(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        total, distinct = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(audit_events.c.request_id)))
        ).one()
    return int(total), int(distinct)


async def test_concurrent_writers_store_every_event_exactly_once(engine: sa.Engine) -> None:
    writers, per_writer = 8, 250
    log = AuditLog(engine, batch_size=50, flush_interval_s=0.01)
    await log.start()

    async def writer(w: int) -> None:
        for i in range(per_writer):
            log.record(AuditEvent(ts=T0 + i, action="ask", outcome="ok", request_id=f"{w}-{i}"))
            if i % 7 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(writer(w) for w in range(writers)))
    await log.flush()
    assert count_rows(engine) == (writers * per_writer, writers * per_writer)
    assert log.written == writers * per_writer
    assert log.dropped == 0
    await log.aclose()


async def test_two_logs_on_one_database_both_land_every_event(engine: sa.Engine) -> None:
    """Two processes' writers would be two AuditLogs: their batches interleave safely."""
    a = AuditLog(engine, batch_size=20, flush_interval_s=0.0)
    b = AuditLog(engine, batch_size=20, flush_interval_s=0.0)
    await a.start()
    await b.start()
    for i in range(300):
        a.record(AuditEvent(ts=T0, action="ingest", outcome="ok", request_id=f"a{i}"))
        b.record(AuditEvent(ts=T0, action="ingest", outcome="ok", request_id=f"b{i}"))
    await asyncio.gather(a.aclose(), b.aclose())
    assert count_rows(engine) == (600, 600)


async def test_aclose_flushes_everything_recorded(sqlite_engine: sa.Engine) -> None:
    log = AuditLog(sqlite_engine, batch_size=64, flush_interval_s=5.0)
    await log.start()
    for i in range(1000):
        log.record(AuditEvent(ts=T0, action="ask", outcome="ok", request_id=str(i)))
    await log.aclose()
    assert count_rows(sqlite_engine) == (1000, 1000)
    assert not log.running


async def test_flush_returns_only_after_commit_even_with_a_long_interval(
    sqlite_engine: sa.Engine,
) -> None:
    log = AuditLog(sqlite_engine, batch_size=1000, flush_interval_s=60.0)
    await log.start()
    log.record(AuditEvent(ts=T0, action="setting", outcome="ok", request_id="x"))
    await asyncio.wait_for(log.flush(), timeout=10)
    assert count_rows(sqlite_engine) == (1, 1)
    await log.aclose()


async def test_events_recorded_before_start_are_written(sqlite_engine: sa.Engine) -> None:
    log = AuditLog(sqlite_engine)
    log.record(AuditEvent(ts=T0, action="ask", outcome="ok", request_id="early"))
    await log.start()
    await log.aclose()
    assert count_rows(sqlite_engine) == (1, 1)


async def test_privacy_mode_stores_only_the_question_hash(sqlite_engine: sa.Engine) -> None:
    log = AuditLog(sqlite_engine, log_questions=False)
    await log.start()
    log.record(AuditEvent(ts=T0, action="ask", outcome="ok", question="What is  WAL mode?"))
    await log.aclose()
    with sqlite_engine.connect() as conn:
        row = conn.execute(sa.select(audit_events)).mappings().one()
    assert row["question"] is None
    assert row["question_hash"] == question_hash("what is wal mode?")
    assert row["day"] == int(T0 // DAY)


async def test_questions_are_kept_when_logging_them_is_on(sqlite_engine: sa.Engine) -> None:
    log = AuditLog(sqlite_engine, log_questions=True)
    await log.start()
    log.record(AuditEvent(ts=T0, action="ask", outcome="ok", question="Why?", detail={"k": {1, 2}}))
    await log.aclose()
    with sqlite_engine.connect() as conn:
        row = conn.execute(sa.select(audit_events)).mappings().one()
    assert row["question"] == "Why?"
    assert row["detail"] == {"k": "{1, 2}"}  # not JSON: stored as text, never a failed batch


def _fail_inserts(engine: sa.Engine, times: int) -> list[int]:
    """Make the next ``times`` INSERTs into audit_events fail like a locked database."""
    calls = [0]

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO audit_events") and calls[0] < times:
            calls[0] += 1
            raise sa.exc.OperationalError(statement, None, Exception("database is locked"))

    sa.event.listen(engine, "before_cursor_execute", before)
    return calls


async def test_a_failing_batch_is_retried_once(
    sqlite_engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _fail_inserts(sqlite_engine, times=1)
    log = AuditLog(sqlite_engine)
    await log.start()
    for i in range(10):
        log.record(AuditEvent(ts=T0, action="ask", outcome="ok", request_id=str(i)))
    with caplog.at_level(logging.WARNING, logger="core.audit"):
        await log.aclose()
    assert calls[0] == 1
    assert count_rows(sqlite_engine) == (10, 10)
    assert "retrying" in caplog.text


async def test_a_batch_failing_twice_is_logged_and_dropped_and_the_writer_goes_on(
    sqlite_engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    _fail_inserts(sqlite_engine, times=2)
    log = AuditLog(sqlite_engine)
    await log.start()
    with caplog.at_level(logging.WARNING, logger="core.audit"):
        for i in range(5):
            log.record(AuditEvent(ts=T0, action="ask", outcome="ok", request_id=f"lost{i}"))
        await log.flush()
        log.record(AuditEvent(ts=T0, action="ask", outcome="ok", request_id="kept"))
        await log.aclose()
    assert log.dropped == 5
    assert count_rows(sqlite_engine) == (1, 1)
    assert "dropped" in caplog.text


async def test_record_after_close_is_counted_as_dropped_not_raised(
    sqlite_engine: sa.Engine,
) -> None:
    log = AuditLog(sqlite_engine)
    await log.start()
    await log.aclose()
    log.record(AuditEvent(ts=T0, action="ask", outcome="ok"))
    assert log.dropped == 1


# --------------------------------------------------------------------------- statistics


def sample_events(n: int = 700, seed: int = 3) -> list[AuditEvent]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        ts = T0 + rng.uniform(0, 10 * DAY)
        action = rng.choice(["ask", "ask", "ask", "ingest", "setting", "breaker"])
        ask = action == "ask"
        events.append(
            AuditEvent(
                ts=ts,
                action=action,
                outcome=rng.choice(["ok", "ok", "degraded", "failed"]),
                request_id=f"r{i}",
                session=f"s{i % 5}",
                provider=rng.choice(["openai", "llama", None]) if ask else None,
                cache_layer=rng.choice(["miss", "result", "embedding"]) if ask else None,
                latency_ms=(round(rng.uniform(5, 3000), 3) if ask and rng.random() < 0.9 else None),
                question=f"question {i}" if ask else None,
            )
        )
    return events


def seed_rows(engine: sa.Engine, events: list[AuditEvent]) -> None:
    with engine.begin() as conn:
        conn.execute(audit_events.insert(), events_to_rows(events))


WINDOWS = [
    (None, None),
    (T0 + 2 * DAY, T0 + 7.5 * DAY),  # wide: latency read in index order
    (T0 + 3.25 * DAY, T0 + 3.5 * DAY),  # narrow (<4% of the span): latency window sorted
    (T0 + 3.25 * DAY, T0 + 4 * DAY),
    (T0 + 5 * DAY, None),
    (None, T0 + 1 * DAY),
    (T0 + 20 * DAY, T0 + 21 * DAY),  # empty
]


def brute_force(events: list[AuditEvent], since: float | None, until: float | None) -> Any:
    inside = [
        e for e in events if (since is None or e.ts >= since) and (until is None or e.ts < until)
    ]
    lat = sorted(e.latency_ms for e in inside if e.action == "ask" and e.latency_ms is not None)
    return {
        "action": Counter(e.action for e in inside),
        "outcome": Counter(e.outcome for e in inside),
        "provider": Counter(e.provider for e in inside),
        "cache_layer": Counter(e.cache_layer for e in inside),
        "day": Counter(int(e.ts // DAY) for e in inside),
        "lat": {p: (lat[nearest_rank(p, len(lat)) - 1] if lat else None) for p in (50, 95, 99)},
        "n_lat": len(lat),
    }


@pytest.mark.parametrize("window", WINDOWS)
def test_statistics_equal_a_brute_force_computation(
    engine: sa.Engine, window: tuple[float | None, float | None]
) -> None:
    events = sample_events()
    seed_rows(engine, events)
    since, until = window
    expected = brute_force(events, since, until)
    stats = AuditStats(engine)
    for column in ("action", "outcome", "provider", "cache_layer"):
        assert stats.counts_by(column, since, until) == dict(expected[column]), column
    assert stats.counts_per_day(since, until) == dict(expected["day"])
    latency = stats.latency(since, until)
    assert latency.count == expected["n_lat"]
    assert (latency.p50, latency.p95, latency.p99) == (
        expected["lat"][50],
        expected["lat"][95],
        expected["lat"][99],
    )
    summary = stats.summary(since, until)
    assert summary.total == sum(expected["action"].values())
    assert summary.by_provider.get(None, 0) == expected["provider"][None]
    assert summary.ask_latency_ms == latency
    assert sum(summary.per_day.values()) == summary.total


def test_last_events_are_the_newest_first(engine: sa.Engine) -> None:
    events = sample_events(200)
    seed_rows(engine, events)
    got = AuditStats(engine).last_events(15)
    newest = sorted(events, key=lambda e: e.ts, reverse=True)[:15]
    assert [e.request_id for e in got] == [e.request_id for e in newest]
    assert got[0].question == newest[0].question


def test_summary_is_typed_and_keeps_its_json_shape(engine: sa.Engine) -> None:
    events = [
        AuditEvent(ts=T0 + 10, action="ask", outcome="ok", provider="local", latency_ms=80.0),
        AuditEvent(ts=T0 + 20, action="ask", outcome="ok", provider="local", latency_ms=120.0),
        AuditEvent(ts=T0 + DAY, action="ingest", outcome="ok"),
        AuditEvent(ts=T0 + DAY + 5, action="setting", outcome="changed", detail={"keys": ["a"]}),
    ]
    seed_rows(engine, events)
    summary = AuditStats(engine).summary(last=2)
    assert summary.total == 4
    assert list(summary.by_action.items()) == [("ask", 2), ("ingest", 1), ("setting", 1)]
    assert summary.by_provider == {None: 2, "local": 2}
    assert summary.ask_latency_ms.count == 2 and summary.ask_latency_ms.p50 == 80.0
    assert summary.per_day == {dt.date(2023, 11, 14): 2, dt.date(2023, 11, 15): 2}
    assert [e.action for e in summary.last_events] == ["setting", "ingest"]
    assert summary.last_events[0].setting_keys == ("a",)
    data = json.loads(json.dumps(summary.to_json()))
    assert data["by_provider"] == {"(none)": 2, "local": 2}
    assert data["per_day"] == {"2023-11-14": 2, "2023-11-15": 2}
    assert data["ask_latency_ms"] == {"count": 2, "p50": 80.0, "p95": 120.0, "p99": 120.0}
    assert data["last_events"][0]["detail"] == {"keys": ["a"]}
    assert set(data) == {
        "since",
        "until",
        "total",
        "by_action",
        "by_outcome",
        "by_provider",
        "by_cache_layer",
        "ask_latency_ms",
        "per_day",
        "last_events",
    }


def test_percentiles_use_the_nearest_rank_definition() -> None:
    assert nearest_rank(50, 10) == 5
    assert nearest_rank(95, 10) == 10
    assert nearest_rank(99, 100) == 99
    assert nearest_rank(50, 1) == 1
    with pytest.raises(ValueError):
        nearest_rank(50, 0)


def test_prune_deletes_only_old_events_in_batches(engine: sa.Engine) -> None:
    now = T0 + 100 * DAY
    old = [AuditEvent(ts=now - 40 * DAY + i, action="ask", outcome="ok") for i in range(23)]
    new = [AuditEvent(ts=now - 5 * DAY + i, action="ask", outcome="ok") for i in range(4)]
    seed_rows(engine, old + new)
    stats = AuditStats(engine, clock=lambda: now)
    assert stats.prune(older_than_days=30, batch=5) == 23
    assert stats.total() == 4
    assert stats.prune(older_than_days=30, batch=5) == 0


# --------------------------------------------------------------------------- query plans

PLAN_PARAMS = {"lo": T0, "hi": T0 + DAY, "action": "ask", "d0": 0, "d1": 10**6, "off": 3}


def plan_problems(lines: list[str]) -> list[str]:
    """Plan lines that read the table or its index in full, or sort with a temp B-tree."""
    bad = []
    for line in lines:
        if "audit_events" in line and not line.startswith("SEARCH"):
            bad.append(line)  # "SCAN audit_events ..." = a full table or index scan
        if "audit_events" in line and "COVERING INDEX" not in line:
            bad.append(line)  # a non-covering plan reads table rows
        if "TEMP B-TREE" in line:
            bad.append(line)
    return bad


@pytest.mark.parametrize("column", ["action", "outcome", "provider", "cache_layer"])
def test_time_window_counts_search_a_covering_index_without_full_scan(
    sqlite_engine: sa.Engine, column: Any
) -> None:
    seed_rows(sqlite_engine, sample_events(300))
    stats = AuditStats(sqlite_engine)
    lines = stats.explain(stats.counts_sql(column), PLAN_PARAMS)
    assert any("INDEX ix_audit_events_" in line and "ts>?" in line for line in lines), lines
    assert plan_problems(lines) == []
    whole_table = stats.explain(stats.counts_sql(column, windowed=False), PLAN_PARAMS)
    assert plan_problems(whole_table) == []


def test_per_day_counts_and_latency_queries_search_covering_indexes(
    sqlite_engine: sa.Engine,
) -> None:
    seed_rows(sqlite_engine, sample_events(300))
    stats = AuditStats(sqlite_engine)
    for sql in (
        stats.per_day_sql(),
        stats.per_day_sql(windowed=False),
        stats.latency_count_sql(),
        stats.latency_count_sql(windowed=False),
        stats.latency_rank_sql(descending=False),
        stats.latency_rank_sql(descending=True),
        stats.latency_rank_sql(descending=True, windowed=False),
    ):
        lines = stats.explain(sql, PLAN_PARAMS)
        assert plan_problems(lines) == [], (sql, lines)
    sorted_plan = stats.explain(stats.latency_sorted_sql().replace(":ranks", "(1, 2)"), PLAN_PARAMS)
    searches = [line for line in sorted_plan if "audit_events" in line]
    assert searches and all(
        line.startswith("SEARCH") and "COVERING INDEX" in line for line in searches
    ), sorted_plan


def test_sqlite_plan_names_the_designed_index_even_after_analyze(
    sqlite_engine: sa.Engine,
) -> None:
    """ANALYZE statistics can tempt the planner to another index; INDEXED BY holds."""
    seed_rows(sqlite_engine, sample_events(700))
    with sqlite_engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    stats = AuditStats(sqlite_engine)
    lines = stats.explain(stats.counts_sql("outcome"), PLAN_PARAMS)
    assert any("ix_audit_events_outcome_ts (outcome=? AND ts>? AND ts<?)" in x for x in lines)
