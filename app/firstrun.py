"""The first run's decisions, without Qt: when to welcome, what each choice writes.

The welcome flow (``app.welcome``) shows the steps; this module decides:

* ``needs_welcome``: an empty knowledge base and no "first run done" mark in the
  data folder (``mark_done`` writes it when the flow ends, however it ends);
* ``form_for_choice``: how to answer (the local model, an OpenAI-compatible
  server, or quotes only) as a ``SettingsForm`` for the one settings writer
  (``app.settings_file.save_form``, called through the bridge);
* ``probe_server``: a connection test against a server's ``/models``;
* ``local_model_info``: the local model's size on disk and its measured speed;
* ``example_question``: a first question drawn from the user's own documents
  (a heading of an ingested document; no wording of any corpus lives here).

Everything that touches a disk or the network is a coroutine or is meant for
``asyncio.to_thread``.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from app.settings_file import ProviderRow, SettingsForm
from core.errors import ArchivistError
from core.services import Services
from core.types import AuditEvent, FileStatus, IngestReport

FIRST_RUN_MARK = "first-run-done"
Choice = Literal["local", "server", "quotes"]
QUOTES_PROVIDER = "quotes"  # the name "quotes only" gives the extractive provider
SERVER_PROVIDER = "server"


def first_run_mark(home: Path) -> Path:
    return home / FIRST_RUN_MARK


def needs_welcome(home: Path, documents: int) -> bool:
    """Welcome on an empty knowledge base unless a first run already ended (reads a file)."""
    return documents == 0 and not first_run_mark(home).exists()


def mark_done(home: Path) -> None:
    """Remember that the first run ended (writes a file)."""
    home.mkdir(parents=True, exist_ok=True)
    first_run_mark(home).write_text("The welcome flow ended; delete this file to see it again.\n")


# --------------------------------------------------------------------------- answering


@dataclass(frozen=True)
class ServerChoice:
    base_url: str
    model: str = ""
    api_key_env: str = ""


def form_for_choice(
    form: SettingsForm, choice: Choice, server: ServerChoice | None
) -> SettingsForm:
    """``form`` with its providers replaced by what ``choice`` means.

    * ``local``: no configured provider, so the chain puts the local model first
      (and the quotes last) when it is installed;
    * ``server``: one OpenAI-compatible provider (the quotes stay the last resort);
    * ``quotes``: only the extractive provider: answers quote the best passages.
    """
    rows: tuple[ProviderRow, ...]
    if choice == "local":
        rows = ()
    elif choice == "server":
        if server is None or not server.base_url.strip():
            raise ValueError("an OpenAI-compatible server needs its URL")
        rows = (
            ProviderRow(
                SERVER_PROVIDER,
                "openai",
                base_url=server.base_url.strip(),
                model=server.model.strip(),
                api_key_env=server.api_key_env.strip(),
            ),
        )
    else:
        rows = (ProviderRow(QUOTES_PROVIDER, "extractive"),)
    return dataclasses.replace(form, providers=rows)


def form_with_watched(form: SettingsForm, folders: Sequence[str]) -> SettingsForm:
    """``form`` also watching ``folders`` (each once, in order)."""
    watched = tuple(dict.fromkeys([*form.watched_folders, *folders]))
    return dataclasses.replace(form, watched_folders=watched)


def models_url(base_url: str) -> str:
    """The server's model list: ``{base_url}/models`` (``/v1`` added when missing)."""
    base = base_url.strip().rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/models"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str
    models: tuple[str, ...] = ()


async def probe_server(base_url: str, api_key_env: str = "", timeout_s: float = 5.0) -> ProbeResult:
    """Ask the server for its models: does it answer, and like an OpenAI-compatible one?"""
    url = base_url.strip()
    if not url.startswith(("http://", "https://")):
        return ProbeResult(False, "The address must start with http:// or https://.")
    headers = {}
    key = os.environ.get(api_key_env.strip()) if api_key_env.strip() else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(models_url(url), headers=headers)
    except httpx.TimeoutException:
        return ProbeResult(False, f"No answer from {url} within {timeout_s:g} s.")
    except httpx.HTTPError as exc:
        return ProbeResult(False, f"Could not connect to {url} ({type(exc).__name__}).")
    if response.status_code in (401, 403):
        code = response.status_code
        return ProbeResult(False, f"The server refused the API key (HTTP {code}).")
    if response.status_code >= 400:
        return ProbeResult(False, f"The server answered HTTP {response.status_code}.")
    try:
        data = response.json().get("data", [])
        names = tuple(str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id"))
    except (ValueError, AttributeError):
        return ProbeResult(False, "The server answered, but not like an OpenAI-compatible one.")
    if not names:
        return ProbeResult(True, "Connected; the server lists no models.")
    shown = ", ".join(names[:3]) + ("…" if len(names) > 3 else "")
    return ProbeResult(True, f"Connected: {len(names)} model(s) ({shown}).", names)


# --------------------------------------------------------------------------- the local model


@dataclass(frozen=True)
class LocalModelInfo:
    """The local model as this machine knows it (None: not known)."""

    available: bool  # in the provider chain now
    file_name: str | None  # a model file in the models folder
    size_bytes: int | None
    seconds_per_answer: float | None  # median of the answers it gave here

    @property
    def choosable(self) -> bool:
        return self.available or self.file_name is not None

    def describe(self) -> str:
        if not self.choosable:
            return (
                "Not installed on this computer (name a .gguf file in Settings, "
                "or run make local-model in a source checkout)."
            )
        parts = [self.file_name or "installed"]
        if self.size_bytes:
            parts.append(f"{self.size_bytes / 1e6:,.0f} MB")
        if not self.available:
            parts.append("installed, not in use with the current settings")
        elif self.seconds_per_answer is not None:
            parts.append(f"about {self.seconds_per_answer:.0f} s per answer here")
        else:
            parts.append("speed on this computer not measured yet")
        return " · ".join(parts)


def local_model_info(
    available: bool, models_dir: Path, events: Iterable[AuditEvent], provider: str = "local"
) -> LocalModelInfo:
    """Size from the model file, speed from the audit log's answers (reads the disk)."""
    files = sorted(models_dir.glob("*.gguf"), key=lambda p: p.stat().st_size)
    latencies = [
        e.latency_ms / 1000
        for e in events
        if e.action == "ask" and e.provider == provider and e.latency_ms is not None
    ]
    return LocalModelInfo(
        available=available,
        file_name=files[0].name if files else None,
        size_bytes=files[0].stat().st_size if files else None,
        seconds_per_answer=statistics.median(latencies) if latencies else None,
    )


# --------------------------------------------------------------------------- first question

MAX_HEADING_CHARS = 60


def _usable(heading: str) -> bool:
    h = heading.strip()
    return 3 <= len(h) <= MAX_HEADING_CHARS and any(c.isalpha() for c in h)


def question_from_headings(heading_paths: Sequence[Sequence[str]]) -> str | None:
    """A question about the first specific heading (a section's, else the title's).

    ``heading_paths`` are the heading paths of a document's passages in reading
    order; a sub-heading names a topic better than the document's title does.
    """
    deepest = [path[-1] for path in heading_paths if len(path) > 1 and _usable(path[-1])]
    titles = [path[0] for path in heading_paths if path and _usable(path[0])]
    chosen = deepest or titles
    if not chosen:
        return None
    return f"What do my documents say about “{chosen[0].strip()}”?"


def question_from_name(path: str) -> str:
    """The fallback: a question about a document by its file name."""
    return f"What is {Path(path).name} about?"


def ingested_paths(reports: Iterable[IngestReport]) -> list[str]:
    """The documents the reports put (or found) in the knowledge base, in order."""
    kept = (FileStatus.ADDED, FileStatus.UPDATED, FileStatus.UNCHANGED, FileStatus.MOVED)
    seen: dict[str, None] = {}
    for report in reports:
        for outcome in report.outcomes:
            if outcome.status in kept and outcome.chunks:
                seen.setdefault(outcome.path, None)
    return list(seen)


async def example_question(
    services: Services, paths: Sequence[str], look_at: int = 5
) -> str | None:
    """A first question from the headings of the documents at ``paths`` (None: no document).

    For each of the first ``look_at`` documents, the opening words of its text are
    searched within that document; the passages found carry their heading paths.
    """
    for path in paths[:look_at]:
        try:
            text = await services.document_text(path)
            words = text.split()[:40]
            if not words:
                continue
            filters = await services.filters_for([path])
            found, _ = await services.search(" ".join(words), k=20, filters=filters)
        except (ArchivistError, OSError):  # one unreadable document must not stop the others
            continue
        ordered = sorted(found, key=lambda s: s.chunk.ordinal)
        question = question_from_headings([s.chunk.heading_path for s in ordered])
        if question is not None:
            return question
    return question_from_name(paths[0]) if paths else None
