"""The Qt boundary, checked by a machine: core never imports PySide6, qasync or app."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("PySide6", "qasync", "app", "shiboken6")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_core_never_imports_qt_or_app() -> None:
    offenders = []
    files = sorted((ROOT / "core").rglob("*.py"))
    assert files, "core/ has no Python files?"
    for path in files:
        for line, module in _imports(path):
            if module.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert offenders == []


def test_only_gui_modules_of_app_import_qt() -> None:
    allowed = {"bridge.py", "window.py", "gui.py", "widgets.py", "panels.py", "dialogs.py"}
    for path in sorted((ROOT / "app").rglob("*.py")):
        if path.name in allowed:
            continue
        for line, module in _imports(path):
            root = module.split(".")[0]
            assert root not in ("PySide6", "qasync"), f"{path}:{line} imports {module}"


def test_importing_the_core_and_cli_loads_no_qt() -> None:
    code = (
        "import sys, core.services, app.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'qasync')]; "
        "heavy = [m for m in ('torch', 'sentence_transformers') if m in sys.modules]; "
        "print(bad, heavy); sys.exit(1 if bad or heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
