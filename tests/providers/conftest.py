"""Fixtures for the provider tests: a fake clock and the stand-in LLM server."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

# `tests.support` lives next to `core`; make the repository root importable even
# when pytest is started as `.venv/bin/pytest` (which does not add the cwd).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.clock import FakeClock  # noqa: E402
from tests.support.fake_llm import FakeLLM  # noqa: E402


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def second_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    """One shared client (as ``Services`` would share one); ``verify=False`` only
    skips loading CA certificates (~50 ms) since the stand-in speaks plain HTTP."""
    async with httpx.AsyncClient(verify=False) as client:
        yield client
