"""The audit log: what happened, when, and how it went; statistics by aggregation.

Two halves:

* ``AuditLog`` is the single writer. ``record(event)`` never blocks and never
  raises: the event joins an ``asyncio.Queue`` and one writer task inserts up to
  ``batch_size`` events per transaction in a worker thread (the engine is the
  process's one sync engine, owned by ``Services``; we never create or dispose it).
  ``flush()`` waits until everything recorded so far is committed.

* ``AuditStats`` answers the questions the GUI and the CLI ask (counts by action,
  outcome, provider and cache layer over a time window, latency percentiles,
  per-day counts, the last events) with SQL aggregates, never by loading rows.
  Its methods are synchronous: call them through ``asyncio.to_thread``.

Index design (see ``AUDIT_INDEXES``): every "count by column X over [since, until)"
is a *loose index scan* on an ``(X, ts)`` index: a recursive CTE walks the distinct
values of X by index seeks, and for each value a correlated ``COUNT(*)`` reads
only the index entries inside the window. The cost is O(distinct·log n + rows in
the window) and no sorter is needed, whatever the window. On SQLite the queries
name their index with ``INDEXED BY`` because its planner, without ``ANALYZE``
statistics, may otherwise prefer a full scan of the ``ts`` index plus a temp
B-tree for the GROUP BY.

Usage::

    log = AuditLog(engine, log_questions=settings.logging.log_questions)
    await log.start()
    log.record(AuditEvent(ts=time.time(), action="ask", outcome="ok", latency_ms=812.0))
    ...
    await log.aclose()
    summary = await asyncio.to_thread(AuditStats(engine).summary, since, until)
    summary.total, summary.ask_latency_ms.p95  # a typed AuditSummary (core.types)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import sqlalchemy as sa

from core.db.schema import AUDIT_INDEXES, audit_events
from core.types import AuditEvent as AuditEvent
from core.types import AuditSummary as AuditSummary
from core.types import LatencyStats as LatencyStats

log = logging.getLogger(__name__)

SECONDS_PER_DAY: Final = 86400
# Far-future bound for an open-ended window (a float both SQLite and PostgreSQL bind).
_FAR_FUTURE: Final = 1.0e15
_INT4_MAX: Final = 2**31 - 1

GroupColumn = Literal["action", "outcome", "provider", "cache_layer"]
GROUP_COLUMNS: Final[tuple[GroupColumn, ...]] = ("action", "outcome", "provider", "cache_layer")


# --------------------------------------------------------------------------- events


def question_hash(text: str) -> str:
    """A stable SHA-256 of a question, insensitive to case and spacing.

    Lets statistics count repeated questions even when ``log_questions`` is off.
    """
    canonical = " ".join(text.split()).casefold()
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _jsonable(detail: Mapping[str, Any]) -> dict[str, Any] | None:
    """Round-trip through JSON so one odd value can never poison a whole batch."""
    if not detail:
        return None
    loaded: dict[str, Any] = json.loads(json.dumps(dict(detail), default=str))
    return loaded


def _to_row(event: AuditEvent, *, log_questions: bool) -> dict[str, Any]:
    qhash = event.question_hash
    if qhash is None and event.question is not None:
        qhash = question_hash(event.question)
    return {
        "ts": float(event.ts),
        "day": int(event.ts // SECONDS_PER_DAY),
        "action": event.action[:32],
        "outcome": event.outcome[:32],
        "request_id": event.request_id,
        "session": event.session,
        "provider": event.provider,
        "cache_layer": event.cache_layer,
        "latency_ms": event.latency_ms,
        "question_hash": qhash,
        "question": event.question if log_questions else None,
        "detail": _jsonable(event.detail),
    }


# --------------------------------------------------------------------------- writer


@dataclass(eq=False)
class _FlushMarker:
    done: asyncio.Future[None]


class _Stop:
    pass


_QueueItem = AuditEvent | _FlushMarker | _Stop


class AuditLog:
    """The single writer of ``audit_events`` (one asyncio task, batched inserts).

    ``record`` may be called before ``start``; events wait in the queue. A batch
    whose insert fails is retried once, then logged and dropped (``dropped``
    counts them): the audit log never takes the application down.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        batch_size: int = 200,
        flush_interval_s: float = 0.5,
        log_questions: bool = True,
        max_queue: int = 100_000,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if flush_interval_s < 0:
            raise ValueError("flush_interval_s must not be negative")
        self._engine = engine
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._log_questions = log_questions
        self._loop: asyncio.AbstractEventLoop | None = None  # the writer's, set by start()
        self._queue: asyncio.Queue[_QueueItem] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.written = 0
        self.dropped = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def start(self) -> None:
        if self._task is not None:
            return
        if self._closed:
            raise RuntimeError("AuditLog was closed")
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    def record(self, event: AuditEvent) -> None:
        """Queue ``event`` for writing; never blocks, never raises.

        Safe from any thread: off the writer's loop, the event is handed to it.
        """
        loop = self._loop
        if loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._enqueue, event)
                return
        self._enqueue(event)

    def _enqueue(self, event: AuditEvent) -> None:
        if self._closed:
            self.dropped += 1
            log.warning("audit event recorded after close was dropped: %s", event.action)
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("audit queue full; %d events dropped so far", self.dropped)

    async def flush(self) -> None:
        """Return once every event recorded before this call is committed (or dropped)."""
        if self._task is None or self._task.done():
            if self._queue.empty():
                return
            raise RuntimeError("AuditLog.flush() needs a started writer")
        marker = _FlushMarker(asyncio.get_running_loop().create_future())
        await self._queue.put(marker)
        await asyncio.shield(marker.done)

    async def aclose(self) -> None:
        """Flush what is queued, then stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        task = self._task
        if task is None or task.done():
            return
        await self._queue.put(_Stop())
        await task

    # ------------------------------------------------------------------ internals

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            item = await self._queue.get()
            events: list[AuditEvent] = []
            markers: list[_FlushMarker] = []
            deadline = loop.time() + self._flush_interval_s
            while True:
                if isinstance(item, _Stop):
                    stop = True
                    break
                if isinstance(item, _FlushMarker):
                    markers.append(item)
                    break  # a flush closes the batch now
                events.append(item)
                if len(events) >= self._batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if events:
                await self._write(events)
            for marker in markers:
                if not marker.done.done():
                    marker.done.set_result(None)
        # Anything queued after the stop sentinel (there should be nothing) is written too.
        leftovers: list[AuditEvent] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, AuditEvent):
                leftovers.append(item)
            elif isinstance(item, _FlushMarker) and not item.done.done():
                item.done.set_result(None)
        if leftovers:
            await self._write(leftovers)

    async def _write(self, events: list[AuditEvent]) -> None:
        try:
            rows = [_to_row(e, log_questions=self._log_questions) for e in events]
        except Exception:  # a bug in an event (e.g. a non-number ts): drop, never crash
            log.exception("audit batch of %d events could not be prepared", len(events))
            self.dropped += len(events)
            return
        for attempt in (1, 2):
            try:
                await asyncio.to_thread(self._insert, rows)
            except Exception as exc:
                if attempt == 1:
                    log.warning("audit batch of %d events failed (%s); retrying", len(rows), exc)
                    continue
                log.error(
                    "audit batch of %d events failed twice and was dropped: %s", len(rows), exc
                )
                self.dropped += len(rows)
            else:
                self.written += len(rows)
            return

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with self._engine.begin() as conn:
            conn.execute(audit_events.insert(), rows)


# --------------------------------------------------------------------------- statistics

_GROUP_INDEX: Final[dict[str, str]] = {
    "action": "ix_audit_events_action_ts_latency_ms",
    "outcome": "ix_audit_events_outcome_ts",
    "provider": "ix_audit_events_provider_ts",
    "cache_layer": "ix_audit_events_cache_layer_ts",
}
_DAY_INDEX: Final = "ix_audit_events_day_ts"
_ASK_WINDOW_INDEX: Final = "ix_audit_events_action_ts_latency_ms"
_ASK_LATENCY_INDEX: Final = "ix_audit_events_action_latency_ms_ts"
# Reading in latency order steps over ~0.56·n/share index entries for p50+p95+p99
# (~70 ns each on SQLite); sorting the window costs ~1 µs per row. Measured
# crossover on 1M rows: a window covering ~4% of the table's time span.
_INDEX_ORDER_SHARE: Final = 0.04


def ensure_audit_indexes(engine: sa.Engine) -> list[str]:
    """Create any of ``AUDIT_INDEXES`` that the database lacks; return their names.

    A stop-gap until the schema/migrations carry them; idempotent.
    """
    existing = {ix["name"] for ix in sa.inspect(engine).get_indexes("audit_events")}
    created: list[str] = []
    for name, columns in AUDIT_INDEXES:
        if name in existing:
            continue
        cols = ", ".join(columns)
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON audit_events ({cols})"))
        created.append(name)
    return created


def nearest_rank(p: float, n: int) -> int:
    """The 1-based rank of the p-th percentile among n sorted values (nearest-rank method)."""
    if n <= 0:
        raise ValueError("no values")
    return min(n, max(1, math.ceil(p / 100.0 * n)))


def _window(since: float | None, until: float | None) -> tuple[float, float]:
    lo = -_FAR_FUTURE if since is None else float(since)
    hi = _FAR_FUTURE if until is None else float(until)
    return lo, hi


def _day_bounds(lo: float, hi: float) -> tuple[int, int]:
    d0 = max(-_INT4_MAX, min(_INT4_MAX, math.floor(lo / SECONDS_PER_DAY)))
    d1 = max(-_INT4_MAX, min(_INT4_MAX, math.floor(hi / SECONDS_PER_DAY)))
    return int(d0), int(d1)


class AuditStats:
    """Statistics over ``audit_events`` by SQL aggregation (sync: run in a worker thread)."""

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._sqlite = engine.dialect.name == "sqlite"
        self._hints: bool | None = None

    # ------------------------------------------------------------------ SQL text

    def _use_hints(self) -> bool:
        """``INDEXED BY`` only on SQLite and only if every designed index exists."""
        if not self._sqlite:
            return False
        if self._hints is None:
            existing = {ix["name"] for ix in sa.inspect(self._engine).get_indexes("audit_events")}
            self._hints = all(name in existing for name, _ in AUDIT_INDEXES)
            if not self._hints:
                log.warning("audit indexes missing; statistics queries will be slow")
        return self._hints

    def _table(self, index: str) -> str:
        return f"audit_events INDEXED BY {index}" if self._use_hints() else "audit_events"

    @staticmethod
    def _ts(windowed: bool) -> str:
        """The time-window predicate, or nothing when the window covers the whole table."""
        return " AND ts >= :lo AND ts < :hi" if windowed else ""

    def counts_sql(self, column: GroupColumn, *, windowed: bool = True) -> str:
        """Loose index scan over ``(column, ts)``: distinct values by seeks, counts by range.

        Values with no event in the window come back with a count of 0 (the caller
        drops them): filtering in SQL would make SQLite evaluate the count twice.
        """
        if column not in GROUP_COLUMNS:
            raise ValueError(f"cannot group audit events by {column!r}")
        t = self._table(_GROUP_INDEX[column])
        ts = self._ts(windowed)
        sql = (
            "WITH RECURSIVE vals(v) AS ("
            f" SELECT MIN({column}) FROM {t}"
            " UNION ALL"
            f" SELECT (SELECT MIN({column}) FROM {t} WHERE {column} > vals.v)"
            " FROM vals WHERE vals.v IS NOT NULL"
            ") "
            f"SELECT v, (SELECT COUNT(*) FROM {t} WHERE {column} = vals.v{ts}) AS n"
            " FROM vals WHERE v IS NOT NULL"
        )
        if audit_events.c[column].nullable:
            sql += f" UNION ALL SELECT NULL, (SELECT COUNT(*) FROM {t} WHERE {column} IS NULL{ts})"
        return sql

    def per_day_sql(self, *, windowed: bool = True) -> str:
        """Days by index seeks within [d0, d1], then a range count per day (no GROUP BY)."""
        t = self._table(_DAY_INDEX)
        return (
            "WITH RECURSIVE days(d) AS ("
            f" SELECT MIN(day) FROM {t} WHERE day >= :d0 AND day <= :d1"
            " UNION ALL"
            f" SELECT (SELECT MIN(day) FROM {t} WHERE day > days.d AND day <= :d1)"
            " FROM days WHERE days.d IS NOT NULL"
            ") "
            f"SELECT d, (SELECT COUNT(*) FROM {t} WHERE day = days.d{self._ts(windowed)}) AS n"
            " FROM days WHERE d IS NOT NULL"
        )

    def latency_count_sql(self, *, windowed: bool = True) -> str:
        if windowed:
            t = self._table(_ASK_WINDOW_INDEX)
            return (
                f"SELECT COUNT(*) FROM {t}"
                " WHERE action = :action AND ts >= :lo AND ts < :hi AND latency_ms IS NOT NULL"
            )
        t = self._table(_ASK_LATENCY_INDEX)
        return f"SELECT COUNT(*) FROM {t} WHERE action = :action AND latency_ms IS NOT NULL"

    def latency_rank_sql(self, *, descending: bool, windowed: bool = True) -> str:
        """The value at OFFSET ``:off`` read in latency order from the index: no sort.

        High percentiles read from the top (``descending``), so p95 and p99 step over
        5% and 1% of the entries rather than 95% and 99%.
        """
        t = self._table(_ASK_LATENCY_INDEX)
        order = "action DESC, latency_ms DESC" if descending else "action, latency_ms"
        return (
            f"SELECT latency_ms FROM {t}"
            f" WHERE action = :action AND latency_ms IS NOT NULL{self._ts(windowed)}"
            f" ORDER BY {order} LIMIT 1 OFFSET :off"
        )

    def latency_sorted_sql(self) -> str:
        """Range-read a narrow window and sort it once for every rank at the same time."""
        t = self._table(_ASK_WINDOW_INDEX)
        return (
            "SELECT rn, latency_ms FROM ("
            " SELECT latency_ms, ROW_NUMBER() OVER (ORDER BY latency_ms) AS rn"
            f" FROM {t}"
            " WHERE action = :action AND ts >= :lo AND ts < :hi AND latency_ms IS NOT NULL"
            ") AS ranked WHERE rn IN :ranks"
        )

    def explain(self, sql: str, params: Mapping[str, Any]) -> list[str]:
        """SQLite's ``EXPLAIN QUERY PLAN`` detail lines (PostgreSQL: ``EXPLAIN`` lines)."""
        prefix = "EXPLAIN QUERY PLAN " if self._sqlite else "EXPLAIN "
        with self._engine.connect() as conn:
            rows = conn.execute(sa.text(prefix + sql), dict(params)).all()
        return [str(r[-1]) for r in rows]

    # ------------------------------------------------------------------ queries

    def _span(self, conn: sa.Connection, lo: float, hi: float) -> tuple[float, bool]:
        """The share of the table's time span that [lo, hi) covers, and whether it
        covers every row (then the ts predicate is dropped). Two index seeks."""
        t = self._table("ix_audit_events_ts")
        first, last = conn.execute(
            sa.text(f"SELECT (SELECT MIN(ts) FROM {t}), (SELECT MAX(ts) FROM {t})")
        ).one()
        if first is None or last is None:
            return 1.0, True
        first, last = float(first), float(last)
        whole = lo <= first and hi > last
        if last <= first:
            return (1.0 if whole else 0.0), whole
        covered = min(hi, last) - max(lo, first)
        return max(0.0, min(1.0, covered / (last - first))), whole

    def counts_by(
        self, column: GroupColumn, since: float | None = None, until: float | None = None
    ) -> dict[str | None, int]:
        """Events per value of ``column`` with ``since <= ts < until`` (None = open)."""
        lo, hi = _window(since, until)
        with self._engine.connect() as conn:
            _, whole = self._span(conn, lo, hi)
            sql = sa.text(self.counts_sql(column, windowed=not whole))
            rows = conn.execute(sql, {"lo": lo, "hi": hi}).all()
        return {r[0]: int(r[1]) for r in rows if r[1]}

    def counts_per_day(
        self, since: float | None = None, until: float | None = None
    ) -> dict[int, int]:
        """Events per unix day number (``ts // 86400``, UTC) within the window."""
        lo, hi = _window(since, until)
        d0, d1 = _day_bounds(lo, hi)
        params = {"lo": lo, "hi": hi, "d0": d0, "d1": d1}
        with self._engine.connect() as conn:
            _, whole = self._span(conn, lo, hi)
            rows = conn.execute(sa.text(self.per_day_sql(windowed=not whole)), params).all()
        return {int(r[0]): int(r[1]) for r in rows if r[1]}

    def _percentiles(
        self,
        since: float | None,
        until: float | None,
        action: str,
        percentiles: Sequence[float],
    ) -> tuple[int, dict[float, float | None]]:
        """How many ``action`` events carry a latency, and nearest-rank percentiles of it.

        A window covering a large share of the table's time span is read in
        latency order from ``(action, latency_ms, ts)`` and stops at each rank; a
        narrow one is range-read from ``(action, ts, latency_ms)`` and sorted once.
        """
        lo, hi = _window(since, until)
        params: dict[str, Any] = {"action": action, "lo": lo, "hi": hi}
        with self._engine.connect() as conn:
            share, whole = self._span(conn, lo, hi)
            count_sql = sa.text(self.latency_count_sql(windowed=not whole))
            n = int(conn.execute(count_sql, params).scalar_one())
            if n == 0:
                return 0, {p: None for p in percentiles}
            ranks = {p: nearest_rank(p, n) for p in percentiles}
            if share < _INDEX_ORDER_SHARE:
                sql = sa.text(self.latency_sorted_sql()).bindparams(
                    sa.bindparam("ranks", expanding=True)
                )
                wanted = {"ranks": sorted(set(ranks.values()))}
                got = {int(r): float(v) for r, v in conn.execute(sql, {**params, **wanted})}
                return n, {p: got[r] for p, r in ranks.items()}
            out: dict[float, float | None] = {}
            for p, r in ranks.items():
                descending = r > n // 2
                off = n - r if descending else r - 1
                sql = sa.text(self.latency_rank_sql(descending=descending, windowed=not whole))
                value = conn.execute(sql, {**params, "off": off}).scalar()
                out[p] = None if value is None else float(value)
        return n, out

    def latency(
        self, since: float | None = None, until: float | None = None, *, action: str = "ask"
    ) -> LatencyStats:
        """How many ``action`` events carry a latency, and their p50/p95/p99."""
        n, p = self._percentiles(since, until, action, (50.0, 95.0, 99.0))
        return LatencyStats(n, p[50.0], p[95.0], p[99.0])

    def last_events(self, n: int = 50) -> list[AuditEvent]:
        """The ``n`` most recent events, newest first."""
        t = audit_events
        query = sa.select(t).order_by(t.c.ts.desc(), t.c.id.desc()).limit(max(0, n))
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            AuditEvent(
                ts=float(r["ts"]),
                action=r["action"],
                outcome=r["outcome"],
                request_id=r["request_id"],
                session=r["session"],
                provider=r["provider"],
                cache_layer=r["cache_layer"],
                latency_ms=None if r["latency_ms"] is None else float(r["latency_ms"]),
                question_hash=r["question_hash"],
                question=r["question"],
                detail=dict(r["detail"] or {}),
            )
            for r in rows
        ]

    def total(self, since: float | None = None, until: float | None = None) -> int:
        return sum(self.counts_by("action", since, until).values())

    def summary(
        self, since: float | None = None, until: float | None = None, *, last: int = 20
    ) -> AuditSummary:
        """Everything the statistics view shows over ``[since, until)``."""
        by_action = self.counts_by("action", since, until)
        epoch = dt.date(1970, 1, 1).toordinal()
        return AuditSummary(
            since=since,
            until=until,
            total=sum(by_action.values()),
            by_action=dict(sorted_counts(by_action)),
            by_outcome=dict(sorted_counts(self.counts_by("outcome", since, until))),
            by_provider=dict(sorted_counts(self.counts_by("provider", since, until))),
            by_cache_layer=dict(sorted_counts(self.counts_by("cache_layer", since, until))),
            ask_latency_ms=self.latency(since, until),
            per_day={
                dt.date.fromordinal(epoch + d): n
                for d, n in sorted(self.counts_per_day(since, until).items())
            },
            last_events=tuple(self.last_events(last)),
        )

    # ------------------------------------------------------------------ retention

    def prune(self, older_than_days: float, batch: int = 5000) -> int:
        """Delete events older than ``older_than_days`` in batches; return how many."""
        if older_than_days < 0:
            raise ValueError("older_than_days must not be negative")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        cutoff = self._clock() - older_than_days * SECONDS_PER_DAY
        t = audit_events
        ids = sa.select(t.c.id).where(t.c.ts < cutoff).order_by(t.c.ts).limit(batch)
        statement = sa.delete(t).where(t.c.id.in_(ids))
        deleted = 0
        while True:
            with self._engine.begin() as conn:
                count = conn.execute(statement).rowcount
            deleted += count
            if count < batch:
                return deleted


class AuditFn(Protocol):
    """How the parts record an audit event: ``Services.audit``."""

    def __call__(self, action: str, outcome: str, **fields: Any) -> None: ...


async def prune_quietly(stats: AuditStats, retention_days: float) -> int:
    """Apply the retention setting in a worker thread; a failure is logged, never raised
    (retention must never stop the app)."""
    try:
        removed = await asyncio.to_thread(stats.prune, retention_days)
    except Exception as exc:
        log.warning("audit retention pruning failed: %s", exc)
        return 0
    if removed:
        log.info("audit retention: %d old events removed", removed)
    return removed


def sorted_counts(counts: Mapping[str | None, int]) -> list[tuple[str | None, int]]:
    """Largest first, then by name (None last) — a stable order for display."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))


def events_to_rows(
    events: Iterable[AuditEvent], *, log_questions: bool = True
) -> list[dict[str, Any]]:
    """Rows as ``AuditLog`` writes them (for bulk seeding in tests and benchmarks)."""
    return [_to_row(e, log_questions=log_questions) for e in events]
