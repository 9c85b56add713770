"""The detector on the frozen evaluation data (tests/eval/injection_README.md).

The tuning part is where rules were chosen; the test part and the everyday questions
were frozen before and are only measured. ``tests/bench/injection.py`` prints the
same figures in full.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from core.security.injection import InjectionDetector

EVAL = Path(__file__).resolve().parents[1] / "eval"
PARTS = ("injection_tuning.jsonl", "injection_test.jsonl")
ATTACK_KINDS = {
    "direct",
    "extraction",
    "roleplay",
    "delimiter",
    "encoding",
    "translation",
    "multilang",
    "indirect",
    "exfiltration",
    "tool",
}


def _rows(name: str) -> list[dict[str, Any]]:
    lines = (EVAL / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _everyday() -> list[str]:
    lines = (EVAL / "injection_everyday.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()]


def test_the_frozen_data_is_large_varied_and_split_without_overlap() -> None:
    tuning, test = _rows(PARTS[0]), _rows(PARTS[1])
    rows = tuning + test
    labels = Counter(r["label"] for r in rows)
    assert labels["attack"] >= 150 and labels["benign"] >= 300
    assert not {r["text"] for r in tuning} & {r["text"] for r in test}
    for part in (tuning, test):
        assert {r["kind"] for r in part if r["label"] == "attack"} == ATTACK_KINDS
        assert {(r["label"], r["source"]) for r in part} == {
            (label, source) for label in ("attack", "benign") for source in ("question", "document")
        }
    assert len({r["language"] for r in rows}) >= 10
    assert len(_everyday()) >= 50


@pytest.mark.parametrize("part", PARTS)
def test_attacks_are_flagged_and_look_alikes_are_not(
    part: str, capsys: pytest.CaptureFixture[str]
) -> None:
    detector = InjectionDetector()
    rows = _rows(part)
    attacks = [r for r in rows if r["label"] == "attack"]
    benign = [r for r in rows if r["label"] == "benign"]
    caught = sum(detector.scan(r["text"], source=r["source"]).flagged for r in attacks)
    reports = [detector.scan(r["text"], source=r["source"]) for r in benign]
    false_alarms = sum(r.flagged for r in reports)
    questions_blocked = sum(
        rep.blocked for r, rep in zip(benign, reports, strict=True) if r["source"] == "question"
    )
    with capsys.disabled():
        print(
            f"\n{part}: attacks flagged {caught}/{len(attacks)}, "
            f"benign flagged {false_alarms}/{len(benign)}"
        )
    assert caught >= 0.9 * len(attacks)
    assert false_alarms <= 0.02 * len(benign)
    assert questions_blocked == 0  # not even the "refuse" policy refuses one


def test_no_everyday_question_is_refused_or_flagged() -> None:
    detector = InjectionDetector()
    flagged = [q for q in _everyday() if detector.scan(q, source="question").flagged]
    assert flagged == []
