"""Archivist's exceptions.

The tree splits faults of the environment (a corrupt file, a provider that is
down, a bad setting) from bugs. Every ``ArchivistError`` carries a sentence a
person can read; the CLI prints it on one line and the GUI shows it. Anything
that is *not* an ``ArchivistError`` is a bug and goes to the crash reporter.

    ArchivistError
    ├── ConfigError            an invalid setting (names the key and the file)
    ├── UsageError             a bad request from the user (empty question, ...)
    ├── IngestError            one file could not be ingested (the batch goes on)
    │   └── UnsupportedFile
    ├── StorageError           the database could not be opened or migrated
    ├── ModelError             a model could not be found or loaded
    ├── ProviderError          an LLM provider call failed
    │   ├── ProviderUnavailable    connection refused, 5xx, timeout: counts for the breaker
    │   ├── ProviderRejected       4xx (bad request, auth): shown, does not trip the breaker
    │   ├── ProviderRateLimited    429, with retry_after_s
    │   └── CircuitOpen            the breaker refused the call without trying
    ├── CacheUnavailable       the cache backend is unreachable (we fall back)
    └── RateLimited            the user asked too often (with retry_after_s)
"""

from __future__ import annotations


class ArchivistError(Exception):
    """An expected failure with a message meant for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ArchivistError):
    def __init__(self, message: str, *, key: str | None = None, file: str | None = None) -> None:
        where = []
        if key:
            where.append(f"setting '{key}'")
        if file:
            where.append(f"in {file}")
        text = f"{' '.join(where)}: {message}" if where else message
        super().__init__(f"Invalid configuration: {text}")
        self.key = key
        self.file = file


class UsageError(ArchivistError):
    pass


class IngestError(ArchivistError):
    pass


class UnsupportedFile(IngestError):
    pass


class StorageError(ArchivistError):
    pass


class ModelError(ArchivistError):
    pass


class ProviderError(ArchivistError):
    def __init__(self, message: str, *, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider


class ProviderUnavailable(ProviderError):
    pass


class ProviderRejected(ProviderError):
    def __init__(self, message: str, *, provider: str = "", status: int | None = None) -> None:
        super().__init__(message, provider=provider)
        self.status = status


class ProviderRateLimited(ProviderError):
    def __init__(
        self, message: str, *, provider: str = "", retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, provider=provider)
        self.retry_after_s = retry_after_s


class CircuitOpen(ProviderError):
    def __init__(self, message: str, *, provider: str = "", retry_in_s: float = 0.0) -> None:
        super().__init__(message, provider=provider)
        self.retry_in_s = retry_in_s


class CacheUnavailable(ArchivistError):
    pass


class RateLimited(ArchivistError):
    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
