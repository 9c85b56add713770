"""Edit ``archivist.toml`` from the settings dialog (pure logic and file I/O, no Qt).

The dialog fills a ``SettingsForm``; ``save_form`` merges it into the existing
file (keys the dialog does not show are kept), validates the result by building
it through ``core.config.load_settings`` (so every message names the key), and
only then replaces the file atomically. It returns what needs a restart.
An API key typed in the dialog goes to the OS keyring, never into the file.
Call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import CONFIG_NAME, Settings, load_settings
from core.conversations import write_atomically
from core.errors import ConfigError, StorageError
from core.security.paths import path_problem
from core.security.secrets import KeyringUnavailable, store_api_key

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class ProviderRow:
    name: str
    kind: str
    base_url: str = ""
    model: str = ""
    api_key_env: str = ""
    timeout_s: float = 30.0
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys the dialog does not edit
    # A key typed in the dialog, for the OS keyring (None: leave the stored one alone).
    api_key: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SettingsForm:
    providers: tuple[ProviderRow, ...]
    redis_url: str
    cache_enabled: bool
    embedding_ttl_s: float
    result_ttl_s: float
    similarity_threshold: float
    top_k: int
    reranker_on: bool
    reranker_model: str
    watched_folders: tuple[str, ...]


@dataclass(frozen=True)
class SaveResult:
    path: Path
    settings: Settings
    restart_needed: tuple[str, ...]
    notes: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # the config keys this save changed (for the audit log)

    def message(self) -> str:
        lines = [f"Saved {self.path}."]
        if self.restart_needed:
            lines.append("Restart Archivist to apply: " + ", ".join(self.restart_needed) + ".")
        else:
            lines.append("Nothing that needs a restart changed.")
        lines.extend(self.notes)
        return "\n".join(lines)


WATCHING_NOTE = (
    "Archivist adds the files in these folders as soon as you save, then follows them "
    "while it runs: new, edited, moved and deleted files are picked up within seconds."
)


def watching_note(folders: Sequence[str]) -> str:
    """What saving did to the watched folders, in a sentence."""
    if not folders:
        return "No folder is watched."
    n = len(folders)
    return f"Watching {n} folder{'s' if n != 1 else ''}; changes are added automatically."


DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-6-v2"


def form_from_settings(s: Settings) -> SettingsForm:
    rows = []
    for p in s.providers:
        extra: dict[str, Any] = {}
        defaults = {"connect_timeout_s": 5.0, "first_token_timeout_s": 15.0, "max_tokens": 512}
        for key, default in defaults.items():
            value = getattr(p, key)
            if value != default:
                extra[key] = value
        rows.append(
            ProviderRow(p.name, p.kind, p.base_url, p.model, p.api_key_env, p.timeout_s, extra)
        )
    return SettingsForm(
        providers=tuple(rows),
        redis_url=s.redis_url or "",
        cache_enabled=s.cache.enabled,
        embedding_ttl_s=s.cache.embedding_ttl_s,
        result_ttl_s=s.cache.result_ttl_s,
        similarity_threshold=s.cache.similarity_threshold,
        top_k=s.retrieval.top_k,
        reranker_on=bool(s.retrieval.reranker),
        reranker_model=s.retrieval.reranker or DEFAULT_RERANKER,
        watched_folders=tuple(s.watched_folders),
    )


def read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", file=str(path)) from exc


def merged_config(existing: Mapping[str, Any], form: SettingsForm) -> dict[str, Any]:
    """``existing`` with the dialog's keys replaced (every other key is kept)."""
    data: dict[str, Any] = {k: v for k, v in existing.items()}
    old_providers = {p.get("name"): p for p in existing.get("providers", []) if isinstance(p, dict)}
    providers = []
    for row in form.providers:
        entry: dict[str, Any] = {}
        old = old_providers.get(row.name, {})
        entry.update({k: v for k, v in old.items() if k not in _PROVIDER_KEYS})
        entry.update(row.extra)
        entry["name"] = row.name.strip()
        entry["kind"] = row.kind
        for key, value in (
            ("base_url", row.base_url.strip()),
            ("model", row.model.strip()),
            ("api_key_env", row.api_key_env.strip()),
        ):
            if value:
                entry[key] = value
        entry["timeout_s"] = float(row.timeout_s)
        providers.append(entry)
    if providers:
        data["providers"] = providers
    else:
        data.pop("providers", None)

    if form.redis_url.strip():
        data["redis_url"] = form.redis_url.strip()
    else:
        data.pop("redis_url", None)
    cache = dict(existing.get("cache", {}))
    cache.update(
        enabled=form.cache_enabled,
        embedding_ttl_s=float(form.embedding_ttl_s),
        result_ttl_s=float(form.result_ttl_s),
        similarity_threshold=float(form.similarity_threshold),
    )
    data["cache"] = cache
    retrieval = dict(existing.get("retrieval", {}))
    retrieval["top_k"] = int(form.top_k)
    retrieval["reranker"] = form.reranker_model.strip() if form.reranker_on else ""
    data["retrieval"] = retrieval
    folders = [f.strip() for f in form.watched_folders if f.strip()]
    if folders:
        data["watched_folders"] = folders
    else:
        data.pop("watched_folders", None)
    return data


_PROVIDER_KEYS = {"name", "kind", "base_url", "model", "api_key_env", "timeout_s"}


# --------------------------------------------------------------------------- TOML writer


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        # JSON's escapes (\" \\ \n \t \uXXXX ...) are all valid in a TOML basic string.
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _emit(lines: list[str], path: Sequence[str], table: Mapping[str, Any]) -> None:
    for k, v in table.items():
        if not isinstance(v, dict) and not _is_table_array(v):
            lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in table.items():
        if isinstance(v, dict):
            dotted = ".".join(_key(p) for p in (*path, k))
            lines += ["", f"[{dotted}]"]
            _emit(lines, (*path, k), v)
    for k, v in table.items():
        if _is_table_array(v):
            dotted = ".".join(_key(p) for p in (*path, k))
            for item in v:
                lines += ["", f"[[{dotted}]]"]
                _emit(lines, (*path, k), item)


def dump_toml(data: Mapping[str, Any]) -> str:
    """Write plain data (tables, arrays of tables, scalars, lists) as TOML."""
    lines: list[str] = ["# Written by Archivist's settings dialog."]
    _emit(lines, (), data)
    return "\n".join(lines).strip() + "\n"


# --------------------------------------------------------------------------- save


def validate_text(text: str, home: Path, shown_as: Path) -> Settings:
    """Build settings from ``text`` as if it were ``shown_as`` (raises ``ConfigError``)."""
    home.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".archivist-", suffix=".toml", dir=home)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        env = {k: v for k, v in os.environ.items() if k.startswith("ARCHIVIST_")}
        env["ARCHIVIST_HOME"] = str(home)
        try:
            return load_settings(tmp, env=env)
        except ConfigError as exc:
            real = str(Path(tmp).resolve())
            exc.message = exc.message.replace(real, str(shown_as)).replace(tmp, str(shown_as))
            exc.args = (exc.message,)
            exc.file = str(shown_as)
            raise
    finally:
        Path(tmp).unlink(missing_ok=True)


def restart_needed(old: Settings, new: Settings) -> tuple[str, ...]:
    changed = []
    if old.providers != new.providers:
        changed.append("providers")
    if old.cache != new.cache or old.redis_url != new.redis_url:
        changed.append("cache")
    if old.retrieval != new.retrieval:
        changed.append("retrieval")
    return tuple(changed)


def changed_keys(old: SettingsForm, new: SettingsForm) -> tuple[str, ...]:
    """The config keys whose effective value differs between two forms, in file order."""
    pairs = (
        ("providers", old.providers, new.providers),
        ("redis_url", old.redis_url, new.redis_url),
        ("cache.enabled", old.cache_enabled, new.cache_enabled),
        ("cache.embedding_ttl_s", old.embedding_ttl_s, new.embedding_ttl_s),
        ("cache.result_ttl_s", old.result_ttl_s, new.result_ttl_s),
        ("cache.similarity_threshold", old.similarity_threshold, new.similarity_threshold),
        ("retrieval.top_k", old.top_k, new.top_k),
        (
            "retrieval.reranker",
            old.reranker_model if old.reranker_on else "",
            new.reranker_model if new.reranker_on else "",
        ),
        ("watched_folders", old.watched_folders, new.watched_folders),
    )
    return tuple(key for key, a, b in pairs if a != b)


def save_form(
    current: Settings,
    form: SettingsForm,
    previous: Settings | None = None,
    *,
    keyring_backend: Any = None,
) -> SaveResult:
    """Validate ``form`` merged into the config file and write it; see the module docstring.

    ``current`` is what the app runs with (what needs a restart is measured against
    it); ``previous`` is what the last save wrote (what this save changed is measured
    against it), ``current`` when nothing was saved since start.
    """
    if form.reranker_on and not form.reranker_model.strip():
        raise ConfigError(
            "give a reranker model name or a local folder, or turn the reranker off",
            key="retrieval.reranker",
        )
    for i, folder in enumerate(f for f in form.watched_folders if f.strip()):
        problem = path_problem(folder.strip(), "watch", require_exists=False)
        if problem is not None:
            raise ConfigError(problem, key=f"watched_folders[{i}]")
    path = current.config_file or current.home / CONFIG_NAME
    text = dump_toml(merged_config(read_config(path), form))
    new = validate_text(text, current.home, path)
    try:
        write_atomically(path, text)
    except OSError as exc:
        raise StorageError(f"The settings could not be written to {path}: {exc}") from exc
    changed = changed_keys(form_from_settings(previous or current), form_from_settings(new))
    notes: list[str] = []
    stored: list[str] = []
    for row in form.providers:
        if row.api_key and row.api_key.strip():
            try:
                store_api_key(row.name.strip(), row.api_key.strip(), backend=keyring_backend)
            except KeyringUnavailable as exc:
                notes.append(str(exc))
            else:
                stored.append(row.name.strip())
    if stored:
        notes.append("API key stored in the OS keyring for: " + ", ".join(stored) + ".")
        changed = (*changed, *(f"providers.{name}.api_key" for name in stored))
    restart = restart_needed(current, new)
    if stored and "providers" not in restart:
        restart = (*restart, "providers")
    return SaveResult(path, new, restart, tuple(notes), changed=changed)
