"""Measure the prompt-injection detector on the frozen evaluation data.

    .venv/bin/python tests/bench/injection.py [--json] [--details] [--learned]

Parts (``tests/eval/injection_README.md``): ``tuning`` (rules and thresholds may be chosen
on it), ``test`` (frozen, reported in aggregate only: ``--details`` lists the misses and
false alarms of the tuning part, never of the test part) and ``everyday`` (everyday
questions; also report-only).

Figures per part: attacks flagged (questions and passages), benign items flagged, benign
questions refused under the default policy (``warn``: none can be) and under ``refuse``
(the block level), benign passages blocked from the prompt.

``--docs DIR...`` also scans every passage of the HTML, Markdown, text and PDF files
under the folders as ingestion chunks them (real, benign collections such as the
Debian handbook) and reports how many are flagged and blocked, and the scan time.

``--learned`` also measures a logistic regression on all-MiniLM-L6-v2 vectors trained on
the tuning part (five-fold cross-validation on tuning, then tuning -> test), alone and
OR-ed with the rules: the experiment behind the choice in the issue-13 note.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.security.injection import InjectionDetector  # noqa: E402

EVAL = ROOT / "tests" / "eval"
PARTS = {
    "tuning": EVAL / "injection_tuning.jsonl",
    "test": EVAL / "injection_test.jsonl",
}
EVERYDAY = EVAL / "injection_everyday.txt"
FROZEN = frozenset({"test", "everyday"})


def load(part: str) -> list[dict[str, Any]]:
    if part == "everyday":
        lines = EVERYDAY.read_text(encoding="utf-8").splitlines()
        return [
            {"text": t, "label": "benign", "source": "question", "kind": "everyday"}
            for t in lines
            if t.strip()
        ]
    rows = PARTS[part].read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in rows if line.strip()]


def measure(
    rows: list[dict[str, Any]], levels: list[str]
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Counts for one part from each row's level (allow, flag or block)."""

    def count(label: str, source: str | None, wanted: set[str]) -> tuple[int, int]:
        sel = [
            lv
            for r, lv in zip(rows, levels, strict=True)
            if r["label"] == label and (source is None or r["source"] == source)
        ]
        return sum(lv in wanted for lv in sel), len(sel)

    flagged = {"flag", "block"}
    out: dict[str, Any] = {}
    for source in ("question", "document", None):
        name = source or "all"
        hit, n = count("attack", source, flagged)
        if n:
            out[f"attacks_flagged_{name}"] = [hit, n]
        hit, n = count("benign", source, flagged)
        if n:
            out[f"benign_flagged_{name}"] = [hit, n]
    out["benign_questions_refused_warn_policy"] = [0, count("benign", "question", {"block"})[1]]
    out["benign_questions_refused_refuse_policy"] = list(count("benign", "question", {"block"}))
    hit, n = count("benign", "document", {"block"})
    if n:
        out["benign_passages_blocked"] = [hit, n]
    wrong = [
        ("missed" if r["label"] == "attack" else lv, r)
        for r, lv in zip(rows, levels, strict=True)
        if (r["label"] == "attack") != (lv in flagged)
    ]
    return out, wrong


def rule_levels(detector: InjectionDetector, rows: list[dict[str, Any]]) -> list[str]:
    return [detector.scan(r["text"], source=r["source"]).level for r in rows]


def fmt(pair: list[int]) -> str:
    hit, n = pair
    return f"{hit}/{n} ({hit / n:.1%})" if n else "-"


def learned(parts: dict[str, list[dict[str, Any]]], detector: InjectionDetector) -> dict[str, Any]:
    """Logistic regression on MiniLM vectors: cross-validated on tuning, then on test."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from core.config import EmbeddingSettings
    from core.embedding import Embedder

    embedder = Embedder(EmbeddingSettings())
    vec = {p: embedder.encode([r["text"] for r in rows]) for p, rows in parts.items()}
    y = {p: np.array([r["label"] == "attack" for r in rows]) for p, rows in parts.items()}
    result: dict[str, Any] = {}
    for threshold in (0.5, 0.7, 0.9):
        cv_levels = ["allow"] * len(parts["tuning"])
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=13)
        for train, held in folds.split(vec["tuning"], y["tuning"]):
            model = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced")
            model.fit(vec["tuning"][train], y["tuning"][train])
            prob = model.predict_proba(vec["tuning"][held])[:, 1]
            for i, p in zip(held, prob, strict=True):
                cv_levels[i] = "flag" if p >= threshold else "allow"
        model = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced")
        model.fit(vec["tuning"], y["tuning"])
        levels = {"tuning (5-fold)": cv_levels}
        for p in parts:
            if p == "tuning":
                continue
            prob = model.predict_proba(vec[p])[:, 1]
            levels[p] = ["flag" if x >= threshold else "allow" for x in prob]
        for name, lv in levels.items():
            part = name.split()[0]
            alone, _ = measure(parts[part], lv)
            rules = rule_levels(detector, parts[part])
            either = [a if a != "allow" else b for a, b in zip(rules, lv, strict=True)]
            both, _ = measure(parts[part], either)
            result[f"p>={threshold} {name}"] = {"learned": alone, "rules or learned": both}
    return result


def scan_collection(
    detector: InjectionDetector, folders: list[str], details: bool
) -> dict[str, Any]:
    """Flag rate over the passages of real documents, chunked as ingestion does."""
    from core.ingest.chunker import chunk_document
    from core.ingest.parsers import SUPPORTED_EXTENSIONS, parse_file

    files = sorted(
        p
        for folder in folders
        for p in Path(folder).rglob("*")
        if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
    )
    passages = flagged = blocked = 0
    seconds = 0.0
    shown: list[dict[str, Any]] = []
    for path in files:
        try:
            drafts = chunk_document(parse_file(path, max_bytes=100 * 2**20))
        except Exception:  # an unreadable file is not a passage
            continue
        for d in drafts:
            t0 = time.perf_counter()
            report = detector.scan(d.text, source="document")
            seconds += time.perf_counter() - t0
            passages += 1
            flagged += report.flagged
            blocked += report.blocked
            if report.flagged and details:
                shown.append(
                    {
                        "file": str(path),
                        "score": report.score,
                        "rules": sorted({sp.rule for sp in report.spans}),
                        "text": d.text[:160],
                    }
                )
    return {
        "files": len(files),
        "passages": passages,
        "flagged": flagged,
        "blocked": blocked,
        "ms_per_passage": round(seconds * 1000 / max(1, passages), 3),
        **({"flagged_passages": shown} if details else {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--details", action="store_true", help="misses on the tuning part")
    ap.add_argument("--learned", action="store_true", help="also measure a MiniLM scorer")
    ap.add_argument("--docs", nargs="+", metavar="DIR", help="flag rate on real documents")
    args = ap.parse_args()

    detector = InjectionDetector()
    parts = {p: load(p) for p in ("tuning", "test", "everyday")}
    report: dict[str, Any] = {"flag_at": detector.flag_at, "block_at": detector.block_at}
    t0 = time.perf_counter()
    n = 0
    for part, rows in parts.items():
        levels = rule_levels(detector, rows)
        n += len(rows)
        figures, wrong = measure(rows, levels)
        report[part] = figures
        if args.details and part not in FROZEN:
            report[f"{part}_wrong"] = [
                {"why": why, "source": r["source"], "kind": r["kind"], "text": r["text"]}
                for why, r in wrong
            ]
    report["scan_ms_per_text"] = round((time.perf_counter() - t0) * 1000 / n, 3)
    if args.learned:
        report["learned"] = learned(parts, detector)
    if args.docs:
        report["docs"] = scan_collection(detector, args.docs, args.details)

    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    print(f"rules: flag at {detector.flag_at}, block at {detector.block_at}")
    for part in parts:
        print(f"\n[{part}]")
        for key, value in report[part].items():
            print(f"  {key:42s} {fmt(value)}")
        for w in report.get(f"{part}_wrong", []):
            print(f"  {w['why']:7s} {w['source']:8s} {w['kind']:12s} {w['text'][:110]!r}")
    print(f"\nscan: {report['scan_ms_per_text']} ms per text")
    if "docs" in report:
        d = report["docs"]
        print(
            f"\ndocuments: {d['files']} files, {d['passages']} passages, flagged {d['flagged']} "
            f"({d['flagged'] / max(1, d['passages']):.2%}), blocked {d['blocked']}, "
            f"{d['ms_per_passage']} ms per passage"
        )
        for f in d.get("flagged_passages", []):
            print(f"  {f['score']:.2f} {Path(f['file']).name} {f['rules']} {f['text'][:100]!r}")
    for name, res in report.get("learned", {}).items():
        print(f"\n[learned {name}]")
        for which, figures in res.items():
            line = ", ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in figures.items())
            print(f"  {which}: {line}")


if __name__ == "__main__":
    main()
