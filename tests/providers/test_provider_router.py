"""ProviderRouter: failover, breakers, retries, mid-stream failures and the fallback.

The providers are real ``OpenAIProvider``s talking to the stand-in server over
127.0.0.1; breakers run on a fake clock and backoff sleeps are recorded, not slept.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest

from core.breaker import BreakerState, CircuitBreaker
from core.config import BreakerSettings, ProviderSettings
from core.errors import ProviderRejected, ProviderUnavailable, UsageError
from core.providers.openai import OpenAIProvider
from core.providers.router import (
    Attempt,
    Done,
    MidStreamFailure,
    ProviderRouter,
    RouterEvent,
    Token,
)
from core.types import ContextPassage, GenerationRequest
from tests.providers.fakes import RecordingSleep, StaticProvider
from tests.support.clock import FakeClock
from tests.support.fake_llm import Drop, FakeLLM, Status, Succeed, closed_port

REQUEST = GenerationRequest(
    question="What is the retention period?",
    passages=(ContextPassage(1, "/docs/policy.md", None, "Backups are kept for 30 days."),),
)

BREAKER = BreakerSettings(failure_threshold=2, reset_timeout_s=30.0, success_threshold=1)


def openai(name: str, url: str, client: httpx.AsyncClient | None = None) -> OpenAIProvider:
    settings = ProviderSettings(
        name=name,
        kind="openai",
        base_url=url,
        timeout_s=2.0,
        connect_timeout_s=0.3,
        first_token_timeout_s=0.3,
    )
    return OpenAIProvider(settings, client=client, api_key="")


class Harness:
    def __init__(
        self,
        urls: Sequence[tuple[str, str]],
        clock: FakeClock,
        client: httpx.AsyncClient,
        max_retries: int = 0,
    ) -> None:
        self.clock = clock
        self.sleep = RecordingSleep()
        self.fallback = StaticProvider("extractive", ["Backups are kept", " for 30 days [1]."])
        self.breakers = {name: CircuitBreaker(name, BREAKER, clock=clock) for name, _ in urls}
        self.router = ProviderRouter(
            [(openai(name, url, client), self.breakers[name]) for name, url in urls],
            self.fallback,
            clock=clock,
            max_retries=max_retries,
            rng=random.Random(7),
            sleep=self.sleep,
        )

    async def ask(self, **kw: frozenset[str]) -> list[RouterEvent]:
        return [event async for event in self.router.stream(REQUEST, **kw)]


def text_of(events: list[RouterEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Token))


def done_of(events: list[RouterEvent]) -> Done:
    last = events[-1]
    assert isinstance(last, Done)
    return last


def attempts(events: list[RouterEvent]) -> list[tuple[str, str]]:
    return [(e.provider, e.outcome) for e in events if isinstance(e, Attempt)]


@pytest.fixture
async def two(
    fake_llm: FakeLLM, second_llm: FakeLLM, clock: FakeClock, http_client: httpx.AsyncClient
) -> AsyncIterator[Harness]:
    h = Harness(
        [("primary", fake_llm.base_url), ("secondary", second_llm.base_url)], clock, http_client
    )
    yield h
    await h.router.aclose()


# ---------------------------------------------------------------- the happy path


async def test_primary_answers_when_healthy(two: Harness, second_llm: FakeLLM) -> None:
    events = await two.ask()
    assert text_of(events) == "Hello, world."
    assert {e.provider for e in events if isinstance(e, Token)} == {"primary"}
    assert attempts(events) == [("primary", "success")]
    assert done_of(events) == Done("primary", degraded=False, notice=None)
    assert second_llm.chat_requests == []


# ---------------------------------------------------------------- failover


async def test_fails_over_when_primary_refuses_connections(
    second_llm: FakeLLM, clock: FakeClock, http_client: httpx.AsyncClient
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    h = Harness([("primary", dead), ("secondary", second_llm.base_url)], clock, http_client)
    events = await h.ask()
    assert text_of(events) == "Hello, world."
    assert attempts(events) == [("primary", "failure"), ("secondary", "success")]
    done = done_of(events)
    assert done.provider == "secondary" and not done.degraded
    assert done.notice is not None and "primary did not answer (connection refused)" in done.notice
    assert h.breakers["primary"].snapshot().consecutive_failures == 1
    await h.router.aclose()


async def test_fails_over_when_primary_returns_500(
    two: Harness, fake_llm: FakeLLM, second_llm: FakeLLM
) -> None:
    fake_llm.push(Status(500))
    events = await two.ask()
    assert attempts(events) == [("primary", "failure"), ("secondary", "success")]
    assert done_of(events).provider == "secondary"
    assert len(fake_llm.chat_requests) == 1
    assert len(second_llm.chat_requests) == 1


async def test_429_skips_to_next_provider_and_is_not_counted(
    two: Harness, fake_llm: FakeLLM
) -> None:
    fake_llm.push(Status(429, retry_after="20"))
    events = await two.ask()
    assert attempts(events) == [("primary", "rate_limited"), ("secondary", "success")]
    snap = two.breakers["primary"].snapshot()
    assert snap.state is BreakerState.CLOSED and snap.failures == 0
    # Within the Retry-After the primary is not asked at all.
    events = await two.ask()
    assert attempts(events)[0] == ("primary", "circuit_open")
    assert len(fake_llm.chat_requests) == 1
    two.clock.advance(20.0)
    events = await two.ask()
    assert done_of(events).provider == "primary"


async def test_401_is_not_retried_and_does_not_trip_the_breaker(
    fake_llm: FakeLLM, second_llm: FakeLLM, clock: FakeClock, http_client: httpx.AsyncClient
) -> None:
    h = Harness(
        [("primary", fake_llm.base_url), ("secondary", second_llm.base_url)],
        clock,
        http_client,
        max_retries=2,
    )
    fake_llm.set_default(Status(401))
    for _ in range(3):
        events = await h.ask()
        assert attempts(events) == [("primary", "rejected"), ("secondary", "success")]
        assert "API key was refused" in (done_of(events).notice or "")
    assert len(fake_llm.chat_requests) == 3  # once per question: never retried
    assert h.breakers["primary"].state is BreakerState.CLOSED
    assert h.sleep.delays == []
    await h.router.aclose()


# ---------------------------------------------------------------- the breaker in the loop


async def test_open_breaker_sends_nothing_to_the_primary(
    two: Harness, fake_llm: FakeLLM, second_llm: FakeLLM
) -> None:
    fake_llm.set_default(Status(503))
    for _ in range(BREAKER.failure_threshold):
        await two.ask()
    assert two.breakers["primary"].state is BreakerState.OPEN
    sent_before = len(fake_llm.chat_requests)
    for _ in range(5):
        events = await two.ask()
        assert attempts(events)[0] == ("primary", "circuit_open")
        assert done_of(events).provider == "secondary"
    assert len(fake_llm.chat_requests) == sent_before == BREAKER.failure_threshold
    assert len(second_llm.chat_requests) == BREAKER.failure_threshold + 5
    assert two.breakers["primary"].snapshot().rejections == 5


async def test_primary_recovers_after_reset_timeout_with_one_probe(
    two: Harness, fake_llm: FakeLLM
) -> None:
    fake_llm.set_default(Status(503))
    for _ in range(BREAKER.failure_threshold):
        await two.ask()
    fake_llm.set_default(Succeed())  # the primary is back, but the circuit is open
    two.clock.advance(BREAKER.reset_timeout_s - 1)
    assert done_of(await two.ask()).provider == "secondary"
    two.clock.advance(1)
    events = await two.ask()  # the probe
    assert attempts(events) == [("primary", "success")]
    assert two.breakers["primary"].state is BreakerState.CLOSED
    assert done_of(await two.ask()).provider == "primary"


async def test_failed_probe_reopens_and_fails_over(two: Harness, fake_llm: FakeLLM) -> None:
    fake_llm.set_default(Status(503))
    for _ in range(BREAKER.failure_threshold):
        await two.ask()
    two.clock.advance(BREAKER.reset_timeout_s)
    events = await two.ask()
    assert attempts(events) == [("primary", "failure"), ("secondary", "success")]
    assert two.breakers["primary"].state is BreakerState.OPEN


async def test_force_open_and_closed_by_name(two: Harness, fake_llm: FakeLLM) -> None:
    two.router.force("primary", "open")
    assert done_of(await two.ask()).provider == "secondary"
    assert fake_llm.chat_requests == []
    two.router.force("primary", "closed")
    assert done_of(await two.ask()).provider == "primary"
    with pytest.raises(UsageError, match="no provider named"):
        two.router.force("nope", "open")


async def test_health_lists_every_provider_in_order(two: Harness, fake_llm: FakeLLM) -> None:
    fake_llm.set_default(Status(503))
    for _ in range(BREAKER.failure_threshold):
        await two.ask()
    health = two.router.health()
    assert [s.name for s in health] == ["primary", "secondary"]
    assert health[0].state is BreakerState.OPEN
    assert health[0].last_error == "server error (HTTP 503)"
    assert health[0].seconds_until_half_open == pytest.approx(30.0)
    assert health[1].state is BreakerState.CLOSED
    assert health[1].successes == BREAKER.failure_threshold


# ---------------------------------------------------------------- retries


async def test_unavailable_is_retried_with_backoff_before_the_first_token(
    fake_llm: FakeLLM, clock: FakeClock, http_client: httpx.AsyncClient
) -> None:
    h = Harness([("primary", fake_llm.base_url)], clock, http_client, max_retries=2)
    h.breakers["primary"] = CircuitBreaker("primary", BreakerSettings(failure_threshold=5))
    h.router = ProviderRouter(
        [(openai("primary", fake_llm.base_url, http_client), h.breakers["primary"])],
        h.fallback,
        clock=clock,
        max_retries=2,
        backoff_base_s=0.2,
        rng=random.Random(7),
        sleep=h.sleep,
    )
    fake_llm.push(Status(503), Status(502))
    events = await h.ask()
    assert attempts(events) == [
        ("primary", "failure"),
        ("primary", "failure"),
        ("primary", "success"),
    ]
    assert done_of(events) == Done("primary", degraded=False, notice=done_of(events).notice)
    assert len(h.sleep.delays) == 2
    assert 0.1 <= h.sleep.delays[0] <= 0.2  # equal jitter around 0.2 s
    assert 0.2 <= h.sleep.delays[1] <= 0.4
    await h.router.aclose()


async def test_retry_stops_when_the_breaker_opens(
    fake_llm: FakeLLM, clock: FakeClock, http_client: httpx.AsyncClient
) -> None:
    h = Harness([("primary", fake_llm.base_url)], clock, http_client, max_retries=5)
    fake_llm.set_default(Status(500))
    events = await h.ask()
    # failure_threshold is 2: the third try is refused by the breaker.
    assert len(fake_llm.chat_requests) == BREAKER.failure_threshold
    assert done_of(events).provider == "extractive"
    await h.router.aclose()


# ---------------------------------------------------------------- mid-stream failure


async def test_mid_stream_failure_ends_the_answer_without_fallback(
    two: Harness, fake_llm: FakeLLM, second_llm: FakeLLM
) -> None:
    fake_llm.push(Drop(after_tokens=2))
    events = await two.ask()
    assert text_of(events) == "tok0 tok1 "
    failures = [e for e in events if isinstance(e, MidStreamFailure)]
    assert len(failures) == 1
    assert failures[0].provider == "primary"
    assert "cut off" in failures[0].message
    done = done_of(events)
    assert done.provider == "primary" and done.degraded
    assert done.notice == failures[0].message
    assert second_llm.chat_requests == []  # no fallback after text was shown
    assert two.fallback.calls == []
    assert two.breakers["primary"].snapshot().failures == 1


async def test_regenerate_skipping_the_failed_provider(
    two: Harness, fake_llm: FakeLLM, second_llm: FakeLLM
) -> None:
    fake_llm.push(Drop(after_tokens=1))
    await two.ask()
    events = await two.ask(skip=frozenset({"primary"}))
    assert done_of(events).provider == "secondary"
    assert text_of(events) == "Hello, world."
    assert len(fake_llm.chat_requests) == 1


# ---------------------------------------------------------------- everything down


async def test_all_down_answers_from_the_fallback_marked_degraded(
    clock: FakeClock, http_client: httpx.AsyncClient
) -> None:
    dead1 = f"http://127.0.0.1:{closed_port()}/v1"
    dead2 = f"http://127.0.0.1:{closed_port()}/v1"
    h = Harness([("primary", dead1), ("secondary", dead2)], clock, http_client)
    events = await h.ask()
    assert text_of(events) == "Backups are kept for 30 days [1]."
    assert attempts(events) == [
        ("primary", "failure"),
        ("secondary", "failure"),
        ("extractive", "success"),
    ]
    done = done_of(events)
    assert done.provider == "extractive"
    assert done.degraded
    assert done.notice == (
        "All language models are unavailable (primary: connection refused; "
        "secondary: connection refused); this answer was composed directly from your documents."
    )
    await h.router.aclose()


async def test_all_down_without_fallback_raises_unavailable(
    clock: FakeClock, http_client: httpx.AsyncClient
) -> None:
    breaker = CircuitBreaker("primary", BREAKER, clock=clock)
    router = ProviderRouter(
        [(openai("primary", f"http://127.0.0.1:{closed_port()}/v1", http_client), breaker)],
        None,
        max_retries=0,
    )
    with pytest.raises(ProviderUnavailable, match="primary: connection refused"):
        [e async for e in router.stream(REQUEST)]
    await router.aclose()


async def test_fallback_is_used_when_every_provider_is_skipped(two: Harness) -> None:
    events = await two.ask(skip=frozenset({"primary", "secondary"}))
    done = done_of(events)
    assert done.provider == "extractive" and done.degraded
    assert done.notice == "This answer was composed directly from your documents."


async def test_failing_fallback_raises_with_every_reason(
    clock: FakeClock, http_client: httpx.AsyncClient
) -> None:
    broken = StaticProvider("extractive", error=ProviderUnavailable("index missing"))
    router = ProviderRouter(
        [
            (
                openai("primary", f"http://127.0.0.1:{closed_port()}/v1", http_client),
                CircuitBreaker("primary", BREAKER, clock=clock),
            )
        ],
        broken,
        max_retries=0,
    )
    with pytest.raises(ProviderUnavailable) as info:
        [e async for e in router.stream(REQUEST)]
    assert "primary: connection refused" in str(info.value)
    assert "extractive: index missing" in str(info.value)
    await router.aclose()


# ---------------------------------------------------------------- in-process providers


async def test_rejected_static_provider_falls_through(clock: FakeClock) -> None:
    bad = StaticProvider("local", error=ProviderRejected("model file missing", status=404))
    breaker = CircuitBreaker("local", BREAKER, clock=clock)
    fallback = StaticProvider("extractive")
    router = ProviderRouter([(bad, breaker)], fallback, max_retries=3, sleep=RecordingSleep())
    events = [e async for e in router.stream(REQUEST)]
    assert attempts(events) == [("local", "rejected"), ("extractive", "success")]
    assert len(bad.calls) == 1
    assert breaker.state is BreakerState.CLOSED


async def test_consumer_closing_early_releases_the_half_open_probe(clock: FakeClock) -> None:
    slow = StaticProvider("local", pieces=["a", "b", "c"])
    breaker = CircuitBreaker("local", BREAKER, clock=clock)
    breaker.force_open()
    clock.advance(BREAKER.reset_timeout_s)
    router = ProviderRouter([(slow, breaker)], None)
    stream = router.stream(REQUEST)
    first = await anext(stream)
    assert first == Token("a", "local")
    assert not breaker.allow()  # the probe is running
    await stream.aclose()  # type: ignore[attr-defined]
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the slot was given back


async def test_aclose_closes_every_provider() -> None:
    a, b, fb = StaticProvider("a"), StaticProvider("b"), StaticProvider("fb")
    router = ProviderRouter([(a, CircuitBreaker("a")), (b, CircuitBreaker("b"))], fb)
    await router.aclose()
    assert a.closed and b.closed and fb.closed


def test_duplicate_provider_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        ProviderRouter([(StaticProvider("a"), CircuitBreaker("a"))] * 2, None)


async def test_half_open_sends_one_probe_while_others_fail_over(
    two: Harness, fake_llm: FakeLLM, second_llm: FakeLLM
) -> None:
    two.router.force("primary", "open")
    two.clock.advance(BREAKER.reset_timeout_s)
    fake_llm.push(Succeed(["probe", " answer"], delay_s=0.05))  # the probe takes a while
    probe = two.router.stream(REQUEST)
    assert await anext(probe) == Token("probe", "primary")  # the probe is in flight
    others = await asyncio.gather(*(two.ask() for _ in range(3)))
    assert all(done_of(events).provider == "secondary" for events in others)
    rest = [event async for event in probe]
    assert done_of(rest).provider == "primary"
    assert len(fake_llm.chat_requests) == 1
    assert two.breakers["primary"].state is BreakerState.CLOSED


async def test_notice_names_the_last_error_behind_an_open_circuit(two: Harness) -> None:
    breaker = two.breakers["primary"]
    for _ in range(BREAKER.failure_threshold):
        breaker.record_failure("connection refused")
    events = await two.ask()
    assert done_of(events).notice == (
        "Answered by secondary because primary did not answer (connection refused; circuit open)."
    )
