"""``Services`` owns one engine and one pool for its whole life and disposes them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import Pool

from core.config import load_settings
from core.db.engine import schema_revision
from core.errors import UsageError
from core.services import Services


class PoolRecorder:
    """Records every DBAPI connection any pool opens or closes in this process."""

    def __init__(self) -> None:
        self.engines: list[int] = []
        self.pools: set[int] = set()
        self.opened = 0
        self.closed = 0

    def on_connect(self, dbapi_conn: Any, record: Any) -> None:
        self.opened += 1

    def on_close(self, dbapi_conn: Any, record: Any) -> None:
        self.closed += 1

    def on_engine(self, conn: Any) -> None:
        self.engines.append(id(conn.engine))
        self.pools.add(id(conn.engine.pool))


@pytest.fixture
def recorder() -> Any:
    rec = PoolRecorder()
    event.listen(Pool, "connect", rec.on_connect)
    event.listen(Pool, "close", rec.on_close)
    event.listen(sa.Engine, "engine_connect", rec.on_engine)
    yield rec
    event.remove(Pool, "connect", rec.on_connect)
    event.remove(Pool, "close", rec.on_close)
    event.remove(sa.Engine, "engine_connect", rec.on_engine)


async def test_one_engine_and_one_pool_for_the_whole_life(
    home: Path, corpus: Path, recorder: PoolRecorder
) -> None:
    (home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    services = Services(load_settings())
    await services.start(warm_models=False)
    engine = services.engine
    report = await services.ingest([corpus])
    assert report.summary()["added"] == 4
    answer = await services.ask("When does the morning ferry leave?")
    assert "07:15" in answer.text
    await asyncio.gather(*(services.ask("lighthouse keeper") for _ in range(5)))
    await services.health()
    await services.stats()
    assert services.engine is engine
    assert services.engines_created == 1
    assert set(recorder.engines) == {id(engine)}
    assert len(recorder.pools) == 1
    assert recorder.opened >= 1

    await services.aclose()
    with pytest.raises(RuntimeError):
        _ = services.engine
    # dispose() closed every connection the pool had opened
    assert recorder.closed == recorder.opened
    await services.aclose()  # idempotent


async def test_a_start_that_fails_part_way_closes_what_it_built(
    home: Path, recorder: PoolRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The provider chain is built late in start(), after the engine, the schema,
    # the audit writer, the cache and the index-load task.
    def broken_chain(*args: object) -> None:
        raise OSError("provider settings unreadable")

    monkeypatch.setattr("core.services.build_router", broken_chain)
    (home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    services = Services(load_settings())
    before = set(asyncio.all_tasks())
    with pytest.raises(OSError, match="unreadable"):
        await services.start(warm_models=False)
    assert services.engines_created == 1
    with pytest.raises(RuntimeError):
        _ = services.engine  # disposed
    assert recorder.opened >= 1
    assert recorder.closed == recorder.opened
    leftover = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert leftover == []  # the audit writer stopped too
    await services.aclose()  # still safe


async def test_sessions_ask_count_goes_past_a_thousand(home: Path) -> None:
    (home / "archivist.toml").write_text("[ingest]\nembed = false\n[rate_limit]\nenabled = false\n")
    async with Services(load_settings()) as services:
        services.asker.asks = 1000  # as if 1,000 questions had been asked
        await services.ask("lighthouse keeper")
        assert (await services.stats()).session.asks == 1001


async def test_schema_is_migrated_and_upgrade_keeps_user_data(home: Path, corpus: Path) -> None:
    (home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        assert schema_revision(services.engine) is not None
    async with Services(load_settings()) as services:  # a second start re-runs upgrade
        stats = await services.stats()
        assert stats.knowledge_base.documents == 4
        answer = await services.ask("When was the lighthouse built?")
        assert answer.citations and answer.citations[0].source.endswith("lighthouse.txt")


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(home: Path) -> None:
    async with Services(load_settings()) as services:
        with services.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


@pytest.mark.postgres
async def test_the_whole_pipeline_runs_on_postgresql(
    home: Path, corpus: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARCHIVIST_DATABASE_URL", postgres_url)
    (home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    async with Services(load_settings()) as services:
        assert services.engine.dialect.name == "postgresql"
        report = await services.ingest([corpus])
        assert report.summary()["added"] == 4, report
        answer = await services.ask("How much is a return ticket to Gull Island?")
        assert answer.citations[0].source.endswith("ferry.pdf")
        assert answer.citations[0].page == 2
        again = await services.ingest([corpus])
        assert again.summary()["unchanged"] == 4


def test_sigterm_shuts_down_gracefully_and_keeps_finished_documents(
    home: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "many"
    docs.mkdir()
    for i in range(400):
        (docs / f"note{i:03}.txt").write_text(f"Note {i}. " + "Some words about archives. " * 200)
    (home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    env = {**os.environ, "ARCHIVIST_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "ingest", str(docs)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    # Wait until some documents are committed, then stop it.
    db = home / "archivist.db"
    deadline = time.monotonic() + 120
    import sqlite3

    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                con = sqlite3.connect(db, timeout=1)
                done = con.execute("SELECT count(*) FROM documents").fetchone()[0]
                con.close()
            except sqlite3.Error:
                done = 0
            if done >= 5:
                break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the ingest finished before it could be interrupted")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "stopped by SIGTERM" in err
    assert "Traceback" not in err
    con = sqlite3.connect(db)
    n_docs = con.execute("SELECT count(*) FROM documents").fetchone()[0]
    orphans = con.execute(
        "SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents)"
    ).fetchone()[0]
    empty = con.execute(
        "SELECT count(*) FROM documents d WHERE NOT EXISTS "
        "(SELECT 1 FROM chunks c WHERE c.document_id = d.id)"
    ).fetchone()[0]
    con.close()
    assert 5 <= n_docs < 400
    assert orphans == 0 and empty == 0
    # The next run resumes: what was finished is unchanged, the rest is added.
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "ingest", str(docs), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads(result.stdout)["summary"]
    assert summary["unchanged"] == n_docs
    assert summary["added"] == 400 - n_docs


async def test_filters_limit_retrieval_to_a_document_a_folder_or_a_kind(
    home: Path, corpus: Path
) -> None:
    (home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    sub = corpus / "sub"
    sub.mkdir()
    (sub / "ferry-notes.txt").write_text("The ferry to Gull Island has a small cafe on board.\n")
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        q = "What does the Gull Island ferry offer?"
        by_kind = await services.ask(q, filters=await services.filters_for(kinds=["pdf"]))
        assert by_kind.citations and all(c.source.endswith(".pdf") for c in by_kind.citations)
        by_folder = await services.ask(q, filters=await services.filters_for([sub]))
        assert {Path(c.source).name for c in by_folder.citations} == {"ferry-notes.txt"}
        by_doc = await services.ask(q, filters=await services.filters_for([corpus / "ferry.pdf"]))
        assert {Path(c.source).name for c in by_doc.citations} == {"ferry.pdf"}
        with pytest.raises(UsageError):
            await services.filters_for([corpus / "missing.txt"])


async def test_top_k_is_diversified_across_documents(home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "big.md").write_text(
        "\n\n".join(
            f"## Part {i}\n\nThe kiln fires pottery at high heat, step {i}." for i in range(8)
        )
    )
    (docs / "small.txt").write_text("A kiln for pottery needs a dedicated electrical circuit.\n")
    (home / "archivist.toml").write_text(
        "[ingest]\nembed = false\n[retrieval]\ntop_k = 4\nmax_per_document = 2\n"
    )
    async with Services(load_settings()) as services:
        await services.ingest([docs])
        chunks, _ = await services.search("kiln pottery", k=4)
        names = [Path(c.chunk.source).name for c in chunks]
        assert "small.txt" in names
        assert names[:3].count("big.md") <= 2
        assert len(chunks) == 4  # pushed-out chunks still fill the list when needed
