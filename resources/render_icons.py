"""Render the app icon's PNG sizes from its SVG (run after editing the SVG).

    QT_QPA_PLATFORM=offscreen .venv/bin/python resources/render_icons.py

Writes ``icons/hicolor/<n>x<n>/apps/io.archivist.Archivist.png`` for every size in
``SIZES``, the layout the freedesktop icon theme spec expects, so the folder can be
copied to ``share/icons/hicolor`` as it is. Qt's SVG renderer draws them, so no
other tool is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_ID = "io.archivist.Archivist"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
SVG = HERE / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"


def png_path(size: int) -> Path:
    return HERE / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"


def render(size: int) -> object:
    """The icon as a ``QImage`` of ``size`` x ``size`` pixels (needs a QGuiApplication)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise ValueError(f"{SVG} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def main() -> int:
    from PySide6.QtGui import QGuiApplication, QImage

    app = QGuiApplication.instance() or QGuiApplication(sys.argv)
    assert app is not None
    for size in SIZES:
        out = png_path(size)
        out.parent.mkdir(parents=True, exist_ok=True)
        image = render(size)
        assert isinstance(image, QImage)
        if not image.save(str(out), "PNG"):
            raise OSError(f"could not write {out}")
        print(out.relative_to(HERE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
