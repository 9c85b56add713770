"""The provider interface every LLM backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from core.types import GenerationRequest


@runtime_checkable
class Provider(Protocol):
    """An LLM (or stand-in) that streams an answer to a grounded question.

    ``stream`` yields text pieces as they arrive. It raises a ``ProviderError``
    subclass on failure: ``ProviderUnavailable`` (connection, timeout, 5xx: the
    breaker counts it), ``ProviderRejected`` (4xx: shown, not counted) or
    ``ProviderRateLimited`` (429 with ``retry_after_s``).
    """

    name: str
    kind: str

    def stream(self, request: GenerationRequest) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...
