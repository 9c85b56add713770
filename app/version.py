"""Archivist's version, from the installed package's metadata (no Qt here).

One source for the command line's ``--version``, the window and About; a
frozen bundle carries the metadata (packaging/archivist.spec).
"""

from __future__ import annotations

import importlib.metadata


def app_version() -> str:
    try:
        return importlib.metadata.version("archivist")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
