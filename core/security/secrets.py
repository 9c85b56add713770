"""Secrets: where a provider's API key lives (the OS keyring or an environment variable).

The settings dialog stores a key in the OS keyring (Secret Service on Linux,
Keychain on macOS, Credential Locker on Windows) under service ``archivist`` and
the provider's name; ``keyring set archivist NAME`` does the same from a shell.
An environment variable named in the provider's ``api_key_env`` is the
alternative, and wins when it is set (a deployment can override a desktop key).

A key is a secret: it is never logged, never put in an exception's text or a
repr, and never written to ``archivist.toml``. Keyring backends may block (D-Bus):
call these functions from a worker thread, once at start-up or on save, never
per request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from core.errors import ArchivistError

log = logging.getLogger(__name__)

KEYRING_SERVICE = "archivist"


class KeyringUnavailable(ArchivistError):
    """The OS keyring cannot store or read keys here (an environment fault)."""


def resolve_api_key(
    env_name: str,
    *,
    provider: str = "",
    env: Mapping[str, str] | None = None,
    use_keyring: bool = True,
    backend: Any = None,
) -> str | None:
    """The API key from ``env[env_name]``, else the keyring entry, else None.

    The keyring entry is looked up under the provider's name, then under
    ``env_name`` (older set-ups stored it there). ``backend``: a ``keyring``
    backend to use instead of the platform's (tests pass a real one).
    """
    env = os.environ if env is None else env
    if env_name:
        value = env.get(env_name, "").strip()
        if value:
            return value
    if not use_keyring:
        return None
    return _from_keyring([n for n in (provider, env_name) if n], backend)


def store_api_key(provider: str, key: str, *, backend: Any = None) -> None:
    """Store ``key`` for ``provider`` in the OS keyring (raises ``KeyringUnavailable``)."""
    if not provider:
        raise ValueError("a provider name is needed to store its key")
    ring = _keyring(backend)
    try:
        ring.set_password(KEYRING_SERVICE, provider, key)
    except Exception as exc:  # any backend error is the environment's, never a crash
        raise KeyringUnavailable(_unavailable(exc, provider)) from None
    log.info("API key stored in the OS keyring", extra={"provider": provider})


def delete_api_key(provider: str, *, backend: Any = None) -> bool:
    """Remove ``provider``'s key from the keyring; False when there was none."""
    ring = _keyring(backend)
    try:
        import keyring.errors

        ring.delete_password(KEYRING_SERVICE, provider)
    except keyring.errors.PasswordDeleteError:
        return False
    except Exception as exc:
        raise KeyringUnavailable(_unavailable(exc, provider)) from None
    log.info("API key removed from the OS keyring", extra={"provider": provider})
    return True


def keyring_name(backend: Any = None) -> str:
    """The keyring backend in use, for the health view ("none" without one)."""
    try:
        ring = _keyring(backend)
    except KeyringUnavailable:
        return "none"
    return f"{type(ring).__module__}.{type(ring).__name__}"


def _keyring(backend: Any) -> Any:
    if backend is not None:
        return backend
    try:
        import keyring
    except ImportError:
        raise KeyringUnavailable(
            "The 'keyring' package is not installed; name an environment variable instead."
        ) from None
    return keyring.get_keyring()


def _unavailable(exc: BaseException, provider: str) -> str:
    # The exception's text is left out: a backend may echo what it was given.
    return (
        f"The OS keyring could not store the key for {provider!r} ({type(exc).__name__}). "
        "Unlock the keyring (e.g. log in to the desktop session) or name an environment "
        "variable for the key instead."
    )


def _from_keyring(users: list[str], backend: Any) -> str | None:
    if not users:
        return None
    try:
        ring = _keyring(backend)
    except KeyringUnavailable:
        return None
    for user in users:
        try:
            value = ring.get_password(KEYRING_SERVICE, user)
        except Exception as exc:  # any backend error: no key, never a crash
            log.warning("the OS keyring could not be read (%s)", type(exc).__name__)
            return None
        if value:
            return str(value)
    return None
