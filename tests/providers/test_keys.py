"""Where API keys come from."""

from __future__ import annotations

import importlib.util

import pytest

from core.providers.keys import resolve_api_key


def test_key_comes_from_the_named_variable() -> None:
    assert resolve_api_key("MY_KEY", env={"MY_KEY": " sk-1 \n"}, use_keyring=False) == "sk-1"


def test_missing_or_empty_variable_gives_no_key() -> None:
    assert resolve_api_key("MY_KEY", env={"MY_KEY": ""}, use_keyring=False) is None
    assert resolve_api_key("", env={}, use_keyring=False) is None


def test_without_keyring_package_only_the_environment_counts() -> None:
    # keyring is an optional dependency; when it is absent the lookup is skipped quietly.
    if importlib.util.find_spec("keyring") is not None:
        pytest.skip("keyring is installed here; its store is not ours to read in tests")
    assert resolve_api_key("ARCHIVIST_SURELY_UNSET_KEY", provider="p", env={}) is None
