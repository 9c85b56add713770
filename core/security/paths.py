"""The one rule for paths a person hands Archivist: ingest, watch, open in a viewer.

The path is expanded (``~``) and resolved (symlinks followed, ``..`` removed), and
the *resolved* path is judged, so a link cannot smuggle in what its target may not be:

* never inside a pseudo-filesystem (``/proc``, ``/sys``, ``/dev``, ``/run``): their
  files are endless, blocking or devices, and none is a document;
* **ingest**: a regular file or a folder (a missing path is left to the ingestion
  report, which says "not found" or removes a document that was deleted);
* **watch**: an existing folder that is neither a filesystem root nor a system
  folder (``/etc``, ``/usr``, ``/var``...): following those means indexing the system;
* **open** (in the system viewer): an existing regular file. The window opens only
  knowledge-base documents (``Library.document_text`` refuses any other path), so a
  crafted link in an answer cannot open an arbitrary file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final, Literal

from core.errors import UsageError

Purpose = Literal["ingest", "watch", "open"]

PSEUDO_FILESYSTEMS: Final = ("/proc", "/sys", "/dev", "/run")
SYSTEM_FOLDERS: Final = (
    "/bin",
    "/boot",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/sbin",
    "/usr",
    "/var",
)


def _under(path: Path, roots: tuple[str, ...]) -> str | None:
    for root in roots:
        if path == Path(root) or Path(root) in path.parents:
            return root
    return None


def path_problem(
    raw: str | os.PathLike[str], purpose: Purpose, *, require_exists: bool = True
) -> str | None:
    """Why ``raw`` may not be used for ``purpose`` (a sentence), or None when it may.

    ``require_exists=False`` judges only where the path points (a watched folder
    named in the settings may be on a drive that is not mounted yet).
    """
    text = os.fspath(raw)
    if not text.strip() or "\x00" in text:
        return "An empty path or one with a NUL character is not a path."
    path = Path(text).expanduser().resolve()
    root = _under(path, PSEUDO_FILESYSTEMS)
    if root is not None:
        return f"{path} is inside {root}, a system pseudo-filesystem; it holds no documents."
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = None
    if purpose == "ingest":
        if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return f"{path} is not a regular file or a folder."
        return None
    if purpose == "watch":
        if mode is None and not require_exists:
            pass
        elif mode is None or not stat.S_ISDIR(mode):
            return f"{path} is not an existing folder."
        if path.parent == path:
            return f"{path} is the root of a filesystem; watch the folder of your documents."
        system = _under(path, SYSTEM_FOLDERS)
        if system is not None:
            return f"{path} is a system folder ({system}); watch the folder of your documents."
        return None
    if mode is None and not require_exists:
        return None
    if mode is None or not stat.S_ISREG(mode):
        return f"{path} is not an existing file."
    return None


def checked_path(raw: str | os.PathLike[str], purpose: Purpose) -> Path:
    """``raw`` resolved, or ``UsageError`` with the rule it breaks."""
    problem = path_problem(raw, purpose)
    if problem is not None:
        raise UsageError(problem)
    return Path(os.fspath(raw)).expanduser().resolve()
