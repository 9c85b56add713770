"""A provider's API key: the one rule lives in ``core.security.secrets``."""

from core.security.secrets import KEYRING_SERVICE, resolve_api_key

__all__ = ["KEYRING_SERVICE", "resolve_api_key"]
