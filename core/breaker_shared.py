"""Provider breaker state shared by every instance that uses one Redis.

Each desktop keeps its own :class:`~core.breaker.CircuitBreaker` per provider
(the pure state machine decides, as without Redis); ``SharedBreakers`` keeps
those local breakers in step through a ``BreakerStore``:

* **Open for one, open for all.** When a local breaker opens or closes because
  of its own calls, the transition is published (a compare-and-set on the
  record's ``epoch``). Before every provider call the record is read (one
  ``HGETALL``); a record with an epoch this instance has not seen is adopted
  (``CircuitBreaker.adopt``): another desktop's open circuit opens ours with
  the same end of the open period, its closed circuit closes ours. Failures
  are counted per instance: the first desktop to see ``failure_threshold``
  failures in a row opens the provider for everyone.
* **One probe at a time across desktops.** When the open period has elapsed,
  a call the local breaker admits as a half-open probe must also take the
  provider's probe lease (``SET NX PX`` in a script that first checks the
  epoch); without it the call is refused as "being probed". The lease is
  given back with the probe's verdict, and expires by itself (``lease_s``)
  if its holder dies. (So across desktops at most one probe runs, whatever
  ``half_open_max_calls`` says.)
* **Redis away.** Every store operation has a deadline (``op_timeout_s``) and
  sits behind a breaker of its own (named ``"breakers"``): while Redis is down
  or slow, each instance runs on its local breakers alone, as if no Redis
  were configured, and its own transitions wait. When a call gets through
  again, the waiting transition is published (or, if the record is gone, the
  local state is), so the instances share state again.

Record layout (the ``RedisBreakerStore``; one hash per provider identity)::

    {prefix}{name}:{sha256(name, base_url)[:16]}         hash: epoch, state, until, by, reason
    {prefix}{name}:{sha256(name, base_url)[:16]}:probe   string: the lease holder, PX lease

``until`` is wall time (``time.time`` of the publisher), so desktops need
roughly synchronised clocks; a skew only moves when a probe may start, never
how many run (the lease decides that). Both keys carry TTLs, so the state of a
provider nobody calls any more expires (``state_ttl_s``).

Only providers that are the same service for every desktop are shared: HTTP
providers (name + base URL). A local model is each desktop's own and keeps a
purely local breaker.

Usage::

    shared = SharedBreakers(RedisBreakerStore(redis.client))
    shared.share(breaker, identity="primary|https://llm.example/v1", lease_s=35)
    if await shared.admit(breaker):
        try:
            ...                             # the provider call
            breaker.record_success(elapsed)
        finally:
            await shared.settle(breaker)    # publish a transition, return the lease
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, runtime_checkable

from core.breaker import BreakerState, CircuitBreaker, Clock
from core.config import BreakerSettings
from core.errors import CacheUnavailable
from core.types import BreakerTransition

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = [
    "STORE_BREAKER",
    "BreakerStore",
    "RedisBreakerStore",
    "SharedBreakers",
    "SharedRecord",
    "breaker_key",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# One failure sends every provider breaker to local-only mode (a question
# should not wait for a dead Redis twice); after 5 s one call tries Redis again.
STORE_BREAKER = BreakerSettings(failure_threshold=1, reset_timeout_s=5.0, success_threshold=1)


@dataclass(frozen=True, slots=True)
class SharedRecord:
    """A provider's circuit as published: CLOSED, or OPEN until ``until`` (wall time).

    An OPEN record whose ``until`` has passed means half-open: the next caller
    with the probe lease tries the provider.
    """

    epoch: int
    state: BreakerState
    until: float
    by: str  # the instance that published it
    reason: str


@runtime_checkable
class BreakerStore(Protocol):
    """Where the shared records live. Raises ``CacheUnavailable`` when unreachable."""

    async def read(self, key: str) -> SharedRecord | None: ...

    async def publish(
        self,
        key: str,
        expected_epoch: int,
        state: BreakerState,
        until: float,
        by: str,
        reason: str,
        *,
        ttl_s: float,
        lease_owner: str | None = None,
    ) -> int:
        """Write if the record's epoch is still ``expected_epoch`` (0: no record).

        Returns the new epoch (greater than any earlier one, also across a
        restart of the store), or 0 when another instance wrote first. A lease
        held by ``lease_owner`` is given back in the same step.
        """
        ...

    async def take_probe(self, key: str, expected_epoch: int, owner: str, lease_s: float) -> bool:
        """Take the probe lease if nobody holds it and the epoch is unchanged."""
        ...

    async def release_probe(self, key: str, owner: str) -> None:
        """Give the lease back (only if ``owner`` still holds it)."""
        ...


def breaker_key(identity: str, name: str, prefix: str = "archivist:breaker:") -> str:
    """The record's key: readable name plus a hash of the provider's identity."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"{prefix}{name}:{digest}"


# --------------------------------------------------------------------------- Redis

# KEYS: record, lease. ARGV: expected epoch, state, until, by, reason, ttl ms, lease owner.
_PUBLISH = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if cur ~= tonumber(ARGV[1]) then
  return 0
end
local epoch = cur + 1
if cur == 0 then
  -- A new record starts from the server's clock (microseconds), so an epoch
  -- seen before Redis lost its data is never mistaken for a new record's.
  local t = redis.call('TIME')
  epoch = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
redis.call('HSET', KEYS[1], 'epoch', epoch, 'state', ARGV[2], 'until', ARGV[3],
           'by', ARGV[4], 'reason', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if ARGV[7] ~= '' and redis.call('GET', KEYS[2]) == ARGV[7] then
  redis.call('DEL', KEYS[2])
end
return epoch
"""

# KEYS: record, lease. ARGV: expected epoch, owner, lease ms.
_TAKE_PROBE = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if cur ~= tonumber(ARGV[1]) then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 0
"""

# KEYS: lease. ARGV: owner.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisBreakerStore:
    """Shared records in Redis: a hash per provider, scripts for the atomic steps.

    Uses a client it is given (``RedisConnections.client``, owned by
    ``Services``) and never closes it. Each operation has its own deadline.
    """

    def __init__(self, client: aioredis.Redis, *, op_timeout_s: float = 0.25) -> None:
        self._client = client
        self.op_timeout_s = op_timeout_s
        self._publish: Any = client.register_script(_PUBLISH)
        self._take: Any = client.register_script(_TAKE_PROBE)
        self._release: Any = client.register_script(_RELEASE)

    async def read(self, key: str) -> SharedRecord | None:
        raw = cast(dict[bytes, bytes], await self._run(self._client.hgetall(key)))
        if not raw or b"epoch" not in raw:
            return None
        try:
            return SharedRecord(
                epoch=int(raw[b"epoch"]),
                state=BreakerState(raw[b"state"].decode()),
                until=float(raw.get(b"until", b"0")),
                by=raw.get(b"by", b"").decode(),
                reason=raw.get(b"reason", b"").decode(),
            )
        except (KeyError, ValueError):
            log.warning("breakers: ignoring a malformed record at %s", key)
            return None

    async def publish(
        self,
        key: str,
        expected_epoch: int,
        state: BreakerState,
        until: float,
        by: str,
        reason: str,
        *,
        ttl_s: float,
        lease_owner: str | None = None,
    ) -> int:
        args = [
            expected_epoch,
            state.value,
            repr(until),
            by,
            reason[:500],
            max(1, int(ttl_s * 1000)),
            lease_owner or "",
        ]
        epoch = await self._run(self._publish(keys=[key, key + ":probe"], args=args))
        return int(epoch)

    async def take_probe(self, key: str, expected_epoch: int, owner: str, lease_s: float) -> bool:
        args = [expected_epoch, owner, max(1, int(lease_s * 1000))]
        return bool(await self._run(self._take(keys=[key, key + ":probe"], args=args)))

    async def release_probe(self, key: str, owner: str) -> None:
        await self._run(self._release(keys=[key + ":probe"], args=[owner]))

    async def _run(self, call: Awaitable[T]) -> T:
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(self.op_timeout_s):
                return await call
        except TimeoutError as exc:
            raise CacheUnavailable(
                f"The shared breakers cannot reach Redis: no answer within {self.op_timeout_s:g} s"
            ) from exc
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"The shared breakers cannot reach Redis: {exc}") from exc


# --------------------------------------------------------------------------- sharing


class _Link:
    """What one instance knows about one shared breaker."""

    __slots__ = ("adopting", "identity", "key", "lease", "lease_s", "pending", "seen_epoch")

    def __init__(self, key: str, identity: str, lease_s: float) -> None:
        self.key = key
        self.identity = identity
        self.lease_s = lease_s
        self.seen_epoch = 0
        self.pending: BreakerTransition | None = None  # own transition not yet published
        self.lease: str | None = None  # the probe lease this instance holds
        self.adopting = False


class SharedBreakers:
    """Keeps local provider breakers in step through a ``BreakerStore``; see the module docstring.

    ``clock`` is wall time for the records' ``until`` (a test's ``FakeClock``
    serves both instances); ``store_clock`` drives the store's own breaker.
    """

    def __init__(
        self,
        store: BreakerStore,
        *,
        instance: str | None = None,
        clock: Clock = time.time,
        store_clock: Clock = time.monotonic,
        store_breaker: CircuitBreaker | None = None,
        state_ttl_s: float = 600.0,
    ) -> None:
        self._store = store
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._clock = clock
        self.breaker = store_breaker or CircuitBreaker("breakers", STORE_BREAKER, clock=store_clock)
        self._state_ttl_s = state_ttl_s
        self._links: dict[str, _Link] = {}  # by breaker name
        self._lease_no = 0

    # ------------------------------------------------------------------ set-up

    def share(self, breaker: CircuitBreaker, identity: str, *, lease_s: float = 60.0) -> None:
        """Share ``breaker`` under ``identity`` (e.g. ``"name|base_url"``).

        ``lease_s`` is the longest a probe may hold the lease: the provider's
        call timeout plus a margin, so a desktop that dies mid-probe blocks the
        others no longer than one call would.
        """
        if breaker.name in self._links:
            raise ValueError(f"breaker {breaker.name!r} is already shared")
        link = _Link(breaker_key(identity, breaker.name), identity, lease_s)
        self._links[breaker.name] = link

        def note(t: BreakerTransition) -> None:
            # Own opens and closes are published; half-open follows from time.
            if not link.adopting and t.new is not BreakerState.HALF_OPEN:
                link.pending = t

        breaker.add_listener(note)

    def shares(self, breaker: CircuitBreaker) -> bool:
        return breaker.name in self._links

    def key_of(self, breaker: CircuitBreaker) -> str:
        return self._links[breaker.name].key

    @property
    def local_only(self) -> bool:
        """True while Redis is away and every breaker decides alone."""
        return self.breaker.state is not BreakerState.CLOSED

    async def aclose(self) -> None:
        """Give back any lease still held (best effort); the client is not ours."""
        for link in self._links.values():
            if link.lease is not None:
                with contextlib.suppress(CacheUnavailable):
                    await self._store.release_probe(link.key, link.lease)
                link.lease = None

    # ------------------------------------------------------------------ per call

    async def admit(self, breaker: CircuitBreaker) -> bool:
        """``breaker.allow()`` after catching up with the shared state.

        A half-open probe is admitted only with the shared probe lease. When
        Redis cannot be reached, the local breaker decides alone.
        """
        link = self._links.get(breaker.name)
        if link is None:
            return breaker.allow()
        record_ok = await self._sync(breaker, link)
        probing = breaker.state is BreakerState.HALF_OPEN
        if not breaker.allow():
            return False
        if not (probing and record_ok):
            return True
        self._lease_no += 1
        owner = f"{self.instance}#{self._lease_no}"
        got = await self._store_call(
            lambda: self._store.take_probe(link.key, link.seen_epoch, owner, link.lease_s)
        )
        if got is None:  # Redis went away just now: probe on the local breaker's word
            return True
        if not got:
            breaker.release()  # another desktop is probing
            return False
        link.lease = owner
        return True

    async def settle(self, breaker: CircuitBreaker) -> None:
        """After a call's verdict: publish an own transition, give back the lease."""
        link = self._links.get(breaker.name)
        if link is None:
            return
        if link.pending is not None:
            await self._publish(breaker, link, link.pending.reason)
        if link.lease is not None:
            owner, link.lease = link.lease, None
            await self._store_call(lambda: self._store.release_probe(link.key, owner))

    # ------------------------------------------------------------------ internals

    async def _sync(self, breaker: CircuitBreaker, link: _Link) -> bool:
        """Read the record, publish what waits, adopt what is new. False: Redis away."""
        found = await self._store_call(lambda: self._read(link))
        if found is None:
            return False
        record = found[0]
        if link.pending is not None:
            # Our own transition (made while Redis was away, or not yet sent) wins
            # unless another instance published since we last looked.
            if record is None or record.epoch == link.seen_epoch:
                link.seen_epoch = 0 if record is None else record.epoch
                return await self._publish(breaker, link, link.pending.reason)
            link.pending = None
        if record is None:
            link.seen_epoch = 0
            if breaker.state is not BreakerState.CLOSED:
                # The record expired or Redis lost it: put our open circuit back.
                last = breaker.snapshot().last_error or "failures"
                return await self._publish(breaker, link, f"re-published ({last})")
            return True
        if record.epoch != link.seen_epoch:
            self._adopt(breaker, link, record)
        return True

    async def _read(self, link: _Link) -> tuple[SharedRecord | None]:
        return (await self._store.read(link.key),)

    def _adopt(self, breaker: CircuitBreaker, link: _Link, record: SharedRecord) -> None:
        link.seen_epoch = record.epoch
        if record.by == self.instance:
            return
        reason = f"shared by {record.by}: {record.reason}"
        link.adopting = True
        try:
            if record.state is BreakerState.CLOSED:
                breaker.adopt(BreakerState.CLOSED, reason)
            else:
                left = record.until - self._clock()
                if left <= 0 and breaker.state is BreakerState.HALF_OPEN:
                    return  # already where the record says
                breaker.adopt(BreakerState.OPEN, reason, open_for_s=max(0.0, left))
        finally:
            link.adopting = False

    async def _publish(self, breaker: CircuitBreaker, link: _Link, reason: str) -> bool:
        """Write the local state as the shared record. False: Redis away (it waits)."""
        state = breaker.state
        if state is BreakerState.CLOSED:
            until = 0.0
        else:  # OPEN, or already half-open again: publish when the open period ends
            until = self._clock() + (breaker.seconds_until_half_open() or 0.0)
            state = BreakerState.OPEN
        lease = link.lease
        epoch = await self._store_call(
            lambda: self._store.publish(
                link.key,
                link.seen_epoch,
                state,
                until,
                self.instance,
                reason,
                ttl_s=max(self._state_ttl_s, breaker.settings.reset_timeout_s * 2),
                lease_owner=lease,
            )
        )
        if epoch is None:
            link.pending = link.pending or _waiting(breaker, reason)
            return False  # Redis away: the transition waits
        link.pending = None
        if epoch:
            link.seen_epoch = epoch
            if lease is not None and link.lease == lease:
                link.lease = None  # given back in the same step
        # else: another instance wrote first; the next admit() adopts its record
        return True

    async def _store_call(self, fn: Callable[[], Awaitable[T]]) -> T | None:
        """Run one store operation behind the store's breaker; None when Redis is away."""
        if not self.breaker.allow():
            return None
        try:
            result = await fn()
        except CacheUnavailable as exc:
            self.breaker.record_failure(exc)
            return None
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.record_success()
        return result


def _waiting(breaker: CircuitBreaker, reason: str) -> BreakerTransition:
    """A transition to publish once Redis is back (the local state is what counts)."""
    return BreakerTransition(breaker.name, breaker.state, breaker.state, reason, 0.0)
