"""Small hand-written fakes with real behaviour for the provider tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from core.errors import ProviderError
from core.types import GenerationRequest


class StaticProvider:
    """An in-process provider that streams fixed pieces or raises a given error.

    Stands in for the offline extractive provider in router tests.
    """

    kind = "static"

    def __init__(
        self,
        name: str,
        pieces: Sequence[str] = ("From", " your", " documents."),
        error: ProviderError | None = None,
        error_after: int = 0,
    ) -> None:
        self.name = name
        self.pieces = tuple(pieces)
        self.error = error
        self.error_after = error_after
        self.calls: list[GenerationRequest] = []
        self.closed = False

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.calls.append(request)
        for i, piece in enumerate(self.pieces):
            if self.error is not None and i == self.error_after:
                raise self.error
            await asyncio.sleep(0)
            yield piece
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


class RecordingSleep:
    """An instant ``asyncio.sleep`` stand-in that records the delays asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)
