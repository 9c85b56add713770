"""resources/: the locator, the icons, and the desktop entry and metainfo as Debian checks them."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PySide6.QtGui import QImage, QPalette
from PySide6.QtWidgets import QApplication

from app.about import app_version
from app.desktop import app_icon, dark_palette, stylesheet, themed_icon
from app.resources import APP_ID, app_icon_files, resource, resources_dir

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is missing: packaging/system-deps.sh test installs it"
    return path


def test_the_locator_finds_the_top_level_resources_folder() -> None:
    assert resources_dir() == ROOT / "resources"
    assert resource("styles", "archivist.qss").is_file()


def test_the_locator_prefers_a_bundle_folder_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(ROOT / "resources" / "icons", bundle / "icons")
    monkeypatch.setenv("ARCHIVIST_RESOURCES", str(bundle))
    resources_dir.cache_clear()
    try:
        assert resources_dir() == bundle
    finally:
        resources_dir.cache_clear()


def test_the_desktop_entry_validates() -> None:
    entry = ROOT / "resources" / f"{APP_ID}.desktop"
    result = subprocess.run(
        [_tool("desktop-file-validate"), str(entry)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""  # no warnings or hints either
    text = entry.read_text(encoding="utf-8")
    assert f"Icon={APP_ID}\n" in text
    assert "Exec=archivist gui\n" in text


def test_the_metainfo_validates_and_matches_the_package() -> None:
    metainfo = ROOT / "resources" / f"{APP_ID}.metainfo.xml"
    result = subprocess.run(
        [_tool("appstreamcli"), "validate", "--no-net", str(metainfo)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    root = ET.parse(metainfo).getroot()
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable") == f"{APP_ID}.desktop"
    releases = [r.get("version") for r in root.iter("release")]
    assert releases[0] == app_version()


def test_every_icon_size_is_rendered_from_the_svg(qapp: QApplication) -> None:
    files = app_icon_files()
    assert files[0].suffix == ".svg"
    sizes = {}
    for png in files[1:]:
        image = QImage(str(png))
        assert not image.isNull(), png
        assert image.width() == image.height(), png
        sizes[image.width()] = png
        assert png.parent.parent.name == f"{image.width()}x{image.width()}"
    assert sorted(sizes) == [16, 24, 32, 48, 64, 128, 256, 512]
    assert not app_icon().isNull()


def test_toolbar_icons_take_the_palette_text_colour(qapp: QApplication) -> None:
    light, dark = QPalette(qapp.palette()), dark_palette()
    light.setColor(QPalette.ColorRole.ButtonText, "#101010")
    for palette, want in ((light, "#101010"), (dark, "#e6e6e6")):
        image = themed_icon("settings", palette).pixmap(48, 48).toImage()
        drawn = {
            image.pixelColor(x, y).name()
            for x in range(48)
            for y in range(48)
            if image.pixelColor(x, y).alpha() == 255
        }
        assert drawn == {want}


def test_every_toolbar_icon_is_a_valid_svg(qapp: QApplication) -> None:
    names = sorted(p.stem for p in (resources_dir() / "icons" / "toolbar").glob("*.svg"))
    assert len(names) >= 9
    for name in names:
        assert not themed_icon(name, qapp.palette()).pixmap(24, 24).toImage().isNull()


def test_the_stylesheet_takes_its_colours_from_the_palette() -> None:
    css = stylesheet()
    assert "QToolBar#main-toolbar" in css
    assert "palette(" in css
    assert re.search(r":[^;{}]*#[0-9a-fA-F]{3,8}\b", css) is None  # no fixed colour
