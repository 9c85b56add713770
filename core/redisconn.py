"""One Redis connection pool per URL, shared by the cache and the rate limiter.

``Services`` builds one ``RedisConnections`` for ``settings.redis_url`` and hands
its ``client`` to :class:`~core.cache.redis_backend.RedisBackend` and to
:class:`~core.security.ratelimit.RedisRateLimiter`; neither closes it. Its
``aclose()`` runs after both users are closed.

    redis = RedisConnections("redis://127.0.0.1:6379/0")
    cache = CacheService(settings.cache, RedisBackend(redis.client), embedded)
    limiter = FailoverRateLimiter(RedisRateLimiter(redis.client, buckets), local)
    ...
    await limiter.aclose(); await cache.aclose()
    await redis.aclose()

Timeouts. A socket timeout belongs to a pool's connections, so one pool has
one: ``socket_timeout_s`` (2 s), a safety net that ends a read from a server
that stopped answering. Everything on the pool fits under it:

* callers that need a shorter deadline set their own around the call
  (``asyncio.timeout``): the cache service gives each operation 0.25 s, the
  rate limiter each request 0.25 s. redis-py drops a connection whose command
  was cancelled, so a late reply never reaches the next command;
* the cache's change-log reader (``XREAD BLOCK``) asks the server to block for
  at most half the socket timeout (``RedisBackend`` clamps it), so a server that
  does answer always answers before the socket gives up.

That is why one pool suffices: the reader used to have a client of its own
only to get a longer socket timeout.

redis-py retries nothing here (``Retry(NoBackoff(), 0)``): each caller's circuit
breaker decides when Redis is tried again, and a retry inside redis-py would
only stretch the time a caller waits for a dead server.

Building the pool does no I/O (the first connection is opened by the first
command, in the loop that sends it), so Redis may be down when this is built;
``Services`` builds it inside its ``start()``, in the running loop.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = ["RedisConnections"]


class RedisConnections:
    """Owns the connection pool and the client for one Redis URL.

    ``client`` may be used by any number of components at once (each command
    borrows a pooled connection); only the owner calls ``aclose()``.
    ``instance`` names this process among all that share the Redis (host, pid
    and a random tail): its rate-limit sessions and its shared breaker records.
    """

    def __init__(
        self,
        url: str,
        *,
        socket_timeout_s: float = 2.0,
        connect_timeout_s: float = 1.0,
        max_connections: int | None = None,
        client_name: str = "archivist",
    ) -> None:
        if socket_timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError("Redis timeouts must be positive")
        self.url = url
        self.socket_timeout_s = socket_timeout_s
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._pool: aioredis.ConnectionPool = aioredis.ConnectionPool.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=min(connect_timeout_s, socket_timeout_s),
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,  # None: redis-py's default
            client_name=client_name,
            decode_responses=False,
        )
        self._client: aioredis.Redis = aioredis.Redis(connection_pool=self._pool)
        self._closed = False

    @property
    def client(self) -> aioredis.Redis:
        """The shared client (bytes in, bytes out). Do not close it: ``aclose()`` does."""
        if self._closed:
            raise RuntimeError("RedisConnections.aclose() already ran")
        return self._client

    @property
    def pool(self) -> aioredis.ConnectionPool:
        return self._pool

    async def aclose(self) -> None:
        """Close every pooled connection (idempotent); call it after the users are closed."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
        with contextlib.suppress(RedisError, OSError):
            await self._pool.aclose()

    async def __aenter__(self) -> RedisConnections:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
