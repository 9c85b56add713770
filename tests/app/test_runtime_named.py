"""The window names what runs the local model: the health facts and "Why this answer"."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from app import statusview as sv
from app.dialogs import WhyDialog
from core.conversations import BreakerInfo, Explanation, Turn
from core.types import BreakerSnapshot, BreakerState

BACKEND = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf on xllamacpp (prebuilt llama.cpp)"


def _snapshot(backend: str | None) -> BreakerSnapshot:
    return BreakerSnapshot("local", BreakerState.CLOSED, 0, None, None, None, 3, 0, 0, backend)


def test_the_health_facts_say_what_runs_the_local_model() -> None:
    assert ("runs on", BACKEND) in sv.facts(_snapshot(BACKEND))
    assert [k for k, _ in sv.facts(_snapshot(None))] == ["state", "failures in a row", "calls"]


def test_why_this_answer_names_the_runtime_beside_the_provider(qtbot: QtBot) -> None:
    explanation = Explanation(
        provider="local",
        cache="miss",
        degraded=False,
        breakers=(BreakerInfo("local", "closed", backend=BACKEND), BreakerInfo("remote", "open")),
    )
    dialog = WhyDialog(Turn("Q?", "A.", 1.0, explanation=explanation), None)
    qtbot.addWidget(dialog)
    names = [dialog.breakers.item(r, 0).text() for r in range(dialog.breakers.rowCount())]
    assert names == [f"local ({BACKEND})", "remote"]
