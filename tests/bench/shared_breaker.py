"""What sharing provider breakers through Redis adds to each call.

    .venv/bin/python tests/bench/shared_breaker.py [--calls 2000] [--asks 300] [--json]

Starts a real redis-server and the stand-in LLM server on 127.0.0.1 and
measures, interleaving local and shared so that machine noise hits both alike:

* gate: the breaker's part of one call on a healthy provider: ``allow()`` +
  ``record_success()`` (local) against ``await shared.admit()`` +
  ``record_success()`` + ``await shared.settle()`` (shared: one HGETALL);
* open gate: the same while the circuit is open (a refused call);
* ask: a whole ``ProviderRouter.stream`` against the stand-in (4 tokens),
  local against shared;
* Redis away: the gate while Redis is stopped (the first call pays the
  refused connection, then the store's breaker keeps calls local).

Reports p50/p95 per call in microseconds and the size of a provider's record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx

from core.breaker import CircuitBreaker
from core.breaker_shared import RedisBreakerStore, SharedBreakers
from core.config import BreakerSettings, ProviderSettings
from core.providers.openai import OpenAIProvider
from core.providers.router import ProviderRouter
from core.redisconn import RedisConnections
from core.types import ContextPassage, GenerationRequest
from tests.support.fake_llm import FakeLLM, Succeed
from tests.support.redis_server import RedisServer

REQUEST = GenerationRequest(
    question="When does the ferry leave?",
    passages=(ContextPassage(1, "/docs/ferry.pdf", 1, "The morning ferry leaves at 07:15."),),
)
SETTINGS = BreakerSettings(failure_threshold=3, reset_timeout_s=3600.0, success_threshold=1)


def percentiles(samples_us: list[float]) -> dict[str, float]:
    ordered = sorted(samples_us)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(p95, 1), "n": len(ordered)}


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1e6


def provider(url: str, client: httpx.AsyncClient) -> OpenAIProvider:
    settings = ProviderSettings(name="primary", kind="openai", base_url=url, timeout_s=5.0)
    return OpenAIProvider(settings, client=client, api_key="")


async def run(calls: int, asks: int) -> dict[str, Any]:
    result: dict[str, Any] = {"calls": calls, "asks": asks}
    tokens = ("The ferry", " leaves", " at", " 07:15.")
    with RedisServer() as server, FakeLLM(Succeed(tokens)) as llm:
        async with RedisConnections(server.url) as redis, httpx.AsyncClient() as http:
            shared = SharedBreakers(RedisBreakerStore(redis.client), instance="bench")
            local_b = CircuitBreaker("primary", SETTINGS)
            shared_b = CircuitBreaker("primary", SETTINGS)
            shared.share(shared_b, f"primary|{llm.base_url}")
            # A record exists, as it would once any desktop had opened the circuit.
            shared_b.force_open()
            shared_b.force_closed()
            assert await shared.admit(shared_b)
            shared_b.record_success()
            await shared.settle(shared_b)
            key = shared.key_of(shared_b)
            record = await redis.client.hgetall(key)
            result["record_bytes"] = sum(len(k) + len(v) for k, v in record.items())
            result["record_memory_usage_bytes"] = await redis.client.memory_usage(key)

            async def local_gate() -> None:
                assert local_b.allow()
                local_b.record_success(0.01)

            async def shared_gate() -> None:
                assert await shared.admit(shared_b)
                shared_b.record_success(0.01)
                await shared.settle(shared_b)

            result["gate_us"] = await interleaved(local_gate, shared_gate, calls)

            local_b.force_open()
            shared_b.force_open()
            await shared.admit(shared_b)  # publishes the open circuit

            async def local_open() -> None:
                assert not local_b.allow()

            async def shared_open() -> None:
                assert not await shared.admit(shared_b)

            result["open_gate_us"] = await interleaved(local_open, shared_open, calls)
            local_b.force_closed()
            shared_b.force_closed()
            await shared.admit(shared_b)
            await shared.settle(shared_b)

            local_router = ProviderRouter([(provider(llm.base_url, http), local_b)], None)
            shared_router = ProviderRouter(
                [(provider(llm.base_url, http), shared_b)], None, shared=shared
            )

            async def ask(router: ProviderRouter) -> None:
                async for _ in router.stream(REQUEST):
                    pass

            for _ in range(20):  # warm the HTTP and Redis connections
                await ask(local_router)
                await ask(shared_router)
            result["ask_us"] = await interleaved(
                lambda: ask(local_router), lambda: ask(shared_router), asks
            )

            server.stop()
            first = await timed(shared_gate)
            rest = [await timed(shared_gate) for _ in range(calls)]
            result["redis_away_us"] = {
                "first_call": round(first, 1),
                "then": percentiles(rest),
                "local_only": shared.local_only,
            }
            await local_router.aclose()
            await shared_router.aclose()
    return result


async def interleaved(
    local: Callable[[], Awaitable[object]], shared: Callable[[], Awaitable[object]], n: int
) -> dict[str, Any]:
    a: list[float] = []
    b: list[float] = []
    for i in range(n):
        first, second = (local, shared) if i % 2 == 0 else (shared, local)
        t1 = await timed(first)
        t2 = await timed(second)
        if first is local:
            a.append(t1)
            b.append(t2)
        else:
            b.append(t1)
            a.append(t2)
    pl, ps = percentiles(a), percentiles(b)
    return {
        "local": pl,
        "shared": ps,
        "added_p50": round(ps["p50"] - pl["p50"], 1),
        "added_p95": round(ps["p95"] - pl["p95"], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="gate measurements")
    parser.add_argument("--asks", type=int, default=300, help="whole router calls")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.asks))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"record: {result['record_bytes']} bytes of fields "
        f"({result['record_memory_usage_bytes']} bytes in Redis)"
    )
    for name in ("gate_us", "open_gate_us", "ask_us"):
        r = result[name]
        print(
            f"{name[:-3]:>9}: local p50 {r['local']['p50']} us p95 {r['local']['p95']} us | "
            f"shared p50 {r['shared']['p50']} us p95 {r['shared']['p95']} us | "
            f"added p50 {r['added_p50']} us p95 {r['added_p95']} us (n={r['local']['n']})"
        )
    away = result["redis_away_us"]
    print(
        f"redis away: first call {away['first_call']} us, then p50 {away['then']['p50']} us "
        f"p95 {away['then']['p95']} us (local only: {away['local_only']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
