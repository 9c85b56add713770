"""Test-wide set-up: offline models, offscreen Qt, no network beyond loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.support.postgres import postgres_server, postgres_url  # noqa: F401  (session fixtures)

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
SHARED = Path(__file__).resolve().parents[2] / "shared"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = str(address[0])
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if host != "localhost" and (ip is None or not ip.is_loopback):
            raise ConnectionRefusedError(f"tests may not reach {host}: loopback only")
    return _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away ARCHIVIST_HOME (and no inherited database or Redis URL)."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("ARCHIVIST_HOME", str(h))
    monkeypatch.delenv("ARCHIVIST_DATABASE_URL", raising=False)
    monkeypatch.delenv("ARCHIVIST_REDIS_URL", raising=False)
    # Tests answer extractively unless they ask for a model (it is slow and large).
    monkeypatch.setenv("ARCHIVIST_LOCAL_MODEL", "off")
    return h


@pytest.fixture(scope="session")
def python_docs() -> Path:
    if not PYTHON_DOCS.is_dir():
        if in_ci():
            pytest.fail(f"{PYTHON_DOCS} is missing (Debian package python3.11-doc)")
        pytest.skip("python3.11-doc is not installed")
    return PYTHON_DOCS


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A real multi-page PDF with a text layer (reportlab)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for text in pages:
        y = 800
        for line in text.split("\n"):
            c.drawString(60, y, line)
            y -= 16
        c.showPage()
    c.save()
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Iterator[Path]:
    """A small folder of real documents in four formats, each holding a distinct fact."""
    d = tmp_path / "docs"
    d.mkdir()
    (d / "lighthouse.txt").write_text(
        "The Old Harbour lighthouse was built in 1874.\n\n"
        "Its keeper, Marta Quillon, lit the lamp every night for thirty-one years.\n\n"
        "The lamp burned whale oil until 1902, when it was converted to kerosene.\n",
        encoding="utf-8",
    )
    (d / "garden.md").write_text(
        "# Community garden\n\n"
        "## Watering rota\n\n"
        "Beds are watered on Tuesdays and Saturdays by the volunteer group.\n\n"
        "## Compost\n\n"
        "The compost bins are turned once a fortnight; brown leaves go in bin three.\n",
        encoding="utf-8",
    )
    (d / "telescope.html").write_text(
        "<html><head><title>Observatory notes</title><style>p{color:red}</style>"
        "<script>var tracking = 'zebra-sentinel';</script></head><body>"
        "<nav>Home | About | Contact</nav><main><h1>Observatory notes</h1>"
        "<p>The refracting telescope has an aperture of 240 millimetres.</p>"
        "<p>Viewing nights are held on the first Friday of each month.</p>"
        "</main></body></html>",
        encoding="utf-8",
    )
    write_pdf(
        d / "ferry.pdf",
        [
            "Island ferry timetable\nThe morning ferry leaves the pier at 07:15.",
            "Fares\nA return ticket to Gull Island costs eleven euros.\n"
            "Bicycles travel free of charge on the ferry.",
        ],
    )
    yield d
