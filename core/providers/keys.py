"""Where a provider's API key comes from: an environment variable, else the OS keyring.

The key is a secret: it is never logged and never put in an exception's text.
The ``keyring`` package is optional; without it only the environment counts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

KEYRING_SERVICE = "archivist"


def resolve_api_key(
    env_name: str,
    *,
    provider: str = "",
    env: Mapping[str, str] | None = None,
    use_keyring: bool = True,
) -> str | None:
    """The API key from ``env[env_name]``, else the keyring entry, else None.

    The keyring entry is looked up as service ``archivist`` and user
    ``env_name`` (then ``provider``), e.g. ``keyring set archivist OPENAI_API_KEY``.
    Keyring backends may block (D-Bus), so call this once at start-up, not per
    request.
    """
    env = os.environ if env is None else env
    if env_name:
        value = env.get(env_name, "").strip()
        if value:
            return value
    if not use_keyring:
        return None
    return _from_keyring([n for n in (env_name, provider) if n])


def _from_keyring(users: list[str]) -> str | None:
    if not users:
        return None
    try:
        import keyring
    except ImportError:
        return None
    for user in users:
        try:
            value = keyring.get_password(KEYRING_SERVICE, user)
        except Exception as exc:  # any backend error: no key, never a crash
            log.warning("the OS keyring could not be read (%s)", type(exc).__name__)
            return None
        if value:
            return str(value)
    return None
