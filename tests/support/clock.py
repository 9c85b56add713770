"""The one fake clock of the test suite.

A stand-in for ``time.monotonic`` or ``time.time``: call it for the current
fake time; it moves only when a test says so, so breaker timeouts, TTLs and
token refills are instant and exact.

    clock = FakeClock()
    breaker = CircuitBreaker("primary", settings, clock=clock)
    clock.advance(30.0)
"""

from __future__ import annotations


class FakeClock:
    """Time that stands still until ``advance`` (a negative step makes it run backwards)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
