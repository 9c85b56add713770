"""The circuit breaker: one pure state machine with an injected clock, for every backend.

Each LLM provider, the cache's Redis and the rate limiter's Redis sit behind a
``CircuitBreaker`` of their own (named after what it guards: the provider's
name, ``"cache"``, ``"ratelimit"``). The breaker never sleeps and starts no
timers. Time only matters when someone asks (``allow()``, ``state``,
``snapshot()``), so a ``FakeClock`` makes every transition instant and exact
in tests.

    CLOSED ──(failure_threshold consecutive failures)──▶ OPEN
    OPEN ──(reset_timeout_s elapsed, checked lazily)──▶ HALF_OPEN
    HALF_OPEN ──(success_threshold successes)──▶ CLOSED
    HALF_OPEN ──(any failure)──▶ OPEN

In HALF_OPEN at most ``half_open_max_calls`` probe calls run at once; the
others are refused as if the circuit were open.

The breaker never looks at an exception: its caller classifies each outcome
and reports one of four verdicts, so what counts is decided where the errors
are understood:

* ``record_success(duration_s)``: the call worked (a slow one may count as a failure);
* ``record_failure(error)``: the call says the service is unhealthy;
* ``record_rate_limited(retry_after_s)``: healthy, but it asked us to wait
  (a 429): calls are refused until then, the circuit stays as it is;
* ``release()``: no verdict (our own 4xx, a bug, a cancellation): frees the probe slot.

For providers the classifier is ``core.providers.router.counts_as_failure``;
the cache and the rate limiter count the faults of their backend
(``CacheUnavailable``, timeouts, ``OSError``).

Every state change goes to the listeners as a ``BreakerTransition`` (for the
audit log and the GUI); its ``provider`` field holds the breaker's name.

Usage::

    breaker = CircuitBreaker("primary", BreakerSettings(failure_threshold=3))
    breaker.add_listener(audit_transition)
    if not breaker.allow():
        raise breaker.open_error()
    try:
        ...
    except ServiceDown as exc:
        breaker.record_failure(exc)
        raise
    except BaseException:
        breaker.release()
        raise
    else:
        breaker.record_success(duration_s)
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable

from core.config import BreakerSettings
from core.errors import CircuitOpen
from core.types import BreakerSnapshot, BreakerState, BreakerTransition

__all__ = [
    "BreakerEvent",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerTransition",
    "CircuitBreaker",
    "Clock",
    "Listener",
    "next_state",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# When a 429 carries no Retry-After we still back off this long before asking again.
DEFAULT_RATE_LIMIT_S = 1.0


class BreakerEvent(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT_ELAPSED = "timeout_elapsed"


def next_state(
    state: BreakerState,
    event: BreakerEvent,
    *,
    consecutive_failures: int,
    half_open_successes: int,
    settings: BreakerSettings,
) -> BreakerState:
    """The transition table (a pure function).

    The counters are the values *after* counting ``event``. Results of calls
    that were admitted before the circuit opened (late arrivals) leave an OPEN
    circuit open: only the reset timeout moves it on.
    """
    if state is BreakerState.CLOSED:
        if event is BreakerEvent.FAILURE and consecutive_failures >= settings.failure_threshold:
            return BreakerState.OPEN
        return BreakerState.CLOSED
    if state is BreakerState.OPEN:
        return BreakerState.HALF_OPEN if event is BreakerEvent.TIMEOUT_ELAPSED else state
    # HALF_OPEN
    if event is BreakerEvent.FAILURE:
        return BreakerState.OPEN
    if event is BreakerEvent.SUCCESS and half_open_successes >= settings.success_threshold:
        return BreakerState.CLOSED
    return BreakerState.HALF_OPEN


Listener = Callable[[BreakerTransition], object]


class CircuitBreaker:
    """Tracks the health of one service (a provider, a Redis); see the module docstring.

    ``name`` says what is guarded: it names the breaker in snapshots, logs and
    every ``BreakerTransition`` (its ``provider`` field). Thread-safe (a lock
    guards the counters); listeners run outside the lock, and a listener that
    raises is logged and ignored.
    """

    def __init__(
        self,
        name: str,
        settings: BreakerSettings | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._consecutive_failures = 0
        self._half_open_successes = 0
        self._in_flight_probes = 0
        self._blocked_until: float | None = None  # Retry-After of a 429
        self._last_error: str | None = None
        self._successes = 0
        self._failures = 0
        self._rejections = 0

    # ------------------------------------------------------------------ listeners

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # ------------------------------------------------------------------ queries

    @property
    def state(self) -> BreakerState:
        """The current state (an expired OPEN becomes HALF_OPEN when asked)."""
        events: list[BreakerTransition] = []
        with self._lock:
            self._refresh(events)
            state = self._state
        self._emit(events)
        return state

    def seconds_until_half_open(self) -> float | None:
        """How long an OPEN circuit stays open; None when it is not OPEN."""
        events: list[BreakerTransition] = []
        with self._lock:
            self._refresh(events)
            result = self._until_half_open()
        self._emit(events)
        return result

    def retry_in_s(self) -> float:
        """How long until a call could be admitted (0 if one could be now)."""
        with self._lock:
            now = self._clock()
            waits = [0.0]
            if self._state is BreakerState.OPEN:
                waits.append(self._opened_at + self.settings.reset_timeout_s - now)
            if self._blocked_until is not None:
                waits.append(self._blocked_until - now)
            return max(waits)

    def snapshot(self) -> BreakerSnapshot:
        events: list[BreakerTransition] = []
        with self._lock:
            self._refresh(events)
            now = self._clock()
            limited = None
            if self._blocked_until is not None and self._blocked_until > now:
                limited = self._blocked_until - now
            snap = BreakerSnapshot(
                name=self.name,
                state=self._state,
                consecutive_failures=self._consecutive_failures,
                last_error=self._last_error,
                seconds_until_half_open=self._until_half_open(),
                rate_limited_for_s=limited,
                successes=self._successes,
                failures=self._failures,
                rejections=self._rejections,
            )
        self._emit(events)
        return snap

    # ------------------------------------------------------------------ admission

    def allow(self) -> bool:
        """Admit one call or refuse it (a refusal counts as a rejection).

        In HALF_OPEN an admitted call is a probe and holds one of the
        ``half_open_max_calls`` slots until its outcome is recorded (or
        ``release()`` gives the slot back).
        """
        events: list[BreakerTransition] = []
        with self._lock:
            self._refresh(events)
            now = self._clock()
            admitted = True
            if self._blocked_until is not None:
                if now < self._blocked_until:
                    admitted = False
                else:
                    self._blocked_until = None
            if admitted and self._state is BreakerState.OPEN:
                admitted = False
            if admitted and self._state is BreakerState.HALF_OPEN:
                if self._in_flight_probes >= self.settings.half_open_max_calls:
                    admitted = False
                else:
                    self._in_flight_probes += 1
            if not admitted:
                self._rejections += 1
        self._emit(events)
        return admitted

    def open_error(self) -> CircuitOpen:
        """The ``CircuitOpen`` to raise after ``allow()`` refused a call.

        For callers that fail on a refusal (the provider router); the cache and
        the rate limiter fall back to their local backend instead.
        """
        retry = self.retry_in_s()
        with self._lock:
            limited = self._blocked_until is not None and self._state is BreakerState.CLOSED
        if limited:
            why = f"{self.name} is rate limited; retry in {retry:.0f} s"
        elif self.state is BreakerState.HALF_OPEN:
            why = f"{self.name} is being probed after an outage; try again shortly"
        else:
            why = f"{self.name} is unavailable (circuit open); retry in {retry:.0f} s"
        return CircuitOpen(why, provider=self.name, retry_in_s=retry)

    def before_call(self) -> None:
        """``allow()`` that raises ``CircuitOpen`` (with ``retry_in_s``) on refusal."""
        if not self.allow():
            raise self.open_error()

    # ------------------------------------------------------------------ outcomes

    def record_success(self, duration_s: float | None = None) -> None:
        """A call finished well; a slow one (over ``slow_call_s``) is a failure."""
        slow = self.settings.slow_call_s
        if duration_s is not None and slow > 0 and duration_s > slow:
            self.record_failure(f"slow call ({duration_s:.2f} s > {slow:g} s)")
            return
        events: list[BreakerTransition] = []
        with self._lock:
            self._refresh(events)
            self._successes += 1
            self._consecutive_failures = 0
            if self._state is BreakerState.HALF_OPEN:
                self._release_probe()
                self._half_open_successes += 1
            self._apply(BreakerEvent.SUCCESS, "probe succeeded", events)
        self._emit(events)

    def record_failure(self, error: BaseException | str | None = None) -> None:
        """A call failed in a way that counts against the service's health."""
        text = _describe(error)
        events: list[BreakerTransition] = []
        with self._lock:
            self._refresh(events)
            self._failures += 1
            self._consecutive_failures += 1
            self._last_error = text
            if self._state is BreakerState.HALF_OPEN:
                self._release_probe()
            if self._state is BreakerState.CLOSED:
                reason = f"{self._consecutive_failures} consecutive failures (last: {text})"
            else:
                reason = f"probe failed: {text}"
            self._apply(BreakerEvent.FAILURE, reason, events)
        self._emit(events)

    def record_rate_limited(self, retry_after_s: float | None) -> None:
        """Healthy, but asked to wait (a 429): refuse calls for ``retry_after_s``.

        Not a failure of health: the circuit keeps its state. ``None`` (no
        Retry-After given) waits ``DEFAULT_RATE_LIMIT_S``.
        """
        wait = DEFAULT_RATE_LIMIT_S if retry_after_s is None else max(0.0, retry_after_s)
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._release_probe()
            self._blocked_until = self._clock() + wait
            self._last_error = f"rate limited for {wait:g} s"

    def release(self) -> None:
        """An admitted call ended without a verdict (4xx, cancelled): free its slot."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._release_probe()

    # ------------------------------------------------------------------ operators

    def force_open(self, reason: str = "forced open by an operator") -> None:
        events: list[BreakerTransition] = []
        with self._lock:
            self._move(BreakerState.OPEN, reason, events)
        self._emit(events)

    def force_closed(self, reason: str = "forced closed by an operator") -> None:
        events: list[BreakerTransition] = []
        with self._lock:
            self._blocked_until = None
            self._move(BreakerState.CLOSED, reason, events)
        self._emit(events)

    def adopt(self, state: BreakerState, reason: str, *, open_for_s: float | None = None) -> None:
        """Take a state decided elsewhere: another instance's breaker for the same service.

        An external event like ``force_open``/``force_closed`` (the transition
        table is not consulted): ``core.breaker_shared`` calls it when the shared
        store says the circuit opened or closed on another desktop. ``OPEN``
        stays open for ``open_for_s`` (what the other instance's circuit has
        left; default the full reset timeout, 0 = half-open at once); adopting
        ``OPEN`` while already open only moves the end of the open period.
        ``HALF_OPEN`` is never adopted: it follows from an elapsed open period.
        A running 429 wait is kept (it is this instance's own).
        """
        if state is BreakerState.HALF_OPEN:
            raise ValueError("HALF_OPEN follows from an elapsed open period; adopt OPEN")
        events: list[BreakerTransition] = []
        with self._lock:
            if state is BreakerState.CLOSED:
                if self._state is not BreakerState.CLOSED:
                    self._move(state, reason, events)
            else:
                reset = self.settings.reset_timeout_s
                left = reset if open_for_s is None else min(max(0.0, open_for_s), reset)
                self._move(state, reason, events, open_for_s=left)
        self._emit(events)

    def reset(self) -> None:
        """Back to a fresh CLOSED breaker: counters and last error cleared too."""
        events: list[BreakerTransition] = []
        with self._lock:
            self._move(BreakerState.CLOSED, "reset", events)
            self._blocked_until = None
            self._last_error = None
            self._successes = self._failures = self._rejections = 0
        self._emit(events)

    # ------------------------------------------------------------------ internals

    def _until_half_open(self) -> float | None:
        if self._state is not BreakerState.OPEN:
            return None
        return max(0.0, self._opened_at + self.settings.reset_timeout_s - self._clock())

    def _release_probe(self) -> None:
        self._in_flight_probes = max(0, self._in_flight_probes - 1)

    def _refresh(self, events: list[BreakerTransition]) -> None:
        if self._state is BreakerState.OPEN:
            if self._clock() - self._opened_at >= self.settings.reset_timeout_s:
                self._apply(BreakerEvent.TIMEOUT_ELAPSED, "reset timeout elapsed", events)

    def _apply(self, event: BreakerEvent, reason: str, events: list[BreakerTransition]) -> None:
        new = next_state(
            self._state,
            event,
            consecutive_failures=self._consecutive_failures,
            half_open_successes=self._half_open_successes,
            settings=self.settings,
        )
        if new is not self._state:
            self._move(new, reason, events)

    def _move(
        self,
        new: BreakerState,
        reason: str,
        events: list[BreakerTransition],
        *,
        open_for_s: float | None = None,
    ) -> None:
        old = self._state
        now = self._clock()
        self._state = new
        self._half_open_successes = 0
        self._in_flight_probes = 0
        retry: float | None = None
        if new is BreakerState.OPEN:
            retry = self.settings.reset_timeout_s if open_for_s is None else open_for_s
            self._opened_at = now - (self.settings.reset_timeout_s - retry)
        elif new is BreakerState.CLOSED:
            self._consecutive_failures = 0
        if old is not new:
            events.append(BreakerTransition(self.name, old, new, reason, now, retry))
            log.info("breaker %s: %s -> %s (%s)", self.name, old.value, new.value, reason)

    def _emit(self, events: list[BreakerTransition]) -> None:
        if not events:
            return
        with self._lock:
            listeners = list(self._listeners)
        for event in events:
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("breaker listener %r failed on %s", listener, event)


def _describe(error: BaseException | str | None) -> str:
    if error is None:
        return "failure"
    if isinstance(error, str):
        return error
    return str(error) or type(error).__name__
