"""The two-layer cache, safe to trust.

Layer 1 (query embeddings): ``sha256(model id + normalized query) -> float32 vector``,
24 h TTL. It saves the embedding step for a repeated question.

Layer 2 (semantic results): the answer payload (text, citations, provider) with the
question and its unit embedding. A new question is served a cached answer when the
most similar cached question of the same *namespace* (knowledge-base version,
provider/model, prompt version) is close enough (cosine >= 0.92, 2 h TTL) **and**
the correctness guard (:mod:`core.cache.guard`) finds no salient difference:
negation, numbers, dates, names, antonyms, quantifiers, question word, argument
order. ``guard_check`` says why it refused.

Backends sit behind :class:`~core.cache.backends.CacheBackend`: the embedded one
(in-process + SQLite file) and :class:`~core.cache.redis_backend.RedisBackend`
(on the shared client of :class:`~core.redisconn.RedisConnections`).
:class:`~core.cache.service.CacheService` uses Redis while it is healthy, falls back
to the embedded backend behind the application's one circuit breaker
(:class:`~core.breaker.CircuitBreaker`, named ``"cache"``, whose transitions its
owner can audit), and never raises for a backend fault (a fault is a miss).
Invalidation: ``invalidate_documents`` (answers that cited the documents),
``invalidate_all`` (a generation bump, no key walk) and ``evict`` (one wrong answer).
"""

from core.cache.backends import CacheBackend, Candidate, EmbeddedBackend, ResultEntry
from core.cache.guard import GuardVerdict, guard_check, salient_equivalent
from core.cache.normalize import embedding_key, make_namespace, normalize_query
from core.cache.redis_backend import RedisBackend, knowledge_base_scope
from core.cache.service import CacheHealth, CacheHit, CacheMetrics, CacheService, LayerMetrics

__all__ = [
    "CacheBackend",
    "CacheHealth",
    "CacheHit",
    "CacheMetrics",
    "CacheService",
    "Candidate",
    "EmbeddedBackend",
    "GuardVerdict",
    "LayerMetrics",
    "RedisBackend",
    "ResultEntry",
    "embedding_key",
    "guard_check",
    "knowledge_base_scope",
    "make_namespace",
    "normalize_query",
    "salient_equivalent",
]
