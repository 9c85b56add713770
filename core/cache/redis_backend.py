"""The Redis cache backend (redis-py asyncio).

Layout under ``prefix`` (default ``archivist:cache``)::

    {p}:emb:{sha256}           string   float32 bytes, PX = embedding TTL
    {p}:gen                    string   the answer generation (INCR = invalidate_all)
    {p}:g{gen}:res:{entry_id}  hash     ns, q, vec, payload, docs, created, expires; PX = TTL
    {p}:g{gen}:doc:{doc_id}    set      entry ids citing the document; PX refreshed on add
    {p}:changes                stream   put / del / gen events (MAXLEN ~ change_log_len)

A semantic lookup never walks keys: every process keeps the cached questions'
unit vectors in an in-process :class:`NamespaceIndexes` (loaded at start with SCAN
in batches, then kept current from the change stream by a background task), so a
lookup is a local matrix product plus ONE round trip (``fetch``: GET gen + HGETALL
in one pipeline) that confirms the entry still exists, has not expired and belongs
to the current generation. The change log is an optimisation only: a missed event
costs a hit, never a wrong answer, because ``fetch`` is the arbiter.

``KEYS`` is never sent. ``invalidate_all`` bumps the generation (O(1)); the old
generation's keys expire on their own TTL. ``invalidate_documents`` reads the
per-document sets and UNLINKs in batches, so other clients are not stalled.

Connections. The backend talks through a client it is given, normally the
shared one of :class:`~core.redisconn.RedisConnections` (one pool per URL, owned
by ``Services``), and never closes it. The change-log reader borrows a pooled
connection for each ``XREAD BLOCK`` and blocks for at most half the pool's
socket timeout, so it needs no client of its own. ``RedisBackend.from_url``
builds a backend with connections of its own (tests, benchmarks); that backend
closes them in ``aclose()``.

Scope. Desktops that share a Redis share cached answers only when they share
the knowledge base: ``Services`` puts :func:`knowledge_base_scope` of its
database in the prefix (``archivist:cache:{scope}``). The answer namespace
holds the knowledge base's *version*, a counter of stored documents, which two
desktops with their own databases reach alike by accident; without the scope
one desktop was served another's answers, quoting documents it does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
import sqlalchemy as sa
from redis.exceptions import RedisError

from core.cache.backends import (
    Candidate,
    Clock,
    NamespaceIndexes,
    ResultEntry,
    Vector,
    as_vector,
    vector_from_bytes,
    vector_to_bytes,
)
from core.errors import CacheUnavailable
from core.redisconn import RedisConnections

log = logging.getLogger(__name__)

T = TypeVar("T")

_SCAN_BATCH = 1_000
_DELETE_BATCH = 500


class RedisBackend:
    """Cache storage in Redis with a local, synchronised vector index.

    backend = RedisBackend(redis.client)   # the shared client; never closed here
    await backend.start()          # raises CacheUnavailable if Redis is down,
    ...                            # but keeps trying to sync in the background
    await backend.aclose()
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "archivist:cache",
        clock: Clock = time.time,
        sync_block_ms: int = 1_000,
        retry_delay_s: float = 1.0,
        change_log_len: int = 10_000,
    ) -> None:
        self.round_trips = 0
        self._given = client
        self._owned: RedisConnections | None = None  # set by from_url
        self._p = prefix
        self._clock = clock
        self._sync_block_ms = _block_ms_for(client, sync_block_ms)
        self._retry_delay_s = retry_delay_s
        self._change_log_len = change_log_len
        self._client: aioredis.Redis | None = None  # set while started
        self._index = NamespaceIndexes()
        self._gen = 0
        self._last_id = b"0-0"
        self._needs_reload = True
        self._sync_task: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()
        self._closing = False

    @property
    def name(self) -> str:
        return "redis"

    @property
    def generation(self) -> int:
        return self._gen

    @classmethod
    def from_url(cls, url: str, *, socket_timeout_s: float = 2.0, **options: Any) -> RedisBackend:
        """A backend with connections of its own, closed by its ``aclose()``.

        For tests and benchmarks; the application shares ``Services``' client.
        ``options`` are those of ``RedisBackend()``.
        """
        connections = RedisConnections(url, socket_timeout_s=socket_timeout_s)
        backend = cls(connections.client, **options)
        backend._owned = connections
        return backend

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the index; on failure raise but keep syncing in the background."""
        if self._client is not None:
            return
        self._client = self._given
        self._closing = False
        try:
            await self.sync_now()
        finally:
            self._sync_task = asyncio.create_task(self._sync_loop(), name="cache-redis-sync")

    async def aclose(self) -> None:
        self._closing = True
        task, self._sync_task = self._sync_task, None
        # redis-py may turn a cancellation inside a blocking read into a timeout
        # error, so cancel until the task is really done (it also checks _closing).
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if task is not None and not task.cancelled():
            with contextlib.suppress(BaseException):
                task.result()
        self._client = None
        owned, self._owned = self._owned, None
        if owned is not None:  # a shared client is its owner's to close
            await owned.aclose()

    async def ping(self) -> None:
        await self._call(lambda r: r.ping())

    # ------------------------------------------------------------------ layer 1

    async def get_embedding(self, key: str) -> Vector | None:
        raw = cast(bytes | None, await self._call(lambda r: r.get(f"{self._p}:emb:{key}")))
        return None if raw is None else vector_from_bytes(raw)

    async def put_embedding(self, key: str, vec: Vector, ttl_s: float) -> None:
        data = vector_to_bytes(as_vector(vec))
        ttl_ms = max(1, int(ttl_s * 1000))
        await self._call(lambda r: r.set(f"{self._p}:emb:{key}", data, px=ttl_ms))

    # ------------------------------------------------------------------ layer 2

    def _res_key(self, entry_id: str, gen: int | None = None) -> str:
        return f"{self._p}:g{self._gen if gen is None else gen}:res:{entry_id}"

    def _doc_key(self, doc_id: int) -> str:
        return f"{self._p}:g{self._gen}:doc:{doc_id}"

    async def search(
        self, namespace: str, vec: Vector, min_similarity: float, limit: int
    ) -> list[Candidate]:
        if self._client is None:
            raise CacheUnavailable("The Redis cache is not started.")
        return await self._index.search(namespace, vec, min_similarity, limit, self._clock())

    async def fetch(self, entry_id: str) -> ResultEntry | None:
        gen = self._gen

        async def run(r: aioredis.Redis) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.get(f"{self._p}:gen")
            pipe.hgetall(self._res_key(entry_id, gen))
            return list(await pipe.execute())

        raw_gen, fields = await self._call(run)
        current = int(raw_gen or 0)
        if current != gen:
            self._switch_generation(current)
            return None
        if not fields:
            self._index.remove(entry_id)
            return None
        entry = _entry_from_hash(entry_id, fields)
        if entry.expires_at <= self._clock():
            self._index.remove(entry_id)
            return None
        return entry

    async def put_result(self, entry: ResultEntry) -> None:
        ttl_ms = max(1, int((entry.expires_at - self._clock()) * 1000))
        vec = vector_to_bytes(entry.vector)
        mapping: dict[str, bytes | str] = {
            "ns": entry.namespace,
            "q": entry.question,
            "vec": vec,
            "payload": json.dumps(entry.payload),
            "docs": json.dumps(list(entry.document_ids)),
            "created": repr(entry.created_at),
            "expires": repr(entry.expires_at),
        }
        key = self._res_key(entry.entry_id)
        event: dict[str, bytes | str] = {
            "op": "put",
            "gen": str(self._gen),
            "id": entry.entry_id,
            "ns": entry.namespace,
            "q": entry.question,
            "vec": vec,
            "expires": repr(entry.expires_at),
        }

        async def run(r: aioredis.Redis) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.pexpire(key, ttl_ms)
            for doc in entry.document_ids:
                pipe.sadd(self._doc_key(doc), entry.entry_id)
                pipe.pexpire(self._doc_key(doc), ttl_ms)
            pipe.xadd(
                f"{self._p}:changes",
                event,  # type: ignore[arg-type]
                maxlen=self._change_log_len,
                approximate=True,
            )
            await pipe.execute()

        await self._call(run)
        self._index.add(
            entry.entry_id, entry.namespace, entry.question, entry.vector, entry.expires_at
        )

    async def evict(self, entry_id: str) -> bool:
        removed = await self._delete_entries([entry_id])
        return removed == 1

    async def invalidate_documents(self, doc_ids: Iterable[int]) -> int:
        docs = sorted({int(d) for d in doc_ids})
        if not docs:
            return 0

        async def members(r: aioredis.Redis) -> list[set[bytes]]:
            pipe = r.pipeline(transaction=False)
            for doc in docs:
                pipe.smembers(self._doc_key(doc))
            return list(await pipe.execute())

        ids: set[str] = set()
        for group in await self._call(members):
            ids.update(m.decode() for m in group)
        removed = await self._delete_entries(sorted(ids))
        doc_keys = [self._doc_key(d) for d in docs]
        for i in range(0, len(doc_keys), _DELETE_BATCH):
            batch = doc_keys[i : i + _DELETE_BATCH]
            await self._call(lambda r, b=batch: r.unlink(*b))  # type: ignore[misc]
        return removed

    async def invalidate_all(self) -> None:
        async def run(r: aioredis.Redis) -> int:
            pipe = r.pipeline(transaction=True)
            pipe.incr(f"{self._p}:gen")
            pipe.xadd(
                f"{self._p}:changes",
                {"op": "gen"},
                maxlen=self._change_log_len,
                approximate=True,
            )
            new_gen, _ = await pipe.execute()
            return int(new_gen)

        self._switch_generation(await self._call(run))

    async def entry_count(self) -> int:
        return len(self._index)

    # ------------------------------------------------------------------ sync

    async def sync_now(self) -> None:
        """Apply pending change-log events (or reload the whole index if needed)."""
        async with self._sync_lock:
            if not self._needs_reload:
                await self._read_changes(block_ms=None)
            if self._needs_reload:
                await self._reload()

    async def _sync_loop(self) -> None:
        while not self._closing:
            try:
                async with self._sync_lock:
                    if self._needs_reload:
                        await self._reload()
                        continue
                await self._read_changes(block_ms=self._sync_block_ms)
            except asyncio.CancelledError:
                raise
            except (CacheUnavailable, RedisError, OSError, ValueError) as exc:
                me = asyncio.current_task()
                if self._closing or (me is not None and me.cancelling()):
                    raise asyncio.CancelledError from exc  # a swallowed cancellation
                self._needs_reload = True
                log.debug("cache: redis sync failed (%s); retrying", exc)
                await asyncio.sleep(self._retry_delay_s)

    async def _reload(self) -> None:
        """Rebuild the index from Redis: SCAN in batches + pipelined HMGET."""
        client = self._require(self._client)
        try:
            last = await client.xrevrange(f"{self._p}:changes", count=1)
            gen = int(await client.get(f"{self._p}:gen") or 0)
            fresh = NamespaceIndexes()
            now = self._clock()
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{self._p}:g{gen}:res:*", count=_SCAN_BATCH):
                batch.append(key)
                if len(batch) >= _SCAN_BATCH:
                    await self._load_batch(client, batch, fresh, now)
                    batch = []
            if batch:
                await self._load_batch(client, batch, fresh, now)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"Redis is unreachable: {exc}") from exc
        self._index = fresh
        self._gen = gen
        self._last_id = cast(bytes, last[0][0]) if last else b"0-0"
        self._needs_reload = False

    async def _load_batch(
        self, client: aioredis.Redis, keys: list[bytes], into: NamespaceIndexes, now: float
    ) -> None:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, ["ns", "q", "vec", "expires"])
        for key, (ns, q, vec, exp) in zip(keys, await pipe.execute(), strict=True):
            if ns is None or vec is None or float(exp) <= now:
                continue
            entry_id = key.decode().rsplit(":", 1)[1]
            into.add(entry_id, ns.decode(), q.decode(), vector_from_bytes(vec), float(exp))

    async def _read_changes(self, block_ms: int | None) -> None:
        client = self._require(self._client)
        try:
            reply = await client.xread(
                {f"{self._p}:changes": self._last_id}, count=500, block=block_ms
            )
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"Redis is unreachable: {exc}") from exc
        streams = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], reply or [])
        for _stream, events in streams:
            for event_id, fields in events:
                self._apply(fields)
                self._last_id = event_id

    def _apply(self, f: dict[bytes, bytes]) -> None:
        op = f.get(b"op")
        if op == b"gen":
            self._needs_reload = True
            self._index.clear()
            return
        if int(f.get(b"gen", b"0")) != self._gen:
            return
        if op == b"put":
            self._index.add(
                f[b"id"].decode(),
                f[b"ns"].decode(),
                f[b"q"].decode(),
                vector_from_bytes(f[b"vec"]),
                float(f[b"expires"]),
            )
        elif op == b"del":
            for entry_id in f[b"ids"].decode().split(","):
                self._index.remove(entry_id)

    def _switch_generation(self, gen: int) -> None:
        if gen != self._gen:
            self._gen = gen
            self._index.clear()
            self._needs_reload = True

    # ------------------------------------------------------------------ helpers

    async def _delete_entries(self, entry_ids: list[str]) -> int:
        removed = 0
        gen = str(self._gen)
        for i in range(0, len(entry_ids), _DELETE_BATCH):
            batch = entry_ids[i : i + _DELETE_BATCH]

            async def run(r: aioredis.Redis, batch: list[str] = batch) -> int:
                pipe = r.pipeline(transaction=True)
                pipe.unlink(*[self._res_key(e) for e in batch])
                pipe.xadd(
                    f"{self._p}:changes",
                    {"op": "del", "gen": gen, "ids": ",".join(batch)},
                    maxlen=self._change_log_len,
                    approximate=True,
                )
                count, _ = await pipe.execute()
                return int(count)

            removed += await self._call(run)
            for entry_id in batch:
                self._index.remove(entry_id)
        return removed

    @staticmethod
    def _require(client: aioredis.Redis | None) -> aioredis.Redis:
        if client is None:
            raise CacheUnavailable("The Redis cache is not started.")
        return client

    async def _call(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        client = self._require(self._client)
        try:
            result = await fn(client)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"Redis is unreachable: {exc}") from exc
        # Counted so the service's breaker hears only of calls that reached Redis:
        # a lookup answered from the local matrix says nothing about Redis' health.
        self.round_trips += 1
        return result


def knowledge_base_scope(database_url: str) -> str:
    """A short id naming the knowledge base behind ``database_url``, for Redis keys.

    A server database (PostgreSQL) is named by its host, port and database, not
    by who logs in, so every desktop on it gets the same scope. A SQLite file is
    one desktop's own (unless it sits on a share): its scope is a random id kept
    in a file beside it (``<db>.cache-scope``), made on first use, so it follows
    the database wherever it is opened. An in-memory database gets a new id.
    """
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "sqlite":
        name = f"{url.get_backend_name()}://{url.host or ''}:{url.port or ''}/{url.database or ''}"
        return hashlib.sha256(name.encode()).hexdigest()[:16]
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return uuid.uuid4().hex[:16]
    marker = Path(url.database + ".cache-scope")
    try:
        if not marker.exists():
            # Written whole, then linked into place: a reader never sees it half made,
            # and of two desktops creating it at once the first link wins.
            tmp = marker.with_name(f"{marker.name}.{uuid.uuid4().hex}")
            tmp.write_text(uuid.uuid4().hex[:16] + "\n", encoding="utf-8")
            try:
                os.link(tmp, marker)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        scope = marker.read_text(encoding="utf-8").strip()
    except OSError as exc:
        log.warning("cache: no scope file beside the database (%s); not sharing answers", exc)
        return uuid.uuid4().hex[:16]
    return scope or uuid.uuid4().hex[:16]


def _entry_from_hash(entry_id: str, h: dict[bytes, bytes]) -> ResultEntry:
    return ResultEntry(
        entry_id=entry_id,
        namespace=h[b"ns"].decode(),
        question=h[b"q"].decode(),
        vector=vector_from_bytes(h[b"vec"]),
        payload=json.loads(h[b"payload"]),
        document_ids=tuple(int(d) for d in json.loads(h[b"docs"])),
        created_at=float(h[b"created"]),
        expires_at=float(h[b"expires"]),
    )


def _block_ms_for(client: aioredis.Redis, wanted_ms: int) -> int:
    """How long one XREAD may block: at most half the pool's socket timeout.

    A blocked read waits on the socket; if the server held it past the socket
    timeout, redis-py would take the silence for a dead server.
    """
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if timeout is None:
        return wanted_ms
    return max(1, min(wanted_ms, int(float(timeout) * 1000 / 2)))
