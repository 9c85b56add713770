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
    allowed |= {"desktop.py", "about.py", "welcome.py"}  # menus, icons, first run
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


# The layers of core/, lowest first. A module may import from its own package and
# from lower layers only; within one layer, packages do not import each other.
# (A package is core/<name>/ or the module core/<name>.py.)
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"types", "errors"}),
    frozenset({"config", "logs", "language"}),
    frozenset({"breaker", "redisconn", "models", "embedding", "watch", "db"}),
    # storage records; index/search/fusion/rerank; injection/sanitize/rate limit; cache;
    # breakers shared through Redis
    frozenset({"audit", "conversations", "retrieval", "security", "cache", "breaker_shared"}),
    frozenset({"evidence"}),  # what a passage says, whether it supports a claim
    frozenset({"providers", "ingest", "evaluation"}),
    frozenset({"answer", "health"}),
    # team: collections and grants in team PostgreSQL (db); services and the CLI use it
    frozenset({"team"}),
    # upgrade: a single-user knowledge base copied into team PostgreSQL (db, search
    # index, team's collections)
    frozenset({"services", "upgrade"}),
)
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "core" else None


def _core_imports(path: Path) -> list[tuple[int, str]]:
    """(line, package) for every import of another part of core (``from core import x`` too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "core":
                found.extend((node.lineno, alias.name) for alias in node.names)
            elif (pkg := _package(node.module)) is not None:
                found.append((node.lineno, pkg))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if (pkg := _package(alias.name)) is not None:
                    found.append((node.lineno, pkg))
    return found


def test_every_part_of_core_has_a_layer() -> None:
    parts = {p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__"}
    parts |= {p.name for p in (ROOT / "core").iterdir() if (p / "__init__.py").is_file()}
    assert parts - RANK.keys() == set(), "add new parts of core/ to LAYERS"
    assert RANK.keys() - parts == set(), "LAYERS names a part that no longer exists"


def test_core_imports_only_downwards() -> None:
    offenders = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        rel = path.relative_to(ROOT / "core")
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if own == "__init__.py" or own not in RANK:
            continue
        for line, pkg in _core_imports(path):
            if pkg == own:
                continue
            if RANK.get(pkg, 99) >= RANK[own]:
                offenders.append(f"core/{rel}:{line}: {own} (layer {RANK[own]}) imports {pkg}")
    assert offenders == []


def test_the_window_reaches_core_through_services_and_value_types() -> None:
    """app/ uses the owner, the value types and a few pure helpers, not the parts."""
    allowed = {
        "services",
        "types",
        "errors",
        "config",
        "logs",
        "security",  # the safe Markdown renderer and path rules
        "evaluation",
        "answer",  # eval answers
        "audit",  # sorted_counts for display
        "conversations",
        "health",
        "upgrade",  # archivist upgrade
        "team",  # archivist admin init, archivist collection ...
    }
    offenders = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for line, pkg in _core_imports(path):
            if pkg not in allowed:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: imports core.{pkg}")
    assert offenders == []
