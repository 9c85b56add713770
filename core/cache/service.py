"""The cache service: two layers, a guard, and a fallback that never raises.

``CacheService`` uses the primary backend (Redis) while it is healthy and the
embedded backend otherwise. Every primary operation has a deadline
(``op_timeout_s``); a fault or a timeout counts against the service's circuit
breaker (the one of :mod:`core.breaker`, named ``"cache"``), and the operation
is retried on the embedded backend at once, so the caller sees at worst a miss.
After the breaker's reset timeout one call probes the primary (PING, then any
invalidations missed while it was away) while the others stay on the embedded
backend; if the probe works, the service returns to the primary. Falling back
is visible in :meth:`CacheService.health` and, through the breaker's listeners
(``cache.breaker.add_listener``), in the audit log.

Thresholds. A cached answer is served when cosine >= ``similarity_threshold``
(0.92, chosen on the dev, extra and tuning pairs: see ``CacheSettings``) and the
guard allows it, or when cosine >= ``equivalent_threshold`` (0.85) and
:func:`~core.cache.guard.salient_equivalent` holds (same content words and
names, only function words / order differ). ``tests/bench/cache.py --pairs-only``
reports both on every pair set, the frozen test pairs included. With the guard
off (``CacheSettings.guard = False``) only the plain threshold applies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from core.breaker import BreakerState, CircuitBreaker
from core.cache.backends import (
    CacheBackend,
    Clock,
    EmbeddedBackend,
    ResultEntry,
    as_vector,
    unit_vector,
)
from core.cache.guard import guard_check, salient_equivalent
from core.cache.normalize import embedding_key, entry_id_for
from core.config import BreakerSettings, CacheSettings
from core.errors import CacheUnavailable
from core.types import CacheHealth as CacheHealth
from core.types import CacheMetrics as CacheMetrics
from core.types import LayerMetrics as LayerMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")

# Faults of the environment that turn into a miss (backends map theirs to CacheUnavailable).
_FAULTS: tuple[type[BaseException], ...] = (CacheUnavailable, TimeoutError, OSError)

Layer = Literal["embedding", "result"]

# Three faults in a row open the circuit; after 5 s one probe (PING + replay)
# decides, and one good probe is enough to return to Redis.
CACHE_BREAKER = BreakerSettings(failure_threshold=3, reset_timeout_s=5.0, success_threshold=1)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A served answer: the cached question it was stored for and how close it was."""

    entry_id: str
    question: str
    similarity: float
    payload: dict[str, Any]


class _LayerStats:
    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.latencies: deque[float] = deque(maxlen=2048)

    def snapshot(self) -> LayerMetrics:
        if self.latencies:
            p50, p95 = np.percentile(np.fromiter(self.latencies, dtype=np.float64), [50, 95])
            return LayerMetrics(self.hits, self.misses, float(p50), float(p95))
        return LayerMetrics(self.hits, self.misses, None, None)


# --------------------------------------------------------------------------- service


class CacheService:
    """The two-layer cache the answer pipeline calls. Never raises for backend faults.

    The service owns both backends: ``start()`` starts them, ``aclose()`` closes
    them in reverse order (a Redis backend leaves its shared client to its owner).

        cache = CacheService(settings.cache, RedisBackend(redis.client), EmbeddedBackend(path))
        cache.breaker.add_listener(on_transition)   # e.g. to the audit log
        await cache.start()
        vec = await cache.get_embedding(model_id, question)
        hit = await cache.lookup_result(namespace, question, vec)

    ``clock`` stamps entries (wall time: entries outlive the process and are
    shared through Redis). Without a ``breaker``, the service makes one named
    ``"cache"`` with ``CACHE_BREAKER`` settings, on ``clock`` when one is given
    (a test's ``FakeClock`` then drives TTLs and the breaker alike) and on
    ``time.monotonic`` otherwise.
    """

    def __init__(
        self,
        settings: CacheSettings,
        primary: CacheBackend | None,
        embedded: EmbeddedBackend,
        clock: Clock | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        op_timeout_s: float = 0.25,
        start_timeout_s: float = 2.0,
        equivalent_threshold: float = 0.85,
        candidates: int = 5,
    ) -> None:
        self._settings = settings
        self._primary = primary
        self._embedded = embedded
        self._clock: Clock = time.time if clock is None else clock
        if breaker is None:
            breaker_clock: Clock = time.monotonic if clock is None else clock
            breaker = CircuitBreaker("cache", CACHE_BREAKER, clock=breaker_clock)
        self._breaker = breaker
        self._op_timeout_s = op_timeout_s
        self._start_timeout_s = start_timeout_s
        self._equivalent_threshold = min(equivalent_threshold, settings.similarity_threshold)
        self._candidates = candidates
        self._last_error: str | None = None
        self._pending_docs: set[int] = set()
        self._pending_all = False
        self._stats: dict[Layer, _LayerStats] = {
            "embedding": _LayerStats(),
            "result": _LayerStats(),
        }
        self._refusals: Counter[str] = Counter()
        self._last_refusal: str | None = None
        self._evictions = 0
        self._entries = 0
        self._enabled = settings.enabled

    # ------------------------------------------------------------------ lifecycle

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker in front of the primary; listen to it to audit fallbacks."""
        return self._breaker

    async def start(self) -> None:
        try:
            await self._embedded.start()
        except _FAULTS as exc:
            self._note_error(exc)
            log.warning("cache: the embedded cache file is unusable; keeping it in memory only")
        if self._primary is not None:
            try:
                await asyncio.wait_for(self._primary.start(), self._start_timeout_s)
            except _FAULTS as exc:
                self._note_error(exc)
                self._breaker.force_open(f"Redis unavailable at start: {self._last_error}")
                log.warning("cache: Redis unavailable at start, using the embedded cache: %s", exc)
        await self._refresh_entries()

    async def aclose(self) -> None:
        if self._primary is not None:
            try:
                await self._primary.aclose()
            except _FAULTS as exc:
                self._note_error(exc)
        await self._embedded.aclose()

    # ------------------------------------------------------------------ layer 1

    async def get_embedding(self, model_id: str, query: str) -> npt.NDArray[np.float32] | None:
        if not self._enabled:
            return None
        started = time.perf_counter()
        key = embedding_key(model_id, query)
        vec = await self._run(lambda b: b.get_embedding(key), None)
        self._count("embedding", vec is not None, started)
        return vec

    async def put_embedding(self, model_id: str, query: str, vec: npt.ArrayLike) -> None:
        if not self._enabled:
            return
        key = embedding_key(model_id, query)
        arr = as_vector(vec)
        ttl = self._settings.embedding_ttl_s
        await self._run(lambda b: b.put_embedding(key, arr, ttl), None)

    # ------------------------------------------------------------------ layer 2

    async def lookup_result(
        self, namespace: str, query: str, query_vec: npt.ArrayLike
    ) -> CacheHit | None:
        """The best cached answer for ``query`` in ``namespace`` that the guard allows."""
        if not self._enabled:
            return None
        started = time.perf_counter()
        hit = await self._run(lambda b: self._lookup_on(b, namespace, query, query_vec), None)
        self._count("result", hit is not None, started)
        return hit

    async def _lookup_on(
        self, backend: CacheBackend, namespace: str, query: str, query_vec: npt.ArrayLike
    ) -> CacheHit | None:
        vec = unit_vector(query_vec)
        threshold = self._settings.similarity_threshold
        guard = self._settings.guard
        floor = self._equivalent_threshold if guard else threshold
        candidates = await backend.search(namespace, vec, floor, self._candidates)
        fetches = 0
        for cand in candidates:
            if guard:
                verdict = guard_check(cand.question, query)
                if not verdict.allowed:
                    self._refusals[verdict.category or "other"] += 1
                    self._last_refusal = verdict.reason
                    continue
                if cand.similarity < threshold and not salient_equivalent(cand.question, query):
                    continue
            entry = await backend.fetch(cand.entry_id)
            fetches += 1
            if entry is not None and entry.namespace == namespace:
                return CacheHit(entry.entry_id, entry.question, cand.similarity, entry.payload)
            if fetches >= 2:
                break
        return None

    async def put_result(
        self,
        namespace: str,
        query: str,
        query_vec: npt.ArrayLike,
        payload: Mapping[str, Any],
        document_ids: Iterable[int],
    ) -> str:
        """Cache an answer; returns its entry id (the same question in one scope replaces it)."""
        entry_id = entry_id_for(namespace, query)
        if not self._enabled:
            return entry_id
        now = self._clock()
        entry = ResultEntry(
            entry_id=entry_id,
            namespace=namespace,
            question=query,
            vector=unit_vector(query_vec),
            payload=dict(payload),
            document_ids=tuple(sorted({int(d) for d in document_ids})),
            created_at=now,
            expires_at=now + self._settings.result_ttl_s,
        )
        await self._run(lambda b: b.put_result(entry), None)
        await self._refresh_entries()
        return entry_id

    async def evict(self, entry_id: str) -> bool:
        """Remove one answer ("this answer is wrong") from both backends."""
        removed = await self._everywhere(lambda b: b.evict(entry_id), pending=None)
        if removed:
            self._evictions += 1
        await self._refresh_entries()
        return removed > 0

    async def invalidate_documents(self, doc_ids: Iterable[int]) -> int:
        """Remove every cached answer that cited one of ``doc_ids``; returns how many."""
        docs = {int(d) for d in doc_ids}
        if not docs:
            return 0
        removed = await self._everywhere(lambda b: b.invalidate_documents(docs), pending=docs)
        self._evictions += removed
        await self._refresh_entries()
        return removed

    async def invalidate_all(self) -> None:
        """Drop every cached answer (embeddings stay: they depend on the model only)."""
        await self._everywhere(self._invalidate_all_on, pending="all")
        await self._refresh_entries()

    @staticmethod
    async def _invalidate_all_on(backend: CacheBackend) -> int:
        await backend.invalidate_all()
        return 0

    # ------------------------------------------------------------------ observability

    def health(self) -> CacheHealth:
        state = self._breaker.state
        fallback = self._primary is not None and state is not BreakerState.CLOSED
        active = "embedded" if self._primary is None or fallback else self._primary.name
        return CacheHealth(
            enabled=self._enabled,
            active_backend=active,
            fallback_active=fallback,
            breaker_state=state.value,
            last_error=self._last_error,
            retry_in_s=self._breaker.seconds_until_half_open() or 0.0,
        )

    def metrics(self) -> CacheMetrics:
        return CacheMetrics(
            layers={name: stats.snapshot() for name, stats in self._stats.items()},
            entries=self._entries,
            evictions=self._evictions + self._embedded.evictions,
            guard_refusals=dict(self._refusals),
            last_refusal=self._last_refusal,
        )

    # ------------------------------------------------------------------ routing

    async def _primary_usable(self, primary: CacheBackend) -> bool:
        """Whether this call may use the primary.

        CLOSED: yes. OPEN, or HALF_OPEN with another call probing: no (the
        embedded backend serves). HALF_OPEN: this call is the probe: PING, then
        the invalidations the primary missed; only if both work does it go on.
        """
        breaker = self._breaker
        probing = breaker.state is BreakerState.HALF_OPEN
        if not breaker.allow():
            return False
        if not probing:
            return True
        try:
            await asyncio.wait_for(primary.ping(), self._op_timeout_s)
            await self._replay_pending(primary)
        except _FAULTS as exc:
            self._note_error(exc)
            breaker.record_failure(exc)
            return False
        except BaseException:
            breaker.release()  # cancelled or a bug: no verdict, free the probe slot
            raise
        breaker.record_success()
        log.info("cache: Redis is back; leaving the embedded fallback")
        return True

    async def _replay_pending(self, primary: CacheBackend) -> None:
        timeout = max(self._op_timeout_s, 2.0)
        if self._pending_all:
            await asyncio.wait_for(primary.invalidate_all(), timeout)
            self._pending_all = False
            self._pending_docs.clear()
        if self._pending_docs:
            await asyncio.wait_for(primary.invalidate_documents(set(self._pending_docs)), timeout)
            self._pending_docs.clear()

    async def _run(self, op: Callable[[CacheBackend], Awaitable[T]], default: T) -> T:
        """Run ``op`` on the primary if usable, else (or on a fault) on the embedded backend."""
        primary = self._primary
        if primary is not None and await self._primary_usable(primary):
            before = getattr(primary, "round_trips", None)
            try:
                result = await asyncio.wait_for(op(primary), self._op_timeout_s)
            except _FAULTS as exc:
                self._note_error(exc)
                self._breaker.record_failure(exc)
            else:
                # Only a call that reached the server is evidence of health.
                if before is None or getattr(primary, "round_trips", None) != before:
                    self._breaker.record_success()
                return result
        try:
            return await op(self._embedded)
        except _FAULTS as exc:
            self._note_error(exc)
            return default

    async def _everywhere(
        self,
        op: Callable[[CacheBackend], Awaitable[int]],
        pending: set[int] | Literal["all"] | None,
    ) -> int:
        """Apply an invalidation to both backends; remember it if the primary missed it."""
        removed = 0
        primary = self._primary
        if primary is not None:
            done = False
            if await self._primary_usable(primary):
                try:
                    removed += await asyncio.wait_for(op(primary), max(self._op_timeout_s, 2.0))
                    self._breaker.record_success()
                    done = True
                except _FAULTS as exc:
                    self._note_error(exc)
                    self._breaker.record_failure(exc)
            if not done:
                if pending == "all":
                    self._pending_all = True
                elif pending:
                    self._pending_docs |= pending
        try:
            removed += await op(self._embedded)
        except _FAULTS as exc:
            self._note_error(exc)
        return removed

    # ------------------------------------------------------------------ helpers

    def _note_error(self, exc: BaseException) -> None:
        text = str(exc) or type(exc).__name__
        self._last_error = f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
        log.debug("cache: backend fault: %s", self._last_error)

    def _count(self, layer: Layer, hit: bool, started: float) -> None:
        stats = self._stats[layer]
        if hit:
            stats.hits += 1
            stats.latencies.append((time.perf_counter() - started) * 1000)
        else:
            stats.misses += 1

    async def _refresh_entries(self) -> None:
        backend: CacheBackend = self._embedded
        if self._primary is not None and self._breaker.state is BreakerState.CLOSED:
            backend = self._primary
        try:
            self._entries = await backend.entry_count()
        except _FAULTS as exc:
            self._note_error(exc)
