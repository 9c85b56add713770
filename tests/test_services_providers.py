"""Services with real OpenAI-compatible stand-in servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import load_settings
from core.services import Services
from tests.support.fake_llm import Drop, FakeLLM, Succeed, closed_port


@pytest.fixture
def primary() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def secondary() -> Iterator[FakeLLM]:
    with FakeLLM(Succeed(("The lighthouse was built in 1874 ", "[1]", "."))) as server:
        yield server


def _config(home: Path, *urls: str, failure_threshold: int = 5) -> None:
    providers = "".join(
        f'[[providers]]\nname = "{name}"\nkind = "openai"\nbase_url = "{url}"\n'
        f'model = "m"\ntimeout_s = 5\nfirst_token_timeout_s = 2\nconnect_timeout_s = 1\n'
        for name, url in zip(("primary", "secondary"), urls, strict=False)
    )
    (home / "archivist.toml").write_text(
        f"[ingest]\nembed = false\n[breaker]\nfailure_threshold = {failure_threshold}\n" + providers
    )


async def test_mid_stream_failure_is_visible_and_regenerates_on_the_next_provider(
    home: Path, corpus: Path, primary: FakeLLM, secondary: FakeLLM
) -> None:
    _config(home, primary.base_url, secondary.base_url)
    primary.push(Drop(after_tokens=2))
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        cut = await services.ask("When was the lighthouse built?")
        assert cut.interrupted_by == "primary"
        assert cut.degraded and cut.notice and "cut off" in cut.notice
        assert secondary.chat_requests == []  # no fallback after the first token

        again = await services.ask("When was the lighthouse built?", skip_providers={"primary"})
        assert again.provider == "secondary" and not again.degraded
        assert "1874" in again.text
        assert again.citations[0].source.endswith("lighthouse.txt")
        # The passages reached the model as delimited data with citation markers.
        prompt = json.dumps(secondary.chat_requests[-1].messages)
        assert "[1]" in prompt and "lighthouse" in prompt.lower()


async def test_every_provider_down_gives_a_degraded_extractive_answer(
    home: Path, corpus: Path
) -> None:
    _config(home, f"http://127.0.0.1:{closed_port()}/v1", failure_threshold=2)
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        for _ in range(3):
            answer = await services.ask("When was the lighthouse built?")
            assert answer.degraded and answer.provider == "extractive"
            assert "1874" in answer.text and answer.notice
        health = {c.name: c for c in (await services.health()).components}
        primary = health["provider:primary"]
        assert primary.data["state"] == "open"
        assert primary.data["seconds_until_half_open"] > 0
        assert primary.data["last_error"]
        stats = await services.stats()
        assert stats.audit.by_action["breaker"] >= 1
        assert stats.audit.by_outcome["degraded"] == 3


def test_cli_health_json_shows_breaker_state(home: Path) -> None:
    _config(home, f"http://127.0.0.1:{closed_port()}/v1")
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "health", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "ARCHIVIST_HOME": str(home)},
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    snap = json.loads(result.stdout)
    primary = snap["components"]["provider:primary"]
    assert primary["state"] == "closed"
    assert {"consecutive_failures", "last_error", "seconds_until_half_open"} <= set(primary)


async def test_background_embedding_waits_while_a_question_is_answered(
    home: Path, corpus: Path, primary: FakeLLM
) -> None:
    _config(home, primary.base_url)
    primary.push(Succeed(("The lighthouse was built in 1874 ", "[1]", "."), delay_s=0.05))
    async with Services(load_settings()) as services:
        await services.ingest([corpus])
        embedder = services._embedder  # what the vector fill encodes with
        assert embedder is not None and not embedder.paused
        seen: list[bool] = []
        at_quotes: list[bool] = []
        answer = await services.ask(
            "When was the lighthouse built?",
            on_token=lambda _: seen.append(embedder.paused),
            on_quotes=lambda _: at_quotes.append(embedder.paused),
        )
        assert answer.provider == "primary" and "1874" in answer.text
        # Paused from the search (the quotes come right after it) through every
        # token the model streamed.
        assert at_quotes == [True] and seen and all(seen)
        assert not embedder.paused  # and running again once the answer is in
