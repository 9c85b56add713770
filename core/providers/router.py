"""Ordered failover over LLM providers, each behind its own circuit breaker.

``ProviderRouter.stream`` yields small events: ``Token`` pieces of the answer,
an ``Attempt`` per provider call (for the audit log and health), a
``MidStreamFailure`` when a provider breaks after text reached the user, and a
final ``Done`` saying who answered and whether the answer is degraded.

Policy:

* Providers are tried in order, skipping those whose breaker refuses a call
  (open, half-open with its probe already running, or inside a 429's
  Retry-After) and those named in ``skip``.
* Fail over first, retry later: a ``ProviderUnavailable`` moves on to the next
  provider at once (so a dead primary costs only its connect time); when every
  provider has failed, up to ``max_retries`` further rounds retry the ones that
  were unavailable, after an exponential backoff with jitter. 4xx
  (``ProviderRejected``) and 429 are never retried.
* Failover and retries happen only before the first token. After a token
  reached the consumer, a failure ends the answer with ``MidStreamFailure``
  and a visible notice; the consumer may regenerate with
  ``stream(request, skip={that_provider})``.
* When no provider answered, the ``fallback`` (the offline extractive
  provider) answers and ``Done.degraded`` is True with a notice saying why.
* The router classifies errors for the breakers (``counts_as_failure``): down,
  timed out or 5xx counts against a provider; a 429 makes its breaker refuse
  calls until the Retry-After ends; a 4xx gives no verdict. The breaker itself
  (``core.breaker``) never looks at an exception.
* With ``shared`` (``core.breaker_shared``), the breakers it shares follow the
  state every instance publishes through Redis: a provider opened on another
  desktop is skipped here too, and after the reset timeout one desktop probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from core.breaker import BreakerSnapshot, CircuitBreaker
from core.breaker_shared import SharedBreakers
from core.errors import (
    CircuitOpen,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    UsageError,
)
from core.providers.base import Provider
from core.types import GenerationRequest

Outcome = Literal[
    "success",  # the stream completed
    "failure",  # unavailable before any text (counts for the breaker)
    "rejected",  # 4xx: our request or key
    "rate_limited",  # 429
    "circuit_open",  # the breaker refused the call; nothing was sent
    "mid_stream_failure",  # failed after text reached the consumer
]


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    provider: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """One provider call (or refusal), for the audit log and the health view."""

    provider: str
    outcome: Outcome
    error: str | None
    elapsed_ms: float


@dataclass(frozen=True, slots=True)
class MidStreamFailure:
    """The answer broke off after some text; ``message`` is the visible notice."""

    provider: str
    message: str


@dataclass(frozen=True, slots=True)
class Done:
    """The end of the answer: who answered, and why it may be degraded.

    ``degraded`` is True when the answer came from the fallback or broke off.
    ``notice`` is a sentence for the user whenever the primary did not answer
    normally (even when another model answered well).
    """

    provider: str
    degraded: bool
    notice: str | None = None


RouterEvent = Token | Attempt | MidStreamFailure | Done

Sleep = Callable[[float], Awaitable[None]]

ErrorOutcome = Literal["failure", "rejected", "rate_limited"]


def counts_as_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the provider is unhealthy (the provider breakers' classifier).

    Down, timed out, 5xx or a dropped stream: yes. A 4xx (``ProviderRejected``)
    is a problem with our request or key, and a 429 is the provider protecting
    itself: neither is a failure of health. ``CircuitOpen`` never reached the
    provider. Other exceptions are bugs, not provider health.
    """
    if isinstance(exc, ProviderRejected | ProviderRateLimited | CircuitOpen):
        return False
    if isinstance(exc, ProviderUnavailable | ProviderError):
        return True
    return isinstance(exc, TimeoutError | ConnectionError)


def classify_error(exc: BaseException) -> ErrorOutcome:
    """What a failed provider call was, for its ``Attempt`` and for the breaker."""
    if isinstance(exc, ProviderRateLimited):
        return "rate_limited"
    return "failure" if counts_as_failure(exc) else "rejected"


class ProviderRouter:
    """Routes a generation request through providers in order; see the module docstring.

    Usage::

        router = ProviderRouter([(openai, CircuitBreaker("openai"))], extractive)
        async for event in router.stream(request):
            match event:
                case Token(text=text): show(text)
                case Done(degraded=True, notice=notice): warn(notice)
    """

    def __init__(
        self,
        entries: Sequence[tuple[Provider, CircuitBreaker]],
        fallback: Provider | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_retries: int = 1,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 5.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        shared: SharedBreakers | None = None,
    ) -> None:
        names = [p.name for p, _ in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique: {names}")
        self._entries = list(entries)
        self.fallback = fallback
        self._clock = clock
        self.max_retries = max(0, max_retries)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.shared = shared

    @property
    def providers(self) -> list[Provider]:
        return [p for p, _ in self._entries]

    def breaker(self, name: str) -> CircuitBreaker:
        for provider, breaker in self._entries:
            if provider.name == name:
                return breaker
        raise UsageError(
            f"no provider named {name!r}; configured: {', '.join(self.names()) or 'none'}"
        )

    def names(self) -> list[str]:
        return [p.name for p, _ in self._entries]

    def health(self) -> list[BreakerSnapshot]:
        """One snapshot per provider, in routing order (``archivist health --json``).

        A provider with a ``backend`` (the local model: its file and llama.cpp
        runtime) has it named in its snapshot, for health and "why this answer".
        """
        snaps = []
        for provider, breaker in self._entries:
            snap = breaker.snapshot()
            backend = getattr(provider, "backend", None)
            if isinstance(backend, str) and backend:
                snap = dataclasses.replace(snap, backend=backend)
            snaps.append(snap)
        return snaps

    def force(self, name: str, state: Literal["open", "closed"]) -> None:
        """Operator override: force a provider's circuit open or closed."""
        breaker = self.breaker(name)
        if state == "open":
            breaker.force_open()
        elif state == "closed":
            breaker.force_closed()
        else:
            raise UsageError(f"unknown breaker state {state!r}; use 'open' or 'closed'")

    async def aclose(self) -> None:
        """Close every provider (and the fallback), in reverse order."""
        providers = [p for p, _ in self._entries]
        if self.fallback is not None:
            providers.append(self.fallback)
        for provider in reversed(providers):
            await provider.aclose()

    def backoff_s(self, retry: int) -> float:
        """Delay before retry round ``retry`` (1-based): exponential with equal jitter."""
        base = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (retry - 1))
        return base / 2 + self._rng.random() * base / 2

    async def stream(
        self, request: GenerationRequest, *, skip: Collection[str] = ()
    ) -> AsyncIterator[RouterEvent]:
        reasons: dict[str, str] = {}  # provider -> why it did not answer (first real reason)
        candidates = [(p, b) for p, b in self._entries if p.name not in skip]
        for round_no in range(self.max_retries + 1):
            if round_no > 0:
                if not candidates:
                    break
                await self._sleep(self.backoff_s(round_no))
            retry_next: list[tuple[Provider, CircuitBreaker]] = []
            for provider, breaker in candidates:
                name = provider.name
                if not await self._admit(breaker):
                    if round_no == 0:
                        error = breaker.open_error().message
                        last = breaker.snapshot().last_error
                        reasons.setdefault(
                            name, f"{last}; circuit open" if last else "circuit open"
                        )
                        yield Attempt(name, "circuit_open", error, 0.0)
                    continue
                result = _Result()
                async with contextlib.aclosing(
                    self._call(provider, breaker, request, result)
                ) as events:
                    async for event in events:
                        yield event
                if result.outcome == "success":
                    yield Done(name, degraded=False, notice=_failover_notice(reasons, name))
                    return
                if result.outcome == "mid_stream_failure":
                    message = (
                        f"The answer from {name} was cut off ({result.error}). "
                        "You can regenerate it with another model."
                    )
                    yield MidStreamFailure(name, message)
                    yield Done(name, degraded=True, notice=message)
                    return
                if result.error:
                    reasons[name] = result.error
                if result.outcome == "failure":
                    retry_next.append((provider, breaker))
            candidates = retry_next

        fallback = self.fallback
        summary = _reason_summary(reasons)
        if fallback is None:
            raise ProviderUnavailable(f"All language models are unavailable{summary}.", provider="")
        notice = (
            f"All language models are unavailable{summary}; "
            "this answer was composed directly from your documents."
            if reasons
            else "This answer was composed directly from your documents."
        )
        result = _Result()
        async with contextlib.aclosing(self._call(fallback, None, request, result)) as events:
            async for event in events:
                yield event
        if result.outcome == "success":
            yield Done(fallback.name, degraded=True, notice=notice)
        elif result.outcome == "mid_stream_failure":
            message = f"The answer from {fallback.name} was cut off ({result.error})."
            yield MidStreamFailure(fallback.name, message)
            yield Done(fallback.name, degraded=True, notice=message)
        else:
            reasons[fallback.name] = result.error or "failed"
            raise ProviderUnavailable(
                f"No answer could be produced{_reason_summary(reasons)}.",
                provider=fallback.name,
            )

    async def _call(
        self,
        provider: Provider,
        breaker: CircuitBreaker | None,
        request: GenerationRequest,
        result: _Result,
    ) -> AsyncGenerator[RouterEvent, None]:
        """Stream one provider; record the outcome in ``result`` and the breaker."""
        name = provider.name
        start = self._clock()
        got_text = False
        settled = False
        stream = provider.stream(request)
        try:
            async for piece in stream:
                if piece:
                    got_text = True
                    yield Token(piece, name)
            elapsed = self._clock() - start
            settled = True
            if breaker is not None:
                breaker.record_success(elapsed)
                await self._settle(breaker)
            result.outcome = "success"
            yield Attempt(name, "success", None, elapsed * 1000)
        except (ProviderError, TimeoutError, ConnectionError) as exc:
            elapsed = self._clock() - start
            settled = True
            outcome = classify_error(exc)
            if breaker is not None:
                if isinstance(exc, ProviderRateLimited):
                    breaker.record_rate_limited(exc.retry_after_s)  # healthy, asks us to wait
                elif outcome == "failure":
                    breaker.record_failure(exc)
                else:
                    breaker.release()  # a 4xx: our request, not the provider's health
                await self._settle(breaker)
            result.error = _short(exc)
            result.outcome = "mid_stream_failure" if got_text else outcome
            yield Attempt(name, result.outcome, result.error, elapsed * 1000)
        finally:
            if not settled and breaker is not None:
                breaker.release()  # cancelled or a bug: no verdict on health
                await self._settle(breaker)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _admit(self, breaker: CircuitBreaker) -> bool:
        if self.shared is None:
            return breaker.allow()
        return await self.shared.admit(breaker)

    async def _settle(self, breaker: CircuitBreaker) -> None:
        if self.shared is not None:
            await self.shared.settle(breaker)


class _Result:
    __slots__ = ("error", "outcome")

    def __init__(self) -> None:
        self.outcome: Outcome | None = None
        self.error: str | None = None


def _short(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _reason_summary(reasons: dict[str, str]) -> str:
    if not reasons:
        return ""
    return " (" + "; ".join(f"{name}: {why}" for name, why in reasons.items()) + ")"


def _failover_notice(reasons: dict[str, str], answered_by: str) -> str | None:
    if not reasons:
        return None
    why = "; ".join(f"{name} did not answer ({reason})" for name, reason in reasons.items())
    return f"Answered by {answered_by} because {why}."
