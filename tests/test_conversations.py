"""Saved conversations: round trip, search, atomic writes, Markdown export."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from core.breaker import CircuitBreaker
from core.conversations import (
    ConversationStore,
    Turn,
    explain,
    make_title,
    to_markdown,
    turn_from_answer,
)
from core.errors import UsageError
from core.types import Answer, AnswerSentence, CacheMatch, Chunk, Citation, ScoredChunk


def _answer(question: str = "When was the lighthouse built?") -> Answer:
    chunk = Chunk(1, 1, "/docs/lighthouse.txt", 0, "It was built in 1874.", 0, 21, None)
    cite = Citation(1, 1, "/docs/lighthouse.txt", None, 0, 21, "It was built in 1874.", 0.9)
    return Answer(
        question=question,
        text="It was built in 1874 [1].",
        citations=(cite,),
        provider="extractive",
        cache="embedding",
        degraded=True,
        timings_ms={"total": 12.5},
        request_id="abc",
        retrieved=(ScoredChunk(chunk, 0.9, bm25_rank=1, bm25_score=3.2, fused_score=0.016),),
        cache_match=CacheMatch("when was the lighthouse built", 0.97),
        notice="Composed from your documents.",
    )


def test_a_saved_conversation_loads_back_equal(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "conversations")
    breaker = CircuitBreaker("local")
    breaker.force_open()
    conv = store.new().with_turn(turn_from_answer(_answer(), [breaker.snapshot()]))
    store.save(conv)
    loaded = store.load(conv.id)
    assert loaded == conv
    assert loaded.title == "When was the lighthouse built?"
    why = loaded.turns[0].explanation
    assert why is not None
    assert why.breakers[0].state == "open"
    assert why.cache_question == "when was the lighthouse built"
    assert why.retrieved[0].bm25_score == 3.2 and why.retrieved[0].vector_score is None


def test_search_finds_words_in_questions_and_answers_newest_first(tmp_path: Path) -> None:
    clock = iter(range(1000, 2000))
    store = ConversationStore(tmp_path, clock=lambda: float(next(clock)))
    a = store.new().with_turn(Turn("ferry fares?", "eleven euros", 1001.0))
    b = store.new().with_turn(Turn("lighthouse?", "built in 1874", 1005.0))
    store.save(a)
    store.save(b)
    assert [s.id for s in store.search("")] == [b.id, a.id]
    assert [s.id for s in store.search("ELEVEN")] == [a.id]
    assert [s.id for s in store.search("built 1874")] == [b.id]
    assert store.search("submarine") == []


def test_an_unreadable_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    good = store.new().with_turn(Turn("q", "a", 1.0))
    store.save(good)
    (tmp_path / "0000000000000bad.json").write_text("{not json")
    assert [s.id for s in store.search()] == [good.id]


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    conv = store.new()
    for i in range(5):
        conv = conv.with_turn(Turn(f"q{i}", f"a{i}", float(i)))
        store.save(conv)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{conv.id}.json"]
    assert len(json.loads((tmp_path / f"{conv.id}.json").read_text())["turns"]) == 5


def test_ids_cannot_escape_the_folder(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    with pytest.raises(UsageError):
        store.load("../../etc/passwd")


def test_markdown_export_has_questions_answers_and_sources(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    conv = store.new().with_turn(turn_from_answer(_answer()))
    out = store.export_markdown(conv, tmp_path / "out" / "chat.md")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# When was the lighthouse built?\n")
    assert "## When was the lighthouse built?" in text
    assert "It was built in 1874 [1]." in text
    assert "- [1] `/docs/lighthouse.txt`: It was built in 1874." in text
    assert to_markdown(conv).splitlines()[3:] == text.splitlines()[3:]


def test_explanation_keeps_missing_scores_as_none() -> None:
    why = explain(_answer())
    r = why.retrieved[0]
    assert (r.bm25_rank, r.vector_rank, r.rerank_score) == (1, None, None)
    assert why.cache == "embedding" and why.cache_similarity == 0.97


def test_long_questions_get_a_short_title() -> None:
    title = make_title("word " * 100)
    assert len(title) <= 80 and title.endswith("…")


def test_the_evidence_check_is_saved_with_the_turn_and_exported(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "conversations")
    base = _answer()
    quote = Citation.of(1, base.retrieved[0].chunk, 0.9, (0, 21))
    text = "It was built in 1874 [1]. It was painted red in 1990."
    answer = replace(
        base,
        text=text,
        quotes=(quote,),
        sentences=(
            AnswerSentence(text[:25], 0, 25, True, (1,), 0.9),
            AnswerSentence(text[26:], 26, len(text), False, (), 0.1),
        ),
    )
    conv = store.new().with_turn(turn_from_answer(answer))
    store.save(conv)
    turn = store.load(conv.id).turns[0]
    assert turn.quotes == (quote,) and turn.quotes[0].quote == "It was built in 1874."
    assert turn.unsupported == ((26, len(text)),) and not turn.abstained
    exported = to_markdown(store.load(conv.id))
    assert "It was painted red in 1990. _(not found in your documents)_" in exported
    assert "1874 [1]. _(not found" not in exported

    abstained = replace(base, text="The documents do not contain it.", quotes=(), abstained=True)
    turn = turn_from_answer(abstained)
    assert turn.abstained and turn.unsupported == ()
    assert [q.text for q in turn.quotes] == ["It was built in 1874."]  # the closest passage


def test_a_conversation_saved_before_the_evidence_fields_still_loads(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "conversations")
    conv = store.new().with_turn(turn_from_answer(_answer()))
    store.save(conv)
    path = next((tmp_path / "conversations").glob("*.json"))
    data = json.loads(path.read_text())
    for t in data["turns"]:
        for key in ("quotes", "unsupported", "abstained"):
            del t[key]
    path.write_text(json.dumps(data))
    turn = store.load(conv.id).turns[0]
    assert turn.quotes == () and turn.unsupported == () and turn.abstained is False
    assert turn.answer == "It was built in 1874 [1]."
