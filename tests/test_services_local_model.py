"""A fresh install answers with the local model when it is installed, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.config import load_settings
from core.providers.llama_cpp import local_model_available
from core.services import Services

pytestmark = pytest.mark.slow


async def test_default_chain_puts_the_local_model_first(
    home: Path,
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    models_dir = tmp_path_factory.mktemp("models")
    if local_model_available(models_dir) is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI installs the local-llm extra; the local model must be available")
        pytest.skip("the local-llm extra is not installed")
    monkeypatch.setenv("ARCHIVIST_LOCAL_MODEL", "auto")
    monkeypatch.setenv("ARCHIVIST_MODELS_DIR", str(models_dir))
    (home / "archivist.toml").write_text("[ingest]\nembed = false\n")
    async with Services(load_settings()) as services:
        assert services.router.names() == ["local"]
        await services.ingest([corpus])
        answer = await services.ask("What is the aperture of the refracting telescope?")
        assert answer.provider == "local", answer.notice
        assert not answer.degraded
        assert "240" in answer.text
        assert any(c.source.endswith("telescope.html") for c in answer.citations)
        health = {c.name: c for c in (await services.health()).components}
        assert health["provider:local"].status == "ok"
