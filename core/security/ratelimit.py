"""Token-bucket rate limiting: per session and global, embedded or on Redis.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; each request
takes one. ``acquire(key)`` checks the session bucket of ``key`` *and* the global
bucket and takes from both only if both can give, so a refused request costs
nothing. The decision is data (``RateDecision``); ``RateDecision.raise_if_denied``
turns a refusal into ``RateLimited`` with a sentence naming when to retry.

* ``EmbeddedRateLimiter`` keeps buckets in memory, with an injected clock.
* ``RedisRateLimiter`` runs one Lua script per request, atomic on the server and
  timed by the server's ``TIME``, so several processes share the limits exactly.
  It uses the shared client of ``core.redisconn.RedisConnections`` and gives
  each request its own deadline (0.25 s). The global bucket is one for every
  process on the Redis; session buckets are one per ``session_scope`` and
  session key. ``Services`` scopes them to its process, as the in-process
  buckets are: every window asks as session ``"default"``, and one desktop's
  questions must not use up another's.
* ``FailoverRateLimiter`` puts a ``CircuitBreaker`` (named ``"ratelimit"``) in
  front of the Redis limiter: while Redis is down the breaker is open and each
  request goes straight to the in-process buckets, without touching Redis;
  after the reset timeout one request probes Redis again. ``health()`` says
  which backend is in use.

Both limiters follow ``RateLimiter``; one contract test suite runs against each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.breaker import BreakerState, CircuitBreaker
from core.config import BreakerSettings, RateLimitConfig
from core.errors import CacheUnavailable, RateLimited
from core.types import RateLimitHealth

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import redis.asyncio as aioredis


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """``burst`` tokens at most, refilled at ``rate_per_s`` tokens per second."""

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.rate_per_s > 0 and math.isfinite(self.rate_per_s)):
            raise ValueError("rate_per_s must be a positive number")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Limits for one user session and for the whole application (None = no limit)."""

    per_session: BucketSpec | None = BucketSpec(rate_per_s=0.5, burst=10)
    global_: BucketSpec | None = BucketSpec(rate_per_s=5.0, burst=50)


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after_s: float = 0.0  # 0 when allowed
    limited_by: str | None = None  # "session" or "global" when refused

    def raise_if_denied(self) -> None:
        if not self.allowed:
            raise rate_limited_error(self)


def rate_limited_error(decision: RateDecision) -> RateLimited:
    """``RateLimited`` with a message a person can act on."""
    wait = max(decision.retry_after_s, 0.0)
    when = "in a moment" if wait < 1.0 else f"in {math.ceil(wait)} s"
    who = (
        "The application is answering too many questions at once"
        if decision.limited_by == "global"
        else "You are asking questions faster than the limit allows"
    )
    return RateLimited(f"{who}; please try again {when}.", retry_after_s=wait)


@runtime_checkable
class RateLimiter(Protocol):
    async def acquire(self, key: str) -> RateDecision:
        """Take a token for session ``key`` (and the global bucket) if both have one."""
        ...

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------- pure bucket


@dataclass(frozen=True, slots=True)
class BucketState:
    tokens: float
    updated: float


def refill(state: BucketState | None, spec: BucketSpec, now: float) -> float:
    """Tokens in the bucket at ``now`` (a new bucket starts full; time never runs back)."""
    if state is None:
        return float(spec.burst)
    elapsed = max(0.0, now - state.updated)
    return min(float(spec.burst), state.tokens + elapsed * spec.rate_per_s)


def wait_for_token(tokens: float, spec: BucketSpec) -> float:
    """Seconds until a bucket holding ``tokens`` has one whole token."""
    return max(0.0, (1.0 - tokens) / spec.rate_per_s)


# --------------------------------------------------------------------------- embedded


class EmbeddedRateLimiter:
    """In-process token buckets (one event loop; ``acquire`` never awaits anything)."""

    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_sessions: int = 10_000,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._max_sessions = max_sessions
        self._sessions: dict[str, BucketState] = {}
        self._global: BucketState | None = None

    async def acquire(self, key: str) -> RateDecision:
        return self.acquire_now(key)

    def acquire_now(self, key: str) -> RateDecision:
        """The synchronous core of ``acquire`` (atomic: no await inside)."""
        now = self._clock()
        s_spec, g_spec = self._settings.per_session, self._settings.global_
        s_tokens = refill(self._sessions.get(key), s_spec, now) if s_spec else math.inf
        g_tokens = refill(self._global, g_spec, now) if g_spec else math.inf
        waits: list[tuple[float, str]] = []
        if s_spec and s_tokens < 1.0:
            waits.append((wait_for_token(s_tokens, s_spec), "session"))
        if g_spec and g_tokens < 1.0:
            waits.append((wait_for_token(g_tokens, g_spec), "global"))
        if waits:
            wait, by = max(waits)
            return RateDecision(False, wait, by)
        if s_spec:
            self._sessions[key] = BucketState(s_tokens - 1.0, now)
            if len(self._sessions) > self._max_sessions:
                self._evict_full(now)
        if g_spec:
            self._global = BucketState(g_tokens - 1.0, now)
        return RateDecision(True)

    def _evict_full(self, now: float) -> None:
        """Forget buckets that have refilled: a full bucket is the same as no bucket."""
        spec = self._settings.per_session
        assert spec is not None
        full = [k for k, st in self._sessions.items() if refill(st, spec, now) >= spec.burst]
        for k in full:
            del self._sessions[k]

    async def aclose(self) -> None:
        self._sessions.clear()


# --------------------------------------------------------------------------- Redis

# KEYS: the bucket keys. ARGV: cost, then (rate_per_s, burst) for each key.
# Returns {1, "0", ""} or {0, retry_after_s, index of the limiting key (1-based)}.
# Floats go back as strings: Redis truncates Lua numbers to integers in replies.
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local n = #KEYS
local tokens = {}
local worst_wait, worst_i = -1, 0
for i = 1, n do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local st = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tk = burst
  if st[1] then
    local elapsed = now - tonumber(st[2])
    if elapsed < 0 then elapsed = 0 end
    tk = math.min(burst, tonumber(st[1]) + elapsed * rate)
  end
  tokens[i] = tk
  if tk < cost then
    local wait = (cost - tk) / rate
    if wait > worst_wait then worst_wait, worst_i = wait, i end
  end
end
if worst_i > 0 then
  return {0, tostring(worst_wait), tostring(worst_i)}
end
for i = 1, n do
  local rate = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i] - cost), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
end
return {1, '0', ''}
"""


class RedisRateLimiter:
    """Token buckets in Redis: one atomic Lua script per request, Redis ``TIME`` as clock.

    The client is shared (``RedisConnections.client``, owned by ``Services``;
    we never close it). A request that cannot reach Redis, or gets no answer
    within ``timeout_s``, raises ``CacheUnavailable``; ``FailoverRateLimiter``
    then answers from ``EmbeddedRateLimiter``.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        settings: RateLimitSettings,
        *,
        prefix: str = "archivist:ratelimit:",
        timeout_s: float = 0.25,
        session_scope: str = "",
    ) -> None:
        self._client = client
        self._settings = settings
        self._prefix = prefix
        self._session_prefix = f"s:{session_scope}:" if session_scope else "s:"
        self._timeout_s = timeout_s
        self._script: Any = client.register_script(_LUA)

    async def acquire(self, key: str) -> RateDecision:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        keys: list[str] = []
        args: list[float | int] = [1]
        kinds: list[str] = []
        for kind, spec, name in (
            ("session", self._settings.per_session, self._session_prefix + key),
            ("global", self._settings.global_, "g"),
        ):
            if spec is not None:
                keys.append(self._prefix + name)
                args.extend((spec.rate_per_s, spec.burst))
                kinds.append(kind)
        if not keys:
            return RateDecision(True)
        try:
            # The pool's socket timeout is a 2 s safety net; a question waits 0.25 s at most.
            async with asyncio.timeout(self._timeout_s):
                reply = await self._script(keys=keys, args=args)
        except TimeoutError as exc:
            raise CacheUnavailable(
                f"The rate limiter cannot reach Redis: no answer within {self._timeout_s:g} s"
            ) from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise CacheUnavailable(f"The rate limiter cannot reach Redis: {exc}") from exc
        allowed, wait, index = (_text(x) for x in reply)
        if allowed == "1":
            return RateDecision(True)
        return RateDecision(False, float(wait), kinds[int(index) - 1])

    async def aclose(self) -> None:
        """Nothing to release: the Redis client belongs to ``Services``."""


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


# One failure opens the circuit: a request that waits for a dead Redis costs the
# user up to 0.25 s, while the in-process buckets cost nothing and still limit.
# After 5 s one request probes Redis; one success brings the limits back to it.
FAILOVER_BREAKER = BreakerSettings(failure_threshold=1, reset_timeout_s=5.0, success_threshold=1)


class FailoverRateLimiter:
    """Redis buckets while Redis answers, in-process buckets when it does not.

    A limit that silently stopped applying would be worse than a slightly
    looser one: during a Redis outage each process enforces the same buckets
    locally, and the log says so once per outage. A ``CircuitBreaker`` keeps
    the outage cheap: while it is open, requests never touch Redis; after its
    reset timeout one request probes Redis (the others stay local until the
    probe has answered). Its owner may listen to it to audit the fallback.

        limiter = FailoverRateLimiter(RedisRateLimiter(redis.client, buckets), local)
        limiter.breaker.add_listener(on_transition)
        decision = await limiter.acquire(session)
        limiter.health()        # RateLimitHealth: which backend, for the health view
    """

    def __init__(
        self,
        primary: RateLimiter,
        fallback: RateLimiter,
        *,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._breaker = breaker or CircuitBreaker("ratelimit", FAILOVER_BREAKER, clock=clock)
        self._on_fallback = False  # the last request was answered locally

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker in front of Redis; listen to it to audit the fallback."""
        return self._breaker

    @property
    def fallback_active(self) -> bool:
        return self._on_fallback

    async def acquire(self, key: str) -> RateDecision:
        breaker = self._breaker
        if not breaker.allow():  # open, or another request is probing Redis
            return await self._local(key, None)
        try:
            decision = await self._primary.acquire(key)
        except CacheUnavailable as exc:
            breaker.record_failure(exc)
            return await self._local(key, exc)
        except BaseException:
            breaker.release()  # cancelled or a bug: no verdict on Redis
            raise
        breaker.record_success()
        if self._on_fallback:
            log.info("rate limiting is back on Redis")
            self._on_fallback = False
        return decision

    async def _local(self, key: str, error: CacheUnavailable | None) -> RateDecision:
        if not self._on_fallback:
            why = error if error is not None else "its circuit breaker is open"
            log.warning("rate limiting falls back to in-process buckets: %s", why)
            self._on_fallback = True
        return await self._fallback.acquire(key)

    def health(self) -> RateLimitHealth:
        """Where the limits are enforced now (Redis, or this process only)."""
        local = self._on_fallback or self._breaker.state is not BreakerState.CLOSED
        return RateLimitHealth(backend="embedded" if local else "redis", fallback_active=local)

    async def aclose(self) -> None:
        await self._primary.aclose()
        await self._fallback.aclose()


def build_limiter(
    config: RateLimitConfig, redis: aioredis.Redis | None = None, *, session_scope: str = ""
) -> RateLimiter:
    """Token buckets from the settings: on Redis when a client is given (shared by
    every process, with the local buckets as fallback), else local only.

    ``session_scope`` keeps session buckets apart per process on a shared Redis
    (``RedisRateLimiter``); the global bucket is shared regardless.
    """
    buckets = RateLimitSettings(
        per_session=BucketSpec(config.session_rate_per_s, config.session_burst)
        if config.session_rate_per_s > 0
        else None,
        global_=BucketSpec(config.global_rate_per_s, config.global_burst)
        if config.global_rate_per_s > 0
        else None,
    )
    local = EmbeddedRateLimiter(buckets)
    if redis is None:
        return local
    return FailoverRateLimiter(RedisRateLimiter(redis, buckets, session_scope=session_scope), local)
