"""Where Archivist's own files are: icons, the stylesheet, the desktop entry.

They live in the top-level ``resources/`` folder. ``resources_dir`` is the one
place that knows where that folder is, in every way the app can be run:

1. ``ARCHIVIST_RESOURCES`` (a packager or a test points elsewhere);
2. a frozen bundle (PyInstaller unpacks data next to ``sys._MEIPASS``);
3. the source tree or an editable install (``resources/`` beside ``app/``);
4. a wheel install, which puts the folder in ``<prefix>/share/archivist/resources``
   (``[tool.setuptools.data-files]`` in pyproject.toml).

No Qt here: the window turns these paths into icons (``app.desktop``).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

APP_ID = "io.archivist.Archivist"  # the desktop entry, metainfo and icon name
_MARKER = Path("icons") / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"


def _candidates() -> list[Path]:
    found = []
    if os.environ.get("ARCHIVIST_RESOURCES"):
        found.append(Path(os.environ["ARCHIVIST_RESOURCES"]))
    bundle = getattr(sys, "_MEIPASS", None)
    if isinstance(bundle, str):
        found.append(Path(bundle) / "resources")
    found.append(Path(__file__).resolve().parent.parent / "resources")
    found.append(Path(sys.prefix) / "share" / "archivist" / "resources")
    return found


@functools.cache
def resources_dir() -> Path:
    """The resources folder (the first candidate that holds the app icon)."""
    tried = _candidates()
    for folder in tried:
        if (folder / _MARKER).is_file():
            return folder
    raise FileNotFoundError(
        "Archivist's resources folder is missing; looked in " + ", ".join(map(str, tried))
    )


def resource(*parts: str) -> Path:
    """A file in the resources folder, e.g. ``resource("styles", "archivist.qss")``."""
    return resources_dir().joinpath(*parts)


def app_icon_files() -> list[Path]:
    """The app icon: the SVG, then every rendered PNG size that exists."""
    hicolor = resources_dir() / "icons" / "hicolor"
    return [resources_dir() / _MARKER, *sorted(hicolor.glob(f"*x*/apps/{APP_ID}.png"))]


def toolbar_icon(name: str) -> Path:
    """A toolbar icon's SVG (drawn in ``currentColor``; the window colours it)."""
    return resource("icons", "toolbar", f"{name}.svg")
