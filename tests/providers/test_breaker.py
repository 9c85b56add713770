"""The circuit breaker as a state machine, driven by a fake clock."""

from __future__ import annotations

import logging

import pytest

from core.breaker import (
    BreakerEvent,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    next_state,
)
from core.config import BreakerSettings
from core.errors import (
    CircuitOpen,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from core.providers.router import classify_error, counts_as_failure
from tests.support.clock import FakeClock

SETTINGS = BreakerSettings(failure_threshold=3, reset_timeout_s=10.0, success_threshold=2)


def make(clock: FakeClock, **overrides: float) -> CircuitBreaker:
    values = {
        "failure_threshold": SETTINGS.failure_threshold,
        "reset_timeout_s": SETTINGS.reset_timeout_s,
        "success_threshold": SETTINGS.success_threshold,
        "half_open_max_calls": SETTINGS.half_open_max_calls,
        "slow_call_s": SETTINGS.slow_call_s,
        **overrides,
    }
    settings = BreakerSettings(
        failure_threshold=int(values["failure_threshold"]),
        reset_timeout_s=float(values["reset_timeout_s"]),
        success_threshold=int(values["success_threshold"]),
        half_open_max_calls=int(values["half_open_max_calls"]),
        slow_call_s=float(values["slow_call_s"]),
    )
    return CircuitBreaker("primary", settings, clock=clock)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.settings.failure_threshold):
        assert breaker.allow()
        breaker.record_failure(ProviderUnavailable("connection refused"))


# ---------------------------------------------------------------- the pure table


@pytest.mark.parametrize(
    ("state", "event", "failures", "successes", "expected"),
    [
        (BreakerState.CLOSED, BreakerEvent.SUCCESS, 0, 0, BreakerState.CLOSED),
        (BreakerState.CLOSED, BreakerEvent.FAILURE, 2, 0, BreakerState.CLOSED),
        (BreakerState.CLOSED, BreakerEvent.FAILURE, 3, 0, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerEvent.SUCCESS, 0, 0, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerEvent.FAILURE, 4, 0, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerEvent.TIMEOUT_ELAPSED, 3, 0, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerEvent.FAILURE, 1, 0, BreakerState.OPEN),
        (BreakerState.HALF_OPEN, BreakerEvent.SUCCESS, 0, 1, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerEvent.SUCCESS, 0, 2, BreakerState.CLOSED),
    ],
)
def test_transition_table(
    state: BreakerState,
    event: BreakerEvent,
    failures: int,
    successes: int,
    expected: BreakerState,
) -> None:
    got = next_state(
        state,
        event,
        consecutive_failures=failures,
        half_open_successes=successes,
        settings=SETTINGS,
    )
    assert got is expected


# ---------------------------------------------------------------- transitions


def test_new_breaker_is_closed_and_admits_calls(clock: FakeClock) -> None:
    breaker = make(clock)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.seconds_until_half_open() is None


def test_closed_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.record_failure(ProviderUnavailable("down"))
    breaker.record_failure(ProviderUnavailable("down"))
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure(ProviderUnavailable("down"))
    assert breaker.state is BreakerState.OPEN


def test_success_resets_the_consecutive_failure_count(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.record_failure("a")
    breaker.record_failure("b")
    breaker.record_success()
    breaker.record_failure("c")
    breaker.record_failure("d")
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().consecutive_failures == 2


def test_open_circuit_fails_fast_with_retry_in(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(4.0)
    assert not breaker.allow()
    with pytest.raises(CircuitOpen) as info:
        breaker.before_call()
    assert info.value.retry_in_s == pytest.approx(6.0)
    assert info.value.provider == "primary"
    assert breaker.snapshot().rejections == 2


def test_open_becomes_half_open_exactly_at_reset_timeout(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(9.999)
    assert breaker.state is BreakerState.OPEN
    assert breaker.seconds_until_half_open() == pytest.approx(0.001)
    clock.advance(0.001)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.seconds_until_half_open() is None


def test_half_open_admits_one_probe_at_a_time(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # a concurrent call is refused
    assert not breaker.allow()
    breaker.record_success()  # first of two successes; the slot is free again
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()


def test_half_open_max_calls_allows_several_probes(clock: FakeClock) -> None:
    breaker = make(clock, half_open_max_calls=2)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    assert breaker.allow()
    assert not breaker.allow()


def test_half_open_closes_after_success_threshold(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(10.0)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().consecutive_failures == 0
    assert breaker.allow() and breaker.allow()


def test_half_open_failure_reopens_circuit_and_restarts_timer(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_failure(ProviderUnavailable("still down"))
    assert breaker.state is BreakerState.OPEN
    assert breaker.seconds_until_half_open() == pytest.approx(10.0)


def test_released_probe_frees_the_half_open_slot(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.release()  # e.g. a 4xx or a cancelled call: no verdict
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_late_success_does_not_close_an_open_circuit(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    breaker.record_success()
    assert breaker.state is BreakerState.OPEN


def test_slow_success_counts_as_failure(clock: FakeClock) -> None:
    breaker = make(clock, slow_call_s=2.0, failure_threshold=1)
    breaker.record_success(duration_s=1.9)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success(duration_s=2.5)
    assert breaker.state is BreakerState.OPEN
    assert "slow call" in (breaker.snapshot().last_error or "")


def test_slow_call_is_off_when_zero(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    breaker.record_success(duration_s=1000.0)
    assert breaker.state is BreakerState.CLOSED


# ---------------------------------------------------------------- error classification


def test_counts_as_failure_classifies_errors() -> None:
    assert counts_as_failure(ProviderUnavailable("down"))
    assert counts_as_failure(TimeoutError())
    assert counts_as_failure(ConnectionRefusedError())
    assert not counts_as_failure(ProviderRejected("bad key", status=401))
    assert not counts_as_failure(ProviderRateLimited("slow down", retry_after_s=3))
    assert not counts_as_failure(CircuitOpen("open"))
    assert not counts_as_failure(ValueError("a bug"))


def test_classify_error_names_the_outcome_the_breaker_hears() -> None:
    assert classify_error(ProviderUnavailable("down")) == "failure"
    assert classify_error(TimeoutError()) == "failure"
    assert classify_error(ProviderRejected("bad key", status=401)) == "rejected"
    assert classify_error(ProviderRateLimited("slow down", retry_after_s=3)) == "rate_limited"


def test_released_calls_never_trip_the_breaker(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    for _ in range(5):
        assert breaker.allow()
        breaker.release()  # what the router does for a 4xx
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().failures == 0


def test_rate_limit_blocks_calls_until_retry_after_without_opening(clock: FakeClock) -> None:
    breaker = make(clock, failure_threshold=1)
    assert breaker.allow()
    breaker.record_rate_limited(3.0)
    assert breaker.state is BreakerState.CLOSED
    assert not breaker.allow()
    assert breaker.retry_in_s() == pytest.approx(3.0)
    snap = breaker.snapshot()
    assert snap.rate_limited_for_s == pytest.approx(3.0)
    assert snap.failures == 0
    with pytest.raises(CircuitOpen, match="rate limited"):
        breaker.before_call()
    clock.advance(3.0)
    assert breaker.allow()
    assert breaker.snapshot().rate_limited_for_s is None


def test_rate_limit_without_retry_after_uses_a_short_default(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.record_rate_limited(None)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()


def test_rate_limited_probe_frees_the_half_open_slot(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_rate_limited(2.0)
    assert breaker.state is BreakerState.HALF_OPEN
    clock.advance(2.0)
    assert breaker.allow()


# ---------------------------------------------------------------- operators


def test_force_open_refuses_calls_until_timeout(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.force_open()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance(10.0)
    assert breaker.state is BreakerState.HALF_OPEN


def test_force_closed_admits_calls_at_once(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    breaker.record_rate_limited(30.0)
    breaker.force_closed()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.snapshot().consecutive_failures == 0


def test_adopting_open_keeps_the_other_instances_open_period(clock: FakeClock) -> None:
    breaker = make(clock)
    seen: list[BreakerTransition] = []
    breaker.add_listener(seen.append)
    breaker.adopt(BreakerState.OPEN, "shared by b: down", open_for_s=4.0)
    assert not breaker.allow()
    assert breaker.seconds_until_half_open() == pytest.approx(4.0)
    assert [(t.new, t.retry_in_s, t.reason) for t in seen] == [
        (BreakerState.OPEN, 4.0, "shared by b: down")
    ]
    breaker.adopt(BreakerState.OPEN, "shared by b: probe failed", open_for_s=9.0)
    assert breaker.seconds_until_half_open() == pytest.approx(9.0)  # moved, no new event
    assert len(seen) == 1
    clock.advance(9.0)
    assert breaker.allow()  # the half-open probe
    assert breaker.state is BreakerState.HALF_OPEN


def test_adopting_an_elapsed_open_period_means_half_open(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.adopt(BreakerState.OPEN, "shared", open_for_s=-3.0)
    assert breaker.state is BreakerState.HALF_OPEN


def test_adopting_closed_closes_an_open_circuit_and_keeps_a_closed_ones_counts(
    clock: FakeClock,
) -> None:
    breaker = make(clock)
    assert breaker.allow()
    breaker.record_failure("timeout")
    breaker.adopt(BreakerState.CLOSED, "shared by b: probe succeeded")
    assert breaker.snapshot().consecutive_failures == 1  # nothing changed: it was closed
    breaker.force_open()
    breaker.record_rate_limited(5.0)
    breaker.adopt(BreakerState.CLOSED, "shared by b: probe succeeded")
    assert breaker.state is BreakerState.CLOSED
    assert not breaker.allow()  # this instance's own 429 wait still runs
    with pytest.raises(ValueError, match="HALF_OPEN"):
        breaker.adopt(BreakerState.HALF_OPEN, "no")


def test_reset_clears_counters_and_last_error(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    breaker.allow()
    breaker.reset()
    snap = breaker.snapshot()
    assert snap.state is BreakerState.CLOSED
    assert (snap.successes, snap.failures, snap.rejections) == (0, 0, 0)
    assert snap.last_error is None


# ---------------------------------------------------------------- listeners and snapshot


def test_listeners_receive_every_transition(clock: FakeClock) -> None:
    breaker = make(clock)
    events: list[BreakerTransition] = []
    breaker.add_listener(events.append)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.allow()
    breaker.record_success()

    assert [(e.old, e.new) for e in events] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    opened = events[0]
    assert opened.provider == "primary"
    assert opened.at == 1000.0
    assert opened.retry_in_s == 10.0
    assert "3 consecutive failures" in opened.reason
    assert "connection refused" in opened.reason
    assert events[1].at == 1010.0
    assert events[1].retry_in_s is None


def test_removed_listener_gets_nothing(clock: FakeClock) -> None:
    breaker = make(clock)
    events: list[BreakerTransition] = []
    breaker.add_listener(events.append)
    breaker.remove_listener(events.append)
    trip(breaker)
    assert events == []


def test_raising_listener_does_not_break_the_breaker(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make(clock)
    seen: list[BreakerTransition] = []

    def broken(event: BreakerTransition) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    breaker.add_listener(seen.append)
    with caplog.at_level(logging.ERROR, logger="core.breaker"):
        trip(breaker)
    assert breaker.state is BreakerState.OPEN
    assert len(seen) == 1  # the listener after the broken one still ran
    assert "listener" in caplog.text


def test_listener_may_read_the_breaker(clock: FakeClock) -> None:
    breaker = make(clock)
    states: list[BreakerState] = []
    breaker.add_listener(lambda e: states.append(breaker.snapshot().state))
    trip(breaker)
    assert states == [BreakerState.OPEN]


def test_snapshot_reports_counts_and_time_until_half_open(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.record_success()
    trip(breaker)
    breaker.allow()
    clock.advance(2.5)
    snap = breaker.snapshot()
    assert snap.name == "primary"
    assert snap.state is BreakerState.OPEN
    assert snap.consecutive_failures == 3
    assert snap.last_error == "connection refused"
    assert snap.seconds_until_half_open == pytest.approx(7.5)
    assert (snap.successes, snap.failures, snap.rejections) == (1, 3, 1)
    data = snap.to_json()
    assert data["state"] == "open"
    assert data["seconds_until_half_open"] == 7.5
    component = snap.to_component("openai")
    assert component.status == "down"
    assert component.data["kind"] == "openai"
    assert "connection refused" in component.detail
