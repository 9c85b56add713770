"""API keys in a real OS keyring: gnome-keyring's Secret Service on a private D-Bus.

The fixture starts its own ``dbus-daemon --session`` and an unlocked
``gnome-keyring-daemon`` (secrets component) in a throw-away home, so the test
never touches the keyring of the person running it. Under CI a missing daemon is a
failure (``packaging/system-deps.sh test`` installs dbus and gnome-keyring).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.security.secrets import (
    KeyringUnavailable,
    delete_api_key,
    keyring_name,
    resolve_api_key,
    store_api_key,
)

SECRET = "sk-test-Zq81-never-in-a-log"


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{binary} is required under CI (packaging/system-deps.sh test)")
        pytest.skip(f"{binary} is not installed")
    return path


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A ``keyring`` SecretService backend talking to a private, unlocked gnome-keyring."""
    dbus = _need("dbus-daemon")
    gnome_keyring = _need("gnome-keyring-daemon")
    home = tmp_path_factory.mktemp("keyring-home")
    runtime = home / "run"
    runtime.mkdir(mode=0o700)
    # A session bus without service directories: nothing can be started by D-Bus
    # activation. With the standard session config, a probe that arrives before our
    # daemon has taken its name starts a second, locked gnome-keyring that then owns
    # the Secret Service and can only prompt (seen in a CI run on a loaded machine).
    config = home / "bus.conf"
    config.write_text(
        "<!DOCTYPE busconfig PUBLIC '-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN'"
        " 'http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd'>\n"
        "<busconfig><type>session</type>"
        f"<listen>unix:dir={runtime}</listen>"
        "<policy context='default'><allow send_destination='*' eavesdrop='true'/>"
        "<allow eavesdrop='true'/><allow own='*'/></policy></busconfig>\n"
    )
    bus = subprocess.Popen(
        [dbus, f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    env = dict(
        os.environ,
        DBUS_SESSION_BUS_ADDRESS=address,
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        XDG_RUNTIME_DIR=str(runtime),
    )
    daemon = subprocess.Popen(
        [gnome_keyring, "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert daemon.stdin is not None
    daemon.stdin.write(b"throw-away login password")
    daemon.stdin.close()
    saved = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
    try:
        from keyring.backends import SecretService

        # Probing before the daemon has created and unlocked the login keyring makes
        # the library ask it to create one, which needs a prompt nobody can answer
        # (seen on a loaded machine): wait for the keyring file first.
        login = home / "data" / "keyrings" / "login.keyring"
        deadline = time.monotonic() + 30
        while not login.exists():
            if time.monotonic() > deadline or daemon.poll() is not None:
                pytest.fail("gnome-keyring-daemon did not create the login keyring")
            time.sleep(0.05)
        backend = SecretService.Keyring()
        deadline = time.monotonic() + 30
        while True:  # the daemon registers its bus name a moment after it starts
            try:
                backend.get_password("archivist-probe", "probe")
                break
            except Exception:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    pytest.fail("gnome-keyring-daemon did not offer the Secret Service")
                time.sleep(0.1)
        yield backend
    finally:
        if saved is None:
            os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SESSION_BUS_ADDRESS"] = saved
        _stop(daemon)
        _stop(bus)
        bus.stdout.close()


def test_a_key_stored_in_the_keyring_is_what_the_provider_reads(secret_service: Any) -> None:
    store_api_key("cloud", SECRET, backend=secret_service)
    assert secret_service.get_password("archivist", "cloud") == SECRET
    # No environment variable: the keyring entry under the provider's name.
    assert resolve_api_key("", provider="cloud", env={}, backend=secret_service) == SECRET
    # The environment variable, when set, is the alternative that wins.
    env = {"CLOUD_KEY": "sk-from-env"}
    assert (
        resolve_api_key("CLOUD_KEY", provider="cloud", env=env, backend=secret_service)
        == "sk-from-env"
    )
    assert delete_api_key("cloud", backend=secret_service) is True
    assert resolve_api_key("", provider="cloud", env={}, backend=secret_service) is None
    assert delete_api_key("cloud", backend=secret_service) is False
    assert keyring_name(secret_service).endswith("SecretService.Keyring")


def test_a_key_is_never_logged(
    secret_service: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the keyring library's too
    store_api_key("cloud", SECRET, backend=secret_service)
    assert resolve_api_key("", provider="cloud", env={}, backend=secret_service) == SECRET
    delete_api_key("cloud", backend=secret_service)
    assert caplog.records, "storing a key is logged (without the key)"
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.__dict__)


class _BrokenBackend:
    """A keyring that fails the way a locked or absent Secret Service does."""

    def set_password(self, service: str, user: str, password: str) -> None:
        raise RuntimeError(f"cannot store {password} for {user}")

    def get_password(self, service: str, user: str) -> str | None:
        raise RuntimeError("locked")


def test_a_keyring_failure_is_explained_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(KeyringUnavailable) as info:
        store_api_key("cloud", SECRET, backend=_BrokenBackend())
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is not None
    assert "environment variable" in str(info.value)
    assert resolve_api_key("", provider="cloud", env={}, backend=_BrokenBackend()) is None
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_a_key_typed_in_the_settings_dialog_goes_to_the_keyring_not_the_file(
    secret_service: Any, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    from app.settings_file import ProviderRow, form_from_settings, save_form
    from core.config import load_settings

    caplog.set_level(logging.DEBUG)
    settings = load_settings()
    row = ProviderRow("cloud", "openai", "https://api.example/v1", "m", api_key=SECRET)
    form = replace(form_from_settings(settings), providers=(row,))
    result = save_form(settings, form, keyring_backend=secret_service)
    assert secret_service.get_password("archivist", "cloud") == SECRET
    assert SECRET not in result.path.read_text(encoding="utf-8")
    assert "API key stored in the OS keyring for: cloud." in result.message()
    assert "providers.cloud.api_key" in result.changed
    assert SECRET not in result.message() and SECRET not in repr(result)
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    # What the provider will read at start-up (no environment variable named).
    saved = result.settings.providers[0]
    assert (
        resolve_api_key(saved.api_key_env, provider=saved.name, env={}, backend=secret_service)
        == SECRET
    )
    delete_api_key("cloud", backend=secret_service)
