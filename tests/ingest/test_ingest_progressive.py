"""Progressive ingestion: keyword search first, vectors filled in behind.

Real parts throughout: a real SQLite knowledge base, real documents (the shared
``corpus`` fixture), the real embedding models from their packages.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from core.config import load_settings
from core.retrieval.text import embedding_key
from core.services import Services
from core.types import Answer, IngestProgress

INT8 = "all-MiniLM-L6-v2-int8"


def _config(home: Path, *, embed: bool = True, model: str | None = None) -> None:
    text = f"[ingest]\nembed = {str(embed).lower()}\n"
    if model:
        text += f'[embedding]\nmodel = "{model}"\n'
    (home / "archivist.toml").write_text(text)


def _stored_vectors(home: Path) -> dict[str, int]:
    engine = sa.create_engine(f"sqlite:///{home / 'archivist.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT model_id, count(*) FROM embeddings GROUP BY 1"))
        out = {r[0]: int(r[1]) for r in rows}
    engine.dispose()
    return out


async def _filled(services: Services) -> None:
    """Wait (two minutes at most) until the background fill gave every passage a vector."""
    await services.wait_ready()
    async with asyncio.timeout(120):
        while True:
            info = (await services.health()).search_index
            fill = services.library.fill
            if info and info.chunks and info.vectors == info.chunks and fill and not fill.running:
                return
            await asyncio.sleep(0.1)


async def test_keyword_search_is_live_before_vectors_and_answers_say_the_search_is_partial(
    home: Path, corpus: Path
) -> None:
    _config(home, model=INT8)
    events: list[IngestProgress] = []
    pending_at_fill_start: list[int] = []
    asked: list[asyncio.Future[Answer]] = []
    async with Services(load_settings()) as services:

        def on_progress(p: IngestProgress) -> None:
            events.append(p)
            if p.vectors_total and not asked:
                # The fill's first report comes before any passage is embedded;
                # the question starts on the loop's next turn, while it embeds.
                pending_at_fill_start.append(services.library.vectors_pending)
                asked.append(asyncio.ensure_future(services.ask("When does the ferry leave?")))

        report = await services.ingest([corpus], progress=on_progress)
        during = await asked[0]
        after = await services.ask("When does the ferry leave?")
        health = await services.health()

    assert report.summary()["added"] == 4
    chunks = health.search_index.chunks if health.search_index else 0
    # Every file was stored and keyword-indexed before the first vector was made.
    assert chunks > 0 and pending_at_fill_start == [chunks]
    files_done = [e for e in events if e.files_done == e.files_total]
    assert files_done[0].vectors_total == 0  # the files were done before vectors began
    assert next(e.vectors_done for e in events if e.vectors_total) == 0
    assert events[-1].vectors_done == events[-1].vectors_total == chunks
    assert events[-1].searchable_s is not None and report.timings_s["searchable"] > 0
    # The answer given during the fill found the timetable by its words, cites it
    # and says the search was partial.
    assert "07:15" in during.text and during.citations
    assert all(r.vector_rank is None for r in during.retrieved)
    assert during.partial_search and during.vectors_pending == chunks
    assert during.notice is not None and "Partial search" in during.notice
    assert during.to_json()["partial_search"] is True
    # Once the vectors are in, answers are whole again and health is fine.
    assert not after.partial_search and after.to_json()["vectors_pending"] == 0
    assert health.search_index is not None
    assert health.search_index.vectors == chunks and health.search_index.vectors_pending == 0
    assert health.component("search_index").status == "ok"  # type: ignore[union-attr]


async def test_passages_left_without_vectors_are_filled_in_after_start_up(
    home: Path, corpus: Path
) -> None:
    _config(home, embed=False)
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        chunks = (await services.stats()).knowledge_base.chunks
    assert _stored_vectors(home) == {}

    _config(home, model=INT8)
    async with Services(load_settings()) as services:
        await _filled(services)
        hits, _ = await services.search("lamp fuel in the lighthouse", k=3, fusion="vector")
    assert _stored_vectors(home) == {embedding_key(INT8): chunks}
    assert hits and hits[0].chunk.source.endswith("lighthouse.txt")


async def test_another_embedding_model_re_embeds_every_passage_instead_of_mixing(
    home: Path, corpus: Path
) -> None:
    _config(home)  # the default fp32 model
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        chunks = (await services.stats()).knowledge_base.chunks
        fp32_key = embedding_key(services.settings.embedding.model)
    assert _stored_vectors(home) == {fp32_key: chunks}

    _config(home, model=INT8)
    async with Services(load_settings()) as services:
        await _filled(services)
        health = await services.health()
        hits, _ = await services.search("compost bins", k=2, fusion="vector")
    # The fp32 vectors stay stored (switching back costs nothing); the index holds
    # only the int8 model's, one per passage.
    assert _stored_vectors(home) == {fp32_key: chunks, embedding_key(INT8): chunks}
    assert health.search_index is not None and health.search_index.vectors == chunks
    assert hits[0].chunk.source.endswith("garden.md")
